// Package shm makes the shared memory gorn's processes talk through: a
// memfd, sized and mapped shared, whose descriptor a child process
// inherits and maps too (the metrics scoreboard, the connection balance
// board, a runtime's body slots).
package shm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Create returns a close-on-exec memfd called name of size bytes, zeroed,
// and its read-write shared mapping. what names the memory in errors, for
// an operator ("the metrics scoreboard").
func Create(name, what string, size int) (*os.File, []byte, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("creating %s: %w", what, err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("sizing %s: %w", what, err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mapping %s: %w", what, err)
	}
	return f, mem, nil
}
