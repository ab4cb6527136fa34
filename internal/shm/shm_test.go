package shm

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The mapping and the descriptor are the same memory, the descriptor is
// close-on-exec, and a failure names what was being made.
func TestCreate(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		err  string // "" for success
	}{
		{"one page", 4096, ""},
		{"odd size", 10000, ""},
		{"negative size", -1, "sizing the test memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, mem, err := Create("gorn-test", "the test memory", tc.size)
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("Create(%d) = %v, want an error starting %q", tc.size, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			defer unix.Munmap(mem)
			if len(mem) != tc.size {
				t.Fatalf("mapped %d bytes, want %d", len(mem), tc.size)
			}
			mem[tc.size-1] = 7
			var b [1]byte
			if _, err := unix.Pread(int(f.Fd()), b[:], int64(tc.size-1)); err != nil || b[0] != 7 {
				t.Errorf("the descriptor reads %d (%v) where the mapping has 7", b[0], err)
			}
			if flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
				t.Errorf("descriptor flags %#x (%v), want close-on-exec", flags, err)
			}
		})
	}
}
