package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns a connected socket pair: ours, wrapped as the poller sees it
// (an *os.File from os.NewFile or a net.Conn from net.FileConn), and the
// peer as a plain *os.File in the poller.
type socket interface {
	syscall.Conn
	io.Closer
	SetReadDeadline(time.Time) error
}

var kinds = []struct {
	name string
	wrap func(t *testing.T, f *os.File) socket
}{
	{"os.File", func(t *testing.T, f *os.File) socket { return f }},
	{"net.Conn", func(t *testing.T, f *os.File) socket {
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}},
}

func pair(t *testing.T, wrap func(*testing.T, *os.File) socket) (socket, *FD, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours := wrap(t, os.NewFile(uintptr(fds[0]), "ours"))
	peer := os.NewFile(uintptr(fds[1]), "peer")
	t.Cleanup(func() { ours.Close(); peer.Close() })
	fd, err := New(ours)
	if err != nil {
		t.Fatal(err)
	}
	return ours, fd, peer
}

func TestFD(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, ours socket, fd *FD, peer *os.File)
	}{
		{"reads what arrived, then EOF", func(t *testing.T, _ socket, fd *FD, peer *os.File) {
			peer.Write([]byte("hello"))
			peer.Close()
			got, err := io.ReadAll(readerFunc(fd.Read))
			if err != nil || string(got) != "hello" {
				t.Fatalf("read %q, %v; want hello, nil", got, err)
			}
			if n, err := fd.Read(make([]byte, 8)); n != 0 || err != io.EOF {
				t.Fatalf("read after EOF: %d, %v; want 0, io.EOF", n, err)
			}
		}},
		{"waits in the poller for data", func(t *testing.T, _ socket, fd *FD, peer *os.File) {
			go func() {
				time.Sleep(20 * time.Millisecond)
				peer.Write([]byte("late"))
			}()
			b := make([]byte, 8)
			n, err := fd.Read(b)
			if err != nil || string(b[:n]) != "late" {
				t.Fatalf("read %q, %v; want late, nil", b[:n], err)
			}
		}},
		{"an empty read returns at once", func(t *testing.T, _ socket, fd *FD, _ *os.File) {
			if n, err := fd.Read(nil); n != 0 || err != nil {
				t.Fatalf("read(nil): %d, %v; want 0, nil", n, err)
			}
		}},
		{"the read deadline", func(t *testing.T, ours socket, fd *FD, _ *os.File) {
			ours.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := fd.Read(make([]byte, 8))
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read past the deadline: %v; want os.ErrDeadlineExceeded", err)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read past the deadline: %v is not a timeout net.Error", err)
			}
		}},
		{"read after close", func(t *testing.T, ours socket, fd *FD, _ *os.File) {
			ours.Close()
			if _, err := fd.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after Close: %v; want net.ErrClosed", err)
			}
			if _, err := fd.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write after Close: %v; want net.ErrClosed", err)
			}
		}},
		{"close wakes a waiting read", func(t *testing.T, ours socket, fd *FD, _ *os.File) {
			go func() {
				time.Sleep(20 * time.Millisecond)
				ours.Close()
			}()
			if _, err := fd.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read when closed: %v; want net.ErrClosed", err)
			}
		}},
		{"a write larger than the socket buffer", func(t *testing.T, _ socket, fd *FD, peer *os.File) {
			want := make([]byte, 4<<20)
			for i := range want {
				want[i] = byte(i * 7)
			}
			got := make(chan []byte)
			go func() {
				b, _ := io.ReadAll(peer)
				got <- b
			}()
			n, err := fd.Write(want)
			if n != len(want) || err != nil {
				t.Fatalf("write: %d, %v; want %d, nil", n, err, len(want))
			}
			unix.Shutdown(int(must(fd.rc)), unix.SHUT_WR)
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("the peer read %d bytes, not the %d written in order", len(b), len(want))
			}
		}},
		{"a write to a closed peer", func(t *testing.T, _ socket, fd *FD, peer *os.File) {
			peer.Close()
			_, err := fd.Write([]byte("x"))
			var se *os.SyscallError
			if !errors.As(err, &se) || se.Syscall != "write" || !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("write to a closed peer: %v; want *os.SyscallError write EPIPE", err)
			}
		}},
		{"a read reset by the peer", func(t *testing.T, _ socket, fd *FD, peer *os.File) {
			// Closing with unread data makes a unix socket peer see
			// ECONNRESET.
			fd.Write([]byte("unread"))
			peer.Close()
			_, err := fd.Read(make([]byte, 8))
			var se *os.SyscallError
			if !errors.As(err, &se) || se.Syscall != "read" || !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read reset by the peer: %v; want *os.SyscallError read ECONNRESET", err)
			}
		}},
	}
	for _, k := range kinds {
		for _, tc := range cases {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				ours, fd, peer := pair(t, k.wrap)
				tc.run(t, ours, fd, peer)
			})
		}
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// must returns rc's descriptor.
func must(rc syscall.RawConn) uintptr {
	var fd uintptr
	rc.Control(func(d uintptr) { fd = d })
	return fd
}

// TestConn checks the net.Conn wrapper: errors are *net.OpError values
// naming the operation, as the net package's own, and the methods it does
// not replace are the wrapped connection's.
func TestConn(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rl := Listener{Listener: ln}
	if _, err := rl.SyscallConn(); err != nil {
		t.Fatalf("Listener.SyscallConn: %v", err)
	}
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := rl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*Conn); !ok {
		t.Fatalf("Accept returned %T; want *rawio.Conn", c)
	}

	client.Write([]byte("ping"))
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("read %q, %v", b, err)
	}
	if _, err := c.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, b); err != nil || string(b) != "pong" {
		t.Fatalf("the client read %q, %v", b, err)
	}
	// CloseWrite is the wrapped *net.UnixConn's: the client sees EOF.
	if err := c.(*Conn).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	if n, err := client.Read(b); n != 0 || err != io.EOF {
		t.Fatalf("client read after CloseWrite: %d, %v; want EOF", n, err)
	}

	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err = c.Read(b)
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || oe.Net != "unix" || !oe.Timeout() {
		t.Fatalf("read past the deadline: %#v; want a timeout *net.OpError (read, unix)", err)
	}
	c.Close()
	_, err = c.Write(b)
	if !errors.As(err, &oe) || oe.Op != "write" || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v; want a *net.OpError (write) wrapping net.ErrClosed", err)
	}
}

// TestWrapConnPassesOthers: a connection that is not a socket is left as
// it is.
func TestWrapConnPassesOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c := WrapConn(a); c != a {
		t.Fatalf("WrapConn(net.Pipe) = %T; want the pipe itself", c)
	}
}

// pipe returns an FD on each end of a pipe as the worker makes them (the
// ends in the poller, non-blocking), and the ends' files.
func pipe(t *testing.T) (r, w *FD, rf, wf *os.File) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	rf, wf = os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
	t.Cleanup(func() { rf.Close(); wf.Close() })
	var err error
	if r, err = New(rf); err == nil {
		w, err = New(wf)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r, w, rf, wf
}

// TestPipe checks an FD on each end of a pipe (the worker's channel to its
// runtime): the same results as on a socket.
func TestPipe(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, r, w *FD, rf, wf *os.File)
	}{
		{"a write larger than the pipe, read in order, then EOF", func(t *testing.T, r, w *FD, _, wf *os.File) {
			want := make([]byte, 4<<20)
			for i := range want {
				want[i] = byte(i * 7)
			}
			go func() {
				w.Write(want)
				wf.Close()
			}()
			got, err := io.ReadAll(readerFunc(r.Read))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, %v; want the %d written, in order, then EOF", len(got), err, len(want))
			}
		}},
		{"the read deadline", func(t *testing.T, r, _ *FD, rf, _ *os.File) {
			rf.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := r.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read past the deadline: %v; want os.ErrDeadlineExceeded", err)
			}
		}},
		{"close wakes a waiting read", func(t *testing.T, r, _ *FD, rf, _ *os.File) {
			go func() {
				time.Sleep(20 * time.Millisecond)
				rf.Close()
			}()
			if _, err := r.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read when closed: %v; want net.ErrClosed", err)
			}
		}},
		{"close wakes a waiting write", func(t *testing.T, _, w *FD, _, wf *os.File) {
			go func() {
				time.Sleep(20 * time.Millisecond)
				wf.Close()
			}()
			if _, err := w.Write(make([]byte, 4<<20)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("write when closed: %v; want net.ErrClosed", err)
			}
		}},
		{"a write with the reader gone", func(t *testing.T, _, w *FD, rf, _ *os.File) {
			rf.Close()
			_, err := w.Write([]byte("x"))
			var se *os.SyscallError
			if !errors.As(err, &se) || se.Syscall != "write" || !errors.Is(err, syscall.EPIPE) {
				t.Fatalf("write with the reader gone: %v; want *os.SyscallError write EPIPE", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, w, rf, wf := pipe(t)
			tc.run(t, r, w, rf, wf)
		})
	}
}
