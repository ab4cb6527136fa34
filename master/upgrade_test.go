package master

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUpgradePath(t *testing.T) {
	bin := t.TempDir()
	exe := filepath.Join(bin, "gorn-test-exe")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	tests := []struct {
		argv0, dir, want string
	}{
		{"/usr/local/bin/gorn", "/srv", "/usr/local/bin/gorn"}, // absolute: as is
		{"./bin/gorn", "/srv/app", "/srv/app/bin/gorn"},        // relative: from the start directory
		{"../gorn", "/srv/app", "/srv/gorn"},
		{"gorn-test-exe", "/srv", exe}, // a bare name: from PATH
		{"gorn-not-on-path", "/srv", ""},
		{"", "/srv", ""},
	}
	for _, tt := range tests {
		if got := upgradePath(tt.argv0, tt.dir); got != tt.want {
			t.Errorf("upgradePath(%q, %q) = %q, want %q", tt.argv0, tt.dir, got, tt.want)
		}
	}
}

// openFD returns an open descriptor number, closed at the end of the test
// unless the code under test closed it.
func openFD(t *testing.T) int {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

func TestTakeHandover(t *testing.T) {
	tests := []struct {
		name    string
		env     *string // nil: unset
		wantNil bool
		wantErr bool
		parent  int
		sockets map[string]int
	}{
		{name: "not an upgrade", env: nil, wantNil: true},
		{name: "bad JSON", env: ptr("{"), wantNil: true, wantErr: true},
		{name: "sockets", env: ptr(`{"parent":42,"sockets":{"127.0.0.1:8000":3,"unix:/run/g.sock":4}}`),
			parent: 42, sockets: map[string]int{"127.0.0.1:8000": 3, "unix:/run/g.sock": 4}},
		{name: "standard descriptors are never sockets", env: ptr(`{"parent":7,"sockets":{"a":0,"b":2,"c":5}}`),
			parent: 7, sockets: map[string]int{"c": 5}},
		{name: "no sockets", env: ptr(`{"parent":9}`), parent: 9, sockets: map[string]int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(UpgradeEnv, "")
			if tt.env == nil {
				os.Unsetenv(UpgradeEnv)
			} else {
				os.Setenv(UpgradeEnv, *tt.env)
			}
			ho, err := takeHandover()
			if (err != nil) != tt.wantErr {
				t.Fatalf("takeHandover() error = %v, want error %v", err, tt.wantErr)
			}
			if _, set := os.LookupEnv(UpgradeEnv); set {
				t.Errorf("%s is still in the environment", UpgradeEnv)
			}
			if tt.wantNil {
				if ho != nil {
					t.Fatalf("takeHandover() = %+v, want nil", ho)
				}
				return
			}
			if ho == nil || ho.Parent != tt.parent || len(ho.Sockets) != len(tt.sockets) {
				t.Fatalf("takeHandover() = %+v, want parent %d and sockets %v", ho, tt.parent, tt.sockets)
			}
			for spec, fd := range tt.sockets {
				if ho.Sockets[spec] != fd {
					t.Errorf("socket %q = %d, want %d", spec, ho.Sockets[spec], fd)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestHandoverTakeAndCloseRest(t *testing.T) {
	var none *handover
	if fd := none.take("x"); fd != -1 {
		t.Errorf("nil handover take = %d, want -1", fd)
	}
	none.closeRest() // does nothing

	taken, left := openFD(t), openFD(t)
	ho := &handover{Sockets: map[string]int{"taken": taken, "left": left}}
	if fd := ho.take("taken"); fd != taken {
		t.Errorf("take(taken) = %d, want %d", fd, taken)
	}
	if fd := ho.take("taken"); fd != -1 {
		t.Errorf("a second take(taken) = %d, want -1", fd)
	}
	if fd := ho.take("missing"); fd != -1 {
		t.Errorf("take(missing) = %d, want -1", fd)
	}
	ho.closeRest()
	if !isOpen(taken) {
		t.Errorf("closeRest closed the descriptor that was taken")
	}
	if isOpen(left) {
		t.Errorf("closeRest left descriptor %d open", left)
	}
	if len(ho.Sockets) != 0 {
		t.Errorf("sockets after closeRest: %v", ho.Sockets)
	}
}

// TestBindHandedOver binds from a handed-over descriptor: the listener is
// that socket (a connection to it is accepted there), the descriptor is
// consumed, and a unix socket's file is removed at close only while no
// other master shares it.
func TestBindHandedOver(t *testing.T) {
	tests := []struct {
		name   string
		listen func(t *testing.T) (net.Listener, string) // the old master's socket and its --bind
		shared bool                                      // another master still serves on it
	}{
		{"tcp", func(t *testing.T) (net.Listener, string) {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			return ln, ln.Addr().String()
		}, false},
		{"unix", listenUnix, false},
		{"unix shared", listenUnix, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The old master's socket, held only as a descriptor (as the new
			// master inherits it): not in this process's poller.
			old, spec := tt.listen(t)
			if ul, ok := old.(*net.UnixListener); ok {
				ul.SetUnlinkOnClose(false)
			}
			raw, err := old.(syscall.Conn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			fd := -1
			raw.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 3) })
			old.Close()
			if err != nil {
				t.Fatal(err)
			}
			var want unix.Stat_t
			if err := unix.Fstat(fd, &want); err != nil {
				t.Fatal(err)
			}
			ho := &handover{Sockets: map[string]int{spec: fd}}
			l, err := bind(spec, listenOpts{backlog: 128}, ho)
			if err != nil {
				unix.Close(fd)
				t.Fatalf("bind(%q) from descriptor %d: %v", spec, fd, err)
			}
			if isOpen(fd) && uintptr(fd) != l.file.Fd() {
				t.Errorf("the handed-over descriptor %d is still open", fd)
			}
			if len(ho.Sockets) != 0 {
				t.Errorf("the handover still has %v", ho.Sockets)
			}
			var got unix.Stat_t
			if err := unix.Fstat(int(l.file.Fd()), &got); err != nil || got.Ino != want.Ino {
				t.Errorf("the listener is socket inode %d (%v), want the handed-over %d", got.Ino, err, want.Ino)
			}
			checkServes(t, l)
			if tt.shared {
				l.unlink = "" // as keepSharedSockets
			}
			l.close()
			if addr, ok := old.Addr().(*net.UnixAddr); ok {
				_, err := os.Stat(addr.Name)
				if exists := err == nil; exists != tt.shared {
					t.Errorf("socket file exists after close: %v, want %v", exists, tt.shared)
				}
			}
		})
	}
}

func listenUnix(t *testing.T) (net.Listener, string) {
	path := filepath.Join(t.TempDir(), "g.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return ln, "unix:" + path
}
