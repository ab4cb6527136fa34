package tcplisten

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens a plain TCP listener (no Multipath TCP) on addr and returns
// it with its descriptor; the test closes it.
func listen(t *testing.T, addr string) (net.Listener, int) {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, fd(t, ln.(syscall.Conn))
}

func fd(t *testing.T, sc syscall.Conn) int {
	t.Helper()
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n := -1
	raw.Control(func(f uintptr) { n = int(f) })
	return n
}

// accepted returns a Listener on a fresh socket bound to addr, a client
// connection to it and the server's end.
func accepted(t *testing.T, addr string) (*Listener, net.Conn, *Conn) {
	t.Helper()
	ln, n := listen(t, addr)
	l, err := FromFD(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	client, err := net.DialTimeout("tcp", dialAddr(ln.Addr()), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return l, client, c.(*Conn)
}

// dialAddr is the address to dial a listener at: its own, or for a
// wildcard one the IPv4 loopback.
func dialAddr(a net.Addr) string {
	ta := a.(*net.TCPAddr)
	host := ta.IP.String()
	if ta.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(ta.Port))
}

// ipv6Loopback reports whether this machine can listen on ::1.
func ipv6Loopback() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func TestAcceptedConnection(t *testing.T) {
	for _, tc := range []struct {
		name, bind, local string
	}{
		{"loopback listener", "127.0.0.1:0", "127.0.0.1"},
		{"wildcard listener", "0.0.0.0:0", "127.0.0.1"}, // the address the connection came to
		{"IPv6 loopback listener", "[::1]:0", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.bind, "::") && !ipv6Loopback() {
				t.Skip("no IPv6 loopback on this machine")
			}
			l, client, c := accepted(t, tc.bind)
			if got, want := c.RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Errorf("RemoteAddr = %s, want %s", got, want)
			}
			local := c.LocalAddr().(*net.TCPAddr)
			if local.IP.String() != tc.local || local.Port != l.Addr().(*net.TCPAddr).Port {
				t.Errorf("LocalAddr = %s, want %s port %d", local, tc.local, l.Addr().(*net.TCPAddr).Port)
			}
			n := fd(t, c)
			for _, opt := range []struct {
				name       string
				level, opt int
				want       int
			}{
				{"TCP_NODELAY (from the listener)", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
				{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0},
				{"SO_PROTOCOL", unix.SOL_SOCKET, unix.SO_PROTOCOL, unix.IPPROTO_TCP},
			} {
				if v, err := unix.GetsockoptInt(n, opt.level, opt.opt); err != nil || v != opt.want {
					t.Errorf("%s = %d (%v), want %d", opt.name, v, err, opt.want)
				}
			}
			flags, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0)
			if err != nil || flags&unix.FD_CLOEXEC == 0 {
				t.Errorf("accepted descriptor flags %#x (%v), want close-on-exec", flags, err)
			}

			// Bytes both ways, then end of stream both ways.
			if _, err := client.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("server read %q, %v", buf, err)
			}
			if _, err := c.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if got, err := io.ReadAll(client); err != nil || string(got) != "pong" {
				t.Errorf("client read %q, %v; want pong then EOF", got, err)
			}
			client.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(buf); n != 0 || err != io.EOF {
				t.Errorf("read after the peer closed: %d, %v; want 0, io.EOF", n, err)
			}
		})
	}
}

// Accept allocates the connection and nothing else: the peer's address
// lives in it.
func TestAcceptAllocatesOnlyTheConn(t *testing.T) {
	ln, n := listen(t, "127.0.0.1:0")
	l, err := FromFD(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	const runs = 20
	var clients []net.Conn
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	for range runs + 1 { // AllocsPerRun runs once more to warm up
		c, err := net.DialTimeout("tcp", dialAddr(ln.Addr()), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	var accepted []net.Conn
	allocs := testing.AllocsPerRun(runs, func() {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		accepted = append(accepted[:0:0], c) // a fresh slice: the append is not Accept's
		c.Close()
	})
	// One for the Conn, one for the test's own slice.
	if allocs > 2 {
		t.Errorf("Accept and Close: %.1f allocations, want the Conn only", allocs)
	}
	if got, want := accepted[0].RemoteAddr().String(), clients[runs].LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr = %s, want %s", got, want)
	}
}

// The errors are what a *net.TCPConn returns, which net/http and
// crypto/tls depend on: for a connection still outside the poller as for
// one in it.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		polled bool
	}{
		{"before the poller", false},
		{"in the poller", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, c := accepted(t, "127.0.0.1:0")
			var ne net.Error
			var oe *net.OpError
			if tc.polled { // a read that waits: into the poller
				c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			} else { // a deadline already past: refused before any read
				c.SetReadDeadline(time.Now().Add(-time.Second))
			}
			_, err := c.Read(make([]byte, 1))
			if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "read" {
				t.Errorf("read past the deadline: %#v; want a timeout *net.OpError (read)", err)
			}
			if got := c.p.Load() != nil; got != tc.polled {
				t.Fatalf("in the poller: %v, want %v", got, tc.polled)
			}
			c.SetReadDeadline(time.Time{})
			c.Close()
			for _, op := range []struct {
				name string
				do   func() error
			}{
				{"read", func() error { _, err := c.Read(make([]byte, 1)); return err }},
				{"write", func() error { _, err := c.Write([]byte("x")); return err }},
				{"set deadline", func() error { return c.SetDeadline(time.Now()) }},
				{"close write", c.CloseWrite},
				{"close", c.Close},
			} {
				if err := op.do(); !errors.Is(err, net.ErrClosed) || !errors.As(err, &oe) {
					t.Errorf("%s after Close: %v; want a *net.OpError wrapping net.ErrClosed", op.name, err)
				}
			}
		})
	}
}

// A client that sends its request with the connection is answered and
// closed without the connection ever entering the poller; a read that has
// to wait, a write that fills the send buffer, or SyscallConn put it
// there, keeping the deadlines set before.
func TestEntersPollerOnlyToWait(t *testing.T) {
	t.Run("request already there", func(t *testing.T) {
		_, client, c := accepted(t, "127.0.0.1:0")
		io.WriteString(client, "ping")
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) // remembered, not a timer
		buf := make([]byte, 16)
		deadline := time.Now().Add(5 * time.Second)
		n := 0
		for n < 4 && time.Now().Before(deadline) { // the bytes may come in pieces
			m, err := c.Read(buf[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += m
		}
		if _, err := c.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		if c.p.Load() != nil {
			t.Error("the connection entered the poller without waiting")
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, err := io.ReadAll(client); err != nil || string(got) != "pong" || string(buf[:n]) != "ping" {
			t.Errorf("server read %q; client read %q, %v; want ping, then pong and EOF", buf[:n], got, err)
		}
	})
	t.Run("read waits", func(t *testing.T) {
		_, client, c := accepted(t, "127.0.0.1:0")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		go func() {
			time.Sleep(20 * time.Millisecond)
			io.WriteString(client, "late")
		}()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "late" {
			t.Fatalf("read %q, %v", buf, err)
		}
		if c.p.Load() == nil {
			t.Error("a read that waited left the connection outside the poller")
		}
	})
	t.Run("deadline set before the wait", func(t *testing.T) {
		_, _, c := accepted(t, "127.0.0.1:0")
		c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		done := readOne(c)
		if err := waitErr(t, done, "past its deadline"); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read: %v; want the deadline set before it waited", err)
		}
	})
	t.Run("close stops a waiting read", func(t *testing.T) {
		_, _, c := accepted(t, "127.0.0.1:0")
		done := readOne(c)
		for deadline := time.Now().Add(5 * time.Second); c.p.Load() == nil; { // the read waits in the poller
			if time.Now().After(deadline) {
				t.Fatal("the read has not entered the poller after 5 s")
			}
			time.Sleep(time.Millisecond)
		}
		c.Close()
		if err := waitErr(t, done, "after Close"); !errors.Is(err, net.ErrClosed) {
			t.Errorf("read: %v; want net.ErrClosed", err)
		}
	})
	t.Run("write fills the send buffer", func(t *testing.T) {
		_, client, c := accepted(t, "127.0.0.1:0")
		big := make([]byte, 8<<20) // more than both socket buffers hold
		for i := range big {
			big[i] = byte(i)
		}
		got := make(chan []byte, 1)
		go func() {
			time.Sleep(20 * time.Millisecond) // let the write fill the buffers first
			client.SetReadDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(client)
			got <- b
		}()
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Write(big); n != len(big) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(big))
		}
		if c.p.Load() == nil {
			t.Error("a write that waited left the connection outside the poller")
		}
		c.Close()
		if b := <-got; !bytes.Equal(b, big) {
			t.Errorf("client read %d bytes, not the %d written in order", len(b), len(big))
		}
	})
	t.Run("SyscallConn", func(t *testing.T) {
		_, client, c := accepted(t, "127.0.0.1:0")
		raw, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		if c.p.Load() == nil {
			t.Fatal("SyscallConn left the connection outside the poller")
		}
		go func() {
			time.Sleep(20 * time.Millisecond)
			io.WriteString(client, "x")
		}()
		var n int
		var rerr error
		err = raw.Read(func(fd uintptr) bool { // waits in the poller
			n, rerr = unix.Read(int(fd), make([]byte, 1))
			return rerr != unix.EAGAIN
		})
		if err != nil || rerr != nil || n != 1 {
			t.Errorf("RawConn.Read: %v, read(2) %d, %v; want one byte", err, n, rerr)
		}
	})
}

// readOne reads one byte of c in a goroutine; its error comes on the
// channel.
func readOne(c *Conn) <-chan error {
	done := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); done <- err }()
	return done
}

// waitErr waits up to 5 s for done's error.
func waitErr(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("read still waiting 5 s %s", what)
		return nil
	}
}

// Reads, writes, deadlines and Close from several goroutines at once, as
// http1's request and watcher goroutines make them, on connections that
// start outside the poller (run with -race).
func TestConcurrentUse(t *testing.T) {
	for range 20 {
		_, client, c := accepted(t, "127.0.0.1:0")
		go io.Copy(io.Discard, client)
		io.WriteString(client, "abc")
		var wg sync.WaitGroup
		wg.Add(3)
		go func() {
			defer wg.Done()
			buf := make([]byte, 8)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
				c.SetReadDeadline(time.Now().Add(time.Second))
			}
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Millisecond)
			c.Close()
		}()
		wg.Wait()
	}
}

func TestCloseUnblocksAccept(t *testing.T) {
	_, n := listen(t, "127.0.0.1:0")
	l, err := FromFD(n)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it wait in the poller
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked 5 s after Close")
	}
	// The descriptor FromFD was given is still open and listening.
	if _, err := unix.GetsockoptInt(n, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil {
		t.Errorf("the original descriptor: %v", err)
	}
}

func TestFromFDRejects(t *testing.T) {
	dir := t.TempDir()
	unixLn, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer unixLn.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	cases := []struct {
		name string
		fd   int
	}{
		{"unix socket", fd(t, unixLn.(syscall.Conn))},
		{"udp socket", fd(t, udp.(syscall.Conn))},
	}
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	if mp, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0"); err == nil {
		defer mp.Close()
		if p, _ := unix.GetsockoptInt(fd(t, mp.(syscall.Conn)), unix.SOL_SOCKET, unix.SO_PROTOCOL); p == unix.IPPROTO_MPTCP {
			cases = append(cases, struct {
				name string
				fd   int
			}{"multipath TCP socket", fd(t, mp.(syscall.Conn))})
		}
	}
	f, err := os.CreateTemp(dir, "file")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := FromFD(tc.fd); !errors.Is(err, ErrNotTCP) {
				t.Errorf("FromFD: %v; want ErrNotTCP", err)
			}
		})
	}
	if _, err := FromFD(int(f.Fd())); err == nil || errors.Is(err, ErrNotTCP) {
		t.Errorf("FromFD(a file) = %v; want a not-a-socket error", err)
	}
}

// net/http behaves on these connections as on its own: a request is
// served; a client that sends nothing is dropped at ReadHeaderTimeout
// without a response (only a *net.TCPConn-like timeout error gets that:
// any other error gets a 400), and one that stalls mid-head gets what it
// gets from a *net.TCPConn.
func TestHTTPServer(t *testing.T) {
	clients := []struct {
		name, send string
	}{
		{"request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"silent", ""},
		{"stalled mid-head", "GET / HTTP/1.1\r\nHo"},
	}
	got := map[bool][]string{}
	for _, lean := range []bool{false, true} {
		ln, n := listen(t, "127.0.0.1:0")
		var serve net.Listener = ln
		if lean {
			l, err := FromFD(n)
			if err != nil {
				t.Fatal(err)
			}
			serve = l
		}
		srv := &http.Server{
			ReadHeaderTimeout: 100 * time.Millisecond,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				io.WriteString(w, "hello")
			}),
		}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(serve) }()
		for _, cl := range clients {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, cl.send)
			b, err := io.ReadAll(c)
			c.Close()
			if err != nil {
				t.Fatalf("%s: %v", cl.name, err)
			}
			resp := string(b)
			if i := strings.Index(resp, "Date: "); i >= 0 { // the one part that varies
				resp = resp[:i] + resp[i+strings.Index(resp[i:], "\r\n")+2:]
			}
			got[lean] = append(got[lean], resp)
		}
		srv.Close()
		<-done
	}
	for i, cl := range clients {
		if got[true][i] != got[false][i] {
			t.Errorf("%s: got %q; a *net.TCPConn gets %q", cl.name, got[true][i], got[false][i])
		}
	}
	if !strings.HasSuffix(got[true][0], "hello") || got[true][1] != "" {
		t.Errorf("request got %q, silent client got %q; want hello, nothing", got[true][0], got[true][1])
	}
}

// waiterCount counts ReadWaiting calls.
type waiterCount struct{ n atomic.Int32 }

func (w *waiterCount) ReadWaiting() { w.n.Add(1) }

// TestReadWaiter: the waiter hears of the first read that has to wait for
// the client, once, and of no read that finds bytes at once.
func TestReadWaiter(t *testing.T) {
	t.Run("bytes already there", func(t *testing.T) {
		_, client, c := accepted(t, "127.0.0.1:0")
		var w waiterCount
		c.SetReadWaiter(&w)
		if _, err := client.Write([]byte("GET")); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			if n, err := unix.IoctlGetInt(c.sysfd, unix.SIOCINQ); err == nil && n == 3 {
				break // the bytes are there before the read
			}
			if time.Now().After(deadline) {
				t.Fatal("the client's bytes did not arrive")
			}
		}
		buf := make([]byte, 3)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "GET" {
			t.Fatalf("read %q, %v", buf, err)
		}
		if got := w.n.Load(); got != 0 {
			t.Errorf("ReadWaiting called %d times for a read that found its bytes", got)
		}
	})
	t.Run("a silent client", func(t *testing.T) {
		_, client, c := accepted(t, "127.0.0.1:0")
		var w waiterCount
		c.SetReadWaiter(&w)
		done := readOne(c)
		deadline := time.Now().Add(10 * time.Second)
		for w.n.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the waiter was not told of a read that waits")
			}
			time.Sleep(time.Millisecond)
		}
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := waitErr(t, done, "the read"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		c.Read(make([]byte, 1)) // waits again: no second call
		if got := w.n.Load(); got != 1 {
			t.Errorf("ReadWaiting called %d times, want once", got)
		}
	})
}
