package master

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseBind(t *testing.T) {
	tests := []struct {
		bind    string
		network string
		addr    string
		wantErr string // substring; empty means success
	}{
		{bind: "127.0.0.1:8000", network: "tcp4", addr: "127.0.0.1:8000"},
		{bind: "127.0.0.1", network: "tcp4", addr: "127.0.0.1:8000"},
		{bind: "0.0.0.0:80", network: "tcp4", addr: "0.0.0.0:80"},
		{bind: "127.0.0.1:0", network: "tcp4", addr: "127.0.0.1:0"},
		{bind: "127.0.0.1:65535", network: "tcp4", addr: "127.0.0.1:65535"},
		{bind: ":9000", network: "tcp4", addr: "0.0.0.0:9000"},
		{bind: "", network: "tcp4", addr: "0.0.0.0:8000"},
		{bind: "localhost:9000", network: "tcp", addr: "localhost:9000"},
		{bind: "example.com", network: "tcp", addr: "example.com:8000"},
		{bind: "[::1]:8000", network: "tcp6", addr: "[::1]:8000"},
		{bind: "[::1]", network: "tcp6", addr: "[::1]:8000"},
		{bind: "[::]:80", network: "tcp", addr: "[::]:80"}, // dual-stack
		{bind: "[2001:db8::1]:443", network: "tcp6", addr: "[2001:db8::1]:443"},
		{bind: "tcp://127.0.0.1:9000", network: "tcp4", addr: "127.0.0.1:9000"},
		{bind: "tcp://[::1]:9000", network: "tcp6", addr: "[::1]:9000"},
		{bind: "tcp://localhost", network: "tcp", addr: "localhost:8000"},
		{bind: "unix:/tmp/gorn.sock", network: "unix", addr: "/tmp/gorn.sock"},
		{bind: "unix:///tmp/gorn.sock", network: "unix", addr: "/tmp/gorn.sock"},
		{bind: "unix:gorn.sock", network: "unix", addr: "gorn.sock"},
		{bind: "fd://3", network: "fd", addr: "3"},
		{bind: "fd://0", network: "fd", addr: "0"},
		{bind: "unix:", wantErr: "unix: needs a path"},
		{bind: "unix://", wantErr: "unix: needs a path"},
		{bind: "fd://", wantErr: "fd:// needs a descriptor number"},
		{bind: "fd://x", wantErr: "fd:// needs a descriptor number"},
		{bind: "fd://-1", wantErr: "fd:// needs a descriptor number"},
		{bind: "127.0.0.1:http", wantErr: `bad port "http"`},
		{bind: "127.0.0.1:", wantErr: `bad port ""`},
		{bind: "127.0.0.1:65536", wantErr: `bad port "65536"`},
		{bind: "127.0.0.1:-1", wantErr: `bad port "-1"`},
		{bind: "[::1]:x", wantErr: `bad port "x"`},
		{bind: "[::1]:", wantErr: `bad port ""`},
		{bind: "::1", wantErr: "put an IPv6 address in brackets"},
		{bind: "::1:8000", wantErr: "put an IPv6 address in brackets"},
		{bind: "[::1", wantErr: "unterminated ["},
		{bind: "[::1]8000", wantErr: `invalid bind "[::1]8000"`},
		{bind: "[127.0.0.1]:80", wantErr: "is not an IPv6 address"},
		{bind: "[localhost]:80", wantErr: "is not an IPv6 address"},
	}
	for _, tt := range tests {
		t.Run(tt.bind, func(t *testing.T) {
			network, addr, err := ParseBind(tt.bind)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseBind(%q) = %q, %q, %v; want an error containing %q", tt.bind, network, addr, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBind(%q) = %v", tt.bind, err)
			}
			if network != tt.network || addr != tt.addr {
				t.Errorf("ParseBind(%q) = %q, %q; want %q, %q", tt.bind, network, addr, tt.network, tt.addr)
			}
		})
	}
}

// checkServes checks that the listener's file, what workers inherit, is the
// bound socket, non-blocking as workers need it, and out of the master's
// poller.
func checkServes(t *testing.T, l *listener) {
	t.Helper()
	if inPoller(t, l.file) {
		t.Error("the listening socket is in the master's epoll set: every connection would wake the master")
	}
	fl, err := unix.FcntlInt(l.file.Fd(), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("the socket is blocking (flags %#x, %v): a worker's accept(2) would block in the kernel", fl, err)
	}
	network := l.info.Network
	ln, err := net.FileListener(l.file)
	if err != nil {
		t.Fatalf("the listener's file is not a listener: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial(network, l.info.Addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, l.info.Addr, err)
	}
	defer c.Close()
	// The client speaks first, as HTTP's do: a TCP socket gorn binds
	// defers the accept until it has (see TestBindDeferAccept).
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	defer s.Close()
	b := make([]byte, 1)
	if _, err := s.Read(b); err != nil || b[0] != 'x' {
		t.Fatalf("read %q, %v", b, err)
	}
}

// inPoller reports whether f's file is in one of this process's epoll sets,
// Go's poller among them: /proc/self/fdinfo of an epoll descriptor lists the
// inode of every file it watches.
func inPoller(t *testing.T, f *os.File) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	polls := 0
	for _, e := range ents {
		if link, _ := os.Readlink("/proc/self/fd/" + e.Name()); link != "anon_inode:[eventpoll]" {
			continue
		}
		polls++
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(info), "\n") {
			_, ino, ok := strings.Cut(line, " ino:")
			if !strings.HasPrefix(line, "tfd:") || !ok {
				continue
			}
			ino, _, _ = strings.Cut(ino, " ")
			if n, err := strconv.ParseUint(ino, 16, 64); err == nil && n == st.Ino {
				return true
			}
		}
	}
	if polls == 0 {
		t.Fatal("no epoll descriptor in /proc/self/fd: the check would pass whatever bind does")
	}
	return false
}

func TestBindTCP(t *testing.T) {
	tests := []struct {
		name, bind, host string
	}{
		{"ipv4", "127.0.0.1:0", "127.0.0.1"},
		{"ipv4 tcp://", "tcp://127.0.0.1:0", "127.0.0.1"},
		{"ipv6", "[::1]:0", "[::1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.HasPrefix(tt.host, "[") {
				probe, err := net.Listen("tcp6", "[::1]:0")
				if err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				probe.Close()
			}
			l, err := bind(tt.bind, listenOpts{backlog: 128}, nil)
			if err != nil {
				t.Fatalf("bind(%q) = %v", tt.bind, err)
			}
			defer l.close()
			sa, err := unix.Getsockname(int(l.file.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			var port int
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				port = a.Port
			case *unix.SockaddrInet6:
				port = a.Port
			}
			if port == 0 {
				t.Fatal("bound port 0")
			}
			wantAddr := tt.host + ":" + strconv.Itoa(port)
			if l.info.Network != "tcp" || l.info.Addr != wantAddr {
				t.Errorf("info = %+v, want tcp %s", l.info, wantAddr)
			}
			if l.url != "http://"+wantAddr {
				t.Errorf("url = %q, want http://%s", l.url, wantAddr)
			}
			// Plain TCP, never Multipath TCP (Go's default where the
			// kernel has it): the workers accept TCP sockets only.
			p, err := unix.GetsockoptInt(int(l.file.Fd()), unix.SOL_SOCKET, unix.SO_PROTOCOL)
			if err != nil || p != unix.IPPROTO_TCP {
				t.Errorf("SO_PROTOCOL = %d (%v), want IPPROTO_TCP", p, err)
			}
			checkServes(t, l)
		})
	}
}

// TestBindDualStack: [::] listens for IPv4 clients too, as gunicorn's
// (Python's IPv6 sockets are dual-stack on Linux).
func TestBindDualStack(t *testing.T) {
	probe, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	probe.Close()
	l, err := bind("[::]:0", listenOpts{backlog: 128}, nil)
	if err != nil {
		t.Fatalf("bind([::]:0) = %v", err)
	}
	defer l.close()
	if v6only, err := unix.GetsockoptInt(int(l.file.Fd()), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil || v6only != 0 {
		t.Errorf("IPV6_V6ONLY = %d (%v), want 0", v6only, err)
	}
	sa, err := unix.Getsockname(int(l.file.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := sa.(*unix.SockaddrInet6)
	if !ok {
		t.Fatalf("bound %T, want an IPv6 socket", sa)
	}
	c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(a.Port), 5*time.Second)
	if err != nil {
		t.Fatalf("an IPv4 client cannot reach [::]:%d: %v", a.Port, err)
	}
	c.Close()
}

func TestBindInUse(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l, err := bind(ln.Addr().String(), listenOpts{backlog: 128}, nil)
	if err == nil {
		l.close()
		t.Fatalf("bind(%s) of a port in use succeeded", ln.Addr())
	}
	if want := "Connection in use: " + ln.Addr().String(); err.Error() != want {
		t.Errorf("bind error = %q, want %q", err, want)
	}
}

func TestBindUnix(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantErr string
	}{
		{name: "fresh"},
		{
			name: "stale socket replaced",
			prepare: func(t *testing.T, path string) {
				ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				ln.SetUnlinkOnClose(false)
				ln.Close()
				if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
					t.Fatalf("no stale socket left: %v", err)
				}
			},
		},
		{
			name: "regular file kept",
			prepare: func(t *testing.T, path string) {
				if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "Connection in use: ",
		},
		{
			name: "missing directory",
			prepare: func(t *testing.T, path string) {
				os.Remove(filepath.Dir(path))
			},
			wantErr: "Can't connect to ",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := filepath.Join(dir, strconv.Itoa(i))
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(sub, "s.sock")
			if tt.prepare != nil {
				tt.prepare(t, path)
			}
			l, err := bind("unix:"+path, listenOpts{backlog: 128}, nil)
			if tt.wantErr != "" {
				if err == nil {
					l.close()
					t.Fatalf("bind(unix:%s) succeeded", path)
				}
				if !strings.HasPrefix(err.Error(), tt.wantErr+path) {
					t.Errorf("bind error = %q, want it to start with %q", err, tt.wantErr+path)
				}
				if strings.Contains(err.Error(), "%!") || strings.Contains(err.Error(), "<nil>") {
					t.Errorf("bind error = %q has no cause", err)
				}
				if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
					if b, _ := os.ReadFile(path); string(b) != "data" {
						t.Errorf("the regular file was changed: %q", b)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("bind(unix:%s) = %v", path, err)
			}
			if l.info.Network != "unix" || l.info.Addr != path {
				t.Errorf("info = %+v, want unix %s", l.info, path)
			}
			if l.url != "unix:"+path {
				t.Errorf("url = %q, want unix:%s", l.url, path)
			}
			checkServes(t, l)
			l.close()
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file left after close: %v", err)
			}
		})
	}
}

// TestBindBacklog checks the listen(2) backlog through a unix socket, where
// Linux refuses a non-blocking connect with EAGAIN once backlog+1
// connections wait to be accepted.
func TestBindBacklog(t *testing.T) {
	dir := t.TempDir()
	for _, backlog := range []int{1, 5} {
		t.Run(strconv.Itoa(backlog), func(t *testing.T) {
			path := filepath.Join(dir, strconv.Itoa(backlog)+".sock")
			l, err := bind("unix:"+path, listenOpts{backlog: backlog}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.close()
			pending := 0
			for ; pending < 100; pending++ {
				fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
				if err == unix.EAGAIN {
					break
				}
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
			}
			if pending < backlog || pending > backlog+1 {
				t.Errorf("%d connections queued with backlog %d", pending, backlog)
			}
		})
	}
}

// TestBindDeferAccept checks that the TCP sockets gorn binds defer a
// connection's accept until its client has sent something, and that a
// socket inherited with fd:// keeps its own setting.
func TestBindDeferAccept(t *testing.T) {
	tests := []struct {
		name     string
		bind     func(t *testing.T) string
		deferred bool
	}{
		{"ipv4", func(*testing.T) string { return "127.0.0.1:0" }, true},
		{"ipv6", func(t *testing.T) string {
			probe, err := net.Listen("tcp6", "[::1]:0")
			if err != nil {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			probe.Close()
			return "[::1]:0"
		}, true},
		{"fd", func(t *testing.T) string {
			fd, _ := rawListenerFD(t)
			return "fd://" + strconv.Itoa(fd)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := bind(tt.bind(t), listenOpts{backlog: 128}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.close()
			fd := int(l.file.Fd())
			got, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: deferAccept, false: 0}[tt.deferred]; got != want {
				t.Fatalf("TCP_DEFER_ACCEPT = %d, want %d", got, want)
			}
			c, err := net.Dial("tcp", l.info.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// ready polls the listening socket for a connection to accept
			// for up to ms milliseconds.
			ready := func(ms int) bool {
				fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				for {
					n, err := unix.Poll(fds, ms)
					if err == unix.EINTR {
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					return n > 0
				}
			}
			// Connected but silent: deferred for a second (deferAccept),
			// so not ready within a fifth of it.
			if r := ready(200); r == tt.deferred {
				t.Fatalf("a silent client's connection is ready to accept: %v, want %v", r, !tt.deferred)
			}
			if _, err := c.Write([]byte("GET")); err != nil {
				t.Fatal(err)
			}
			if !ready(5000) {
				t.Fatal("a client that sent its request was not ready to accept within 5 s")
			}
		})
	}
}

// rawListenerFD returns a descriptor of a new 127.0.0.1 listener that no
// *os.File owns, as a socket inherited from a supervisor would be.
func rawListenerFD(t *testing.T) (int, string) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	raw.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
	if err != nil {
		t.Fatal(err)
	}
	return fd, ln.Addr().String()
}

func TestBindFD(t *testing.T) {
	t.Run("listener", func(t *testing.T) {
		fd, addr := rawListenerFD(t)
		l, err := bind("fd://"+strconv.Itoa(fd), listenOpts{backlog: 128}, nil)
		if err != nil {
			unix.Close(fd)
			t.Fatalf("bind(fd://%d) = %v", fd, err)
		}
		defer l.close()
		if l.info.Network != "tcp" || l.info.Addr != addr {
			t.Errorf("info = %+v, want tcp %s", l.info, addr)
		}
		if l.url != "http://"+addr {
			t.Errorf("url = %q", l.url)
		}
		checkServes(t, l)
	})
	t.Run("not a socket", func(t *testing.T) {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(p[1])
		l, err := bind("fd://"+strconv.Itoa(p[0]), listenOpts{backlog: 128}, nil)
		if err == nil {
			l.close()
			t.Fatal("bind of a pipe succeeded")
		}
		if want := "fd://" + strconv.Itoa(p[0]) + " is not a listening socket"; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("bind error = %q, want it to start with %q", err, want)
		}
	})
}

func TestBindBadSpec(t *testing.T) {
	for _, spec := range []string{"127.0.0.1:http", "::1", "unix:", "fd://x"} {
		if l, err := bind(spec, listenOpts{backlog: 128}, nil); err == nil {
			l.close()
			t.Errorf("bind(%q) succeeded", spec)
		} else if !strings.HasPrefix(err.Error(), "invalid bind") {
			t.Errorf("bind(%q) = %q, want the ParseBind error", spec, err)
		}
	}
}

func TestListenCause(t *testing.T) {
	dns := &net.DNSError{Err: "no such host", Name: "nowhere.invalid", IsNotFound: true}
	plain := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"errno", &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)}, syscall.EADDRNOTAVAIL},
		{"lookup", &net.OpError{Op: "listen", Net: "tcp", Err: dns}, dns},
		{"syscall error", os.NewSyscallError("listen", syscall.EACCES), syscall.EACCES},
		{"plain", plain, plain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := listenCause(tt.err); got != tt.want {
				t.Errorf("listenCause(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestBindAddressNotAvailable(t *testing.T) {
	// 192.0.2.1 (TEST-NET-1) is on no interface of this host.
	l, err := bind("192.0.2.1:0", listenOpts{backlog: 128}, nil)
	if err == nil {
		l.close()
		t.Skip("this host binds non-local addresses")
	}
	if want := "Can't connect to 192.0.2.1:0: " + syscall.EADDRNOTAVAIL.Error(); err.Error() != want {
		t.Errorf("bind error = %q, want %q", err, want)
	}
}

func TestListenFDs(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    []string
		wantErr bool
	}{
		{"not socket-activated", map[string]string{}, nil, false},
		{"one socket", map[string]string{"LISTEN_PID": "100", "LISTEN_FDS": "1"}, []string{"fd://3"}, false},
		{"three sockets", map[string]string{"LISTEN_PID": "100", "LISTEN_FDS": "3"}, []string{"fd://3", "fd://4", "fd://5"}, false},
		{"none", map[string]string{"LISTEN_PID": "100", "LISTEN_FDS": "0"}, nil, false},
		{"for another process", map[string]string{"LISTEN_PID": "99", "LISTEN_FDS": "2"}, nil, false},
		{"no pid", map[string]string{"LISTEN_FDS": "2"}, nil, false},
		{"not a count", map[string]string{"LISTEN_PID": "100", "LISTEN_FDS": "two"}, nil, true},
		{"missing count", map[string]string{"LISTEN_PID": "100"}, nil, true},
		{"negative", map[string]string{"LISTEN_PID": "100", "LISTEN_FDS": "-1"}, nil, true},
		{"absurd", map[string]string{"LISTEN_PID": "100", "LISTEN_FDS": "99999999"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ListenFDs(func(k string) string { return tt.env[k] }, 100)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ListenFDs() error = %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ListenFDs() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestBindReusePort: --reuse-port sets SO_REUSEPORT on TCP sockets, so a
// second socket (another server) may bind the same address; without it,
// the address is taken.
func TestBindReusePort(t *testing.T) {
	for _, reuse := range []bool{true, false} {
		l, err := bind("127.0.0.1:0", listenOpts{backlog: 128, reusePort: reuse}, nil)
		if err != nil {
			t.Fatal(err)
		}
		v, err := unix.GetsockoptInt(int(l.file.Fd()), unix.SOL_SOCKET, unix.SO_REUSEPORT)
		if err != nil || (v != 0) != reuse {
			t.Errorf("reusePort %v: SO_REUSEPORT = %d, %v", reuse, v, err)
		}
		var lc net.ListenConfig
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		}
		second, err := lc.Listen(context.Background(), "tcp4", l.info.Addr)
		if (err == nil) != reuse {
			t.Errorf("reusePort %v: a second bind of %s: %v", reuse, l.info.Addr, err)
		}
		if second != nil {
			second.Close()
		}
		l.close()
	}
}
