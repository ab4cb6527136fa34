// Package tcplisten accepts TCP connections on a listening socket the
// worker inherited, with less per-connection work than Go's net package.
//
// A *net.TCPListener sets up every accepted connection with five
// setsockopt(2) calls (TCP keep-alive probes, their idle time, interval
// and count, and TCP_NODELAY) and a getsockname(2). A Listener accepts
// with accept4(2) straight into a non-blocking descriptor and sets
// nothing: TCP_NODELAY is set once on the listening socket, and Linux
// copies it to every connection accepted from it, as gunicorn relies on;
// keep-alive probes stay off, as in gunicorn (gorn closes idle connections
// itself after --keep-alive seconds). The connection's local address is
// looked up only if asked for. On a Connection: close workload that
// saves about 5 % of the worker's CPU time per request.
//
// A connection enters Go's network poller only when it first has to wait
// (see Conn); until then its reads and writes are plain non-blocking
// system calls. In the poller it is an *os.File, so reads, writes and
// deadlines wait without blocking a thread, as net.Conn's do, and reads
// and writes stay raw system calls (package rawio), which keep a one-core
// worker on one thread. Errors are *net.OpError values, as net.Conn's
// are, so net/http and crypto/tls see the same timeouts and closed
// connections.
package tcplisten

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/internal/rawio"
)

// Listener accepts TCP connections on a listening socket. It implements
// net.Listener and syscall.Conn.
type Listener struct {
	f      *os.File
	raw    syscall.RawConn
	addr   *net.TCPAddr
	closed atomic.Bool

	// acceptMu serialises Accept: the poller calls acceptFn (l.accept,
	// made once, as a closure per call would be an allocation per
	// connection), which leaves its result in the fields below.
	acceptMu sync.Mutex
	acceptFn func(fd uintptr) bool
	nfd      int
	errno    syscall.Errno
	rsa      unix.RawSockaddrAny // the peer's address
	rsaLen   uint32
}

// FromFD returns a Listener on a duplicate of fd, a listening TCP socket
// (IPv4 or IPv6); fd itself stays open and untouched. The duplicate is
// close-on-exec (children never inherit it) and non-blocking, which puts
// the socket itself, shared with every process holding it, in
// non-blocking mode; gorn's master and workers all use it so. TCP_NODELAY
// is set on the socket for the connections it accepts.
//
// FromFD reports an error wrapping ErrNotTCP for any other kind of socket
// (a Unix socket, say), which the caller serves with net.FileListener.
func FromFD(fd int) (*Listener, error) {
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("descriptor %d is not a socket: %w", fd, err)
	}
	addr := tcpAddr(sa)
	if addr == nil {
		return nil, fmt.Errorf("descriptor %d: %w", fd, ErrNotTCP)
	}
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		return nil, fmt.Errorf("descriptor %d: %w", fd, ErrNotTCP)
	}
	if proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err == nil && proto != unix.IPPROTO_TCP {
		// Multipath TCP: its connections are not plain TCP sockets.
		return nil, fmt.Errorf("descriptor %d (protocol %d): %w", fd, proto, ErrNotTCP)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return nil, fmt.Errorf("setting TCP_NODELAY on listener %s: %w", addr, err)
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicating listener %s: %w", addr, err)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("making listener %s non-blocking: %w", addr, err)
	}
	f := os.NewFile(uintptr(dup), "tcp:"+addr.String()) // non-blocking: in the poller
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("listener %s: %w", addr, err)
	}
	l := &Listener{f: f, raw: raw, addr: addr}
	l.acceptFn = l.accept
	return l, nil
}

// ErrNotTCP is wrapped by FromFD's error for a descriptor that is not a
// listening TCP socket.
var ErrNotTCP = errors.New("not a TCP socket")

// Accept waits for and returns the next connection. After Close it
// returns an error wrapping net.ErrClosed; errors that may pass (running
// out of descriptors, say) are temporary net.Error values, which
// http.Server retries.
func (l *Listener) Accept() (net.Conn, error) {
	l.acceptMu.Lock()
	defer l.acceptMu.Unlock()
	if rerr := l.raw.Read(l.acceptFn); rerr != nil {
		if l.closed.Load() { // the poller's "use of closed file"
			rerr = net.ErrClosed
		}
		return nil, l.opError(rerr)
	}
	if l.errno != 0 {
		return nil, l.opError(os.NewSyscallError("accept4", l.errno))
	}
	c := &Conn{sysfd: l.nfd, listen: l.addr}
	c.setRemote(&l.rsa)
	return c, nil
}

// accept is one attempt of Accept on the listening descriptor: false when
// no connection is waiting (wait in the poller, then try again). It calls
// accept4(2) itself, not syscall's or x/sys/unix's: those allocate the
// peer's address, and x/sys/unix's also asks the listening socket for its
// protocol (a getsockopt(2)) on every connection. A raw system call, as
// the socket is non-blocking.
func (l *Listener) accept(fd uintptr) bool {
	for {
		l.rsaLen = uint32(unsafe.Sizeof(l.rsa))
		r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&l.rsa)), uintptr(unsafe.Pointer(&l.rsaLen)),
			unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch e {
		case unix.EINTR, unix.ECONNABORTED: // a connection reset while queued
			continue
		case unix.EAGAIN:
			return false
		}
		l.nfd, l.errno = int(r), e
		return true
	}
}

func (l *Listener) opError(err error) error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: err}
}

// Close closes the Listener's descriptor: a blocked Accept returns. The
// socket stays open in every other process (and descriptor) holding it.
func (l *Listener) Close() error {
	l.closed.Store(true)
	return l.f.Close()
}

// Addr is the address the socket is bound to.
func (l *Listener) Addr() net.Addr { return l.addr }

// SyscallConn gives access to the listening socket's descriptor (for
// socket options such as TCP_INFO).
func (l *Listener) SyscallConn() (syscall.RawConn, error) { return l.raw, nil }

// Conn is an accepted TCP connection. It implements net.Conn,
// syscall.Conn and CloseWrite, as *net.TCPConn does.
//
// A connection enters Go's network poller only when it first has to wait:
// a read that finds no bytes, a write that finds the send buffer full, or
// a call of SyscallConn. Until then reads and writes are plain
// non-blocking system calls and deadlines are only remembered (and
// checked before each call, as the poller checks them). A client that
// sends its request with the connection, as most do, is then answered
// and closed without the poller's registration and removal (two
// epoll_ctl(2) calls and an fcntl(2)), its timers, or an *os.File: about
// a tenth of a worker's time per request under Connection: close.
//
// The caller must Close a Conn: one that never entered the poller has no
// finalizer to close its descriptor.
type Conn struct {
	// mu guards everything below it until the connection is in the
	// poller (p is set), and serialises the system calls made before.
	mu     sync.Mutex
	sysfd  int
	closed bool
	rdl    time.Time // deadlines set before the poller: checked by hand
	wdl    time.Time
	p      atomic.Pointer[polled] // set once, under mu; from then on, the only state

	remote   net.TCPAddr // its IP is remoteIP: the connection is one allocation
	remoteIP [16]byte
	listen   *net.TCPAddr // the listener's address: the local one unless it is a wildcard

	localOnce sync.Once
	local     *net.TCPAddr

	// waiter, if set, hears of the first read that finds no bytes and
	// waits for them (SetReadWaiter); guarded by mu.
	waiter ReadWaiter
}

// ReadWaiter is told when a connection's read has to wait for its client.
type ReadWaiter interface {
	// ReadWaiting is called, once, from the reading goroutine, when a read
	// of the connection first finds no bytes and starts to wait for them.
	ReadWaiting()
}

// SetReadWaiter has w told the first time a read of c finds no bytes to
// read before c entered the poller (a client that connected and sent
// nothing, or only part of its request). Set it before the first read.
func (c *Conn) SetReadWaiter(w ReadWaiter) {
	c.mu.Lock()
	c.waiter = w
	c.mu.Unlock()
}

// polled is a Conn in the poller: an *os.File, read and written without
// the scheduler's syscall hooks.
type polled struct {
	f  *os.File
	fd *rawio.FD
}

// waiting returns c's poller state, entering the poller first if c is
// not in it yet. c.mu must be held.
func (c *Conn) waiting() (*polled, error) {
	if p, err := c.unpolled(); p != nil || err != nil {
		return p, err
	}
	f := os.NewFile(uintptr(c.sysfd), "") // non-blocking: in the poller
	fd, err := rawio.New(f)
	if err != nil { // cannot happen: f is open
		return nil, err
	}
	if !c.rdl.IsZero() {
		f.SetReadDeadline(c.rdl)
	}
	if !c.wdl.IsZero() {
		f.SetWriteDeadline(c.wdl)
	}
	p := &polled{f: f, fd: fd}
	c.p.Store(p)
	return p, nil
}

// unpolled is the check every call makes first while c may not be in
// the poller (c.mu held): c's poller state if it has entered it, else
// net.ErrClosed if c is closed; neither means go on without the poller.
func (c *Conn) unpolled() (*polled, error) {
	if p := c.p.Load(); p != nil {
		return p, nil
	}
	if c.closed {
		return nil, net.ErrClosed
	}
	return nil, nil
}

// expired reports whether deadline d is set and has passed.
func expired(d time.Time) bool { return !d.IsZero() && !time.Now().Before(d) }

// Read reads from the connection; io.EOF when the peer has closed it.
func (c *Conn) Read(b []byte) (int, error) {
	p := c.p.Load()
	if p == nil {
		var n int
		var err error
		if p, n, err = c.readUnpolled(b); p == nil {
			return n, c.ioError("read", err)
		}
	}
	n, err := p.fd.Read(b)
	return n, c.ioError("read", err)
}

// readUnpolled reads with one read(2) while c is not in the poller. When
// that finds no bytes, or c entered the poller meanwhile, it returns c's
// poller state instead, to wait in (nothing read).
func (c *Conn) readUnpolled(b []byte) (p *polled, n int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, err = c.unpolled(); p != nil || err != nil {
		return p, 0, err
	}
	switch {
	case len(b) == 0:
		return nil, 0, nil
	case expired(c.rdl):
		return nil, 0, os.ErrDeadlineExceeded
	}
	n, errno := rawio.ReadOnce(c.sysfd, b)
	switch errno {
	case 0:
		if n == 0 {
			return nil, 0, io.EOF
		}
		return nil, n, nil
	case unix.EAGAIN:
		if w := c.waiter; w != nil {
			c.waiter = nil
			w.ReadWaiting()
		}
		p, err = c.waiting()
		return p, 0, err
	}
	return nil, 0, os.NewSyscallError("read", errno)
}

// Write writes all of b unless an error (or the write deadline) stops it.
func (c *Conn) Write(b []byte) (int, error) {
	p := c.p.Load()
	done := 0
	if p == nil {
		var err error
		if p, done, err = c.writeUnpolled(b); p == nil {
			return done, c.ioError("write", err)
		}
	}
	n, err := p.fd.Write(b[done:])
	return done + n, c.ioError("write", err)
}

// writeUnpolled writes b with write(2) while c is not in the poller, until
// all is written or the kernel refuses. When the send buffer is full, or
// c entered the poller meanwhile, it returns c's poller state with what
// was written: the rest waits there.
func (c *Conn) writeUnpolled(b []byte) (p *polled, n int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, err = c.unpolled(); p != nil || err != nil {
		return p, 0, err
	}
	if expired(c.wdl) {
		return nil, 0, os.ErrDeadlineExceeded
	}
	n, errno := rawio.WriteAll(c.sysfd, b)
	switch errno {
	case 0:
		return nil, n, nil
	case unix.EAGAIN:
		p, err = c.waiting()
		return p, n, err
	}
	return nil, n, os.NewSyscallError("write", errno)
}

// ioError is a read's or write's error as a net.Conn returns it: nil and
// io.EOF as they are, anything else an *net.OpError.
func (c *Conn) ioError(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return c.opError(op, err)
}

// Close closes the connection; blocked reads and writes return.
func (c *Conn) Close() error {
	c.mu.Lock()
	p := c.p.Load()
	var err error
	switch {
	case p != nil:
		c.mu.Unlock()
		err = p.f.Close()
	case c.closed:
		c.mu.Unlock()
		err = net.ErrClosed
	default:
		c.closed = true
		// A raw system call: closing a socket without SO_LINGER does not
		// block.
		if _, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(c.sysfd), 0, 0); e != 0 {
			err = os.NewSyscallError("close", e)
		}
		c.mu.Unlock()
	}
	if err != nil {
		return c.opError("close", err)
	}
	return nil
}

// CloseWrite shuts down the sending side (a FIN to the peer).
func (c *Conn) CloseWrite() error {
	var err error
	if cerr := c.control(func(fd int) { err = unix.Shutdown(fd, unix.SHUT_WR) }); cerr != nil {
		err = cerr
	} else if err != nil {
		err = os.NewSyscallError("shutdown", err)
	}
	if err != nil {
		return c.opError("close", err)
	}
	return nil
}

// LocalAddr is the connection's local address: the listener's, or for a
// listener on a wildcard address the one the connection arrived at
// (looked up once, on the first call).
func (c *Conn) LocalAddr() net.Addr {
	if !c.listen.IP.IsUnspecified() {
		return c.listen
	}
	c.localOnce.Do(func() {
		c.control(func(fd int) {
			if sa, err := syscall.Getsockname(fd); err == nil {
				c.local = tcpAddr(sa)
			}
		})
		if c.local == nil {
			c.local = c.listen
		}
	})
	return c.local
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return &c.remote }

// setRemote sets the peer's address from what accept4(2) wrote.
func (c *Conn) setRemote(rsa *unix.RawSockaddrAny) {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		n := copy(c.remoteIP[:], sa.Addr[:])
		c.remote.IP = c.remoteIP[:n]
		c.remote.Port = netPort(&sa.Port)
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		c.remote.IP = c.remoteIP[:copy(c.remoteIP[:], sa.Addr[:])]
		c.remote.Port = netPort(&sa.Port)
		if sa.Scope_id != 0 {
			c.remote.Zone = zoneName(sa.Scope_id)
		}
	} // else (cannot happen on a TCP socket): the zero address
}

// SetDeadline sets the read and write deadlines; the zero time clears them.
func (c *Conn) SetDeadline(t time.Time) error {
	return c.setDeadline(t, true, true)
}

// SetReadDeadline sets the read deadline; the zero time clears it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.setDeadline(t, true, false) }

// SetWriteDeadline sets the write deadline; the zero time clears it.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(t, false, true) }

func (c *Conn) setDeadline(t time.Time, read, write bool) error {
	p := c.p.Load()
	var err error
	if p == nil {
		p, err = c.rememberDeadline(t, read, write)
	}
	switch {
	case p == nil:
	case read && write:
		err = p.f.SetDeadline(t)
	case read:
		err = p.f.SetReadDeadline(t)
	default:
		err = p.f.SetWriteDeadline(t)
	}
	if err != nil {
		return c.opError("set", err)
	}
	return nil
}

// rememberDeadline keeps a deadline for reads and writes made before the
// poller; if c entered the poller meanwhile, it returns c's poller state
// instead, to set it there.
func (c *Conn) rememberDeadline(t time.Time, read, write bool) (*polled, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, err := c.unpolled(); p != nil || err != nil {
		return p, err
	}
	if read {
		c.rdl = t
	}
	if write {
		c.wdl = t
	}
	return nil, nil
}

// SyscallConn gives access to the connection's descriptor. It puts the
// connection in the poller, so that the RawConn's Read and Write can wait.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	c.mu.Lock()
	p, err := c.waiting()
	c.mu.Unlock()
	if err != nil {
		return nil, c.opError("raw-control", err)
	}
	return p.f.SyscallConn()
}

// control runs f on the descriptor, which stays open while it runs.
func (c *Conn) control(f func(fd int)) error {
	c.mu.Lock()
	p, err := c.unpolled()
	if p == nil {
		defer c.mu.Unlock()
		if err != nil {
			return err
		}
		f(c.sysfd)
		return nil
	}
	c.mu.Unlock()
	raw, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	return raw.Control(func(fd uintptr) { f(int(fd)) })
}

// opError turns an *os.File error into what a net.Conn returns: an
// *net.OpError around the cause (os.ErrDeadlineExceeded, a syscall error),
// with net.ErrClosed for a closed connection.
func (c *Conn) opError(op string, err error) error {
	if pe, ok := err.(*os.PathError); ok { // as *os.File returns them; errors.As would cost an allocation per call
		err = pe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.listen, Addr: &c.remote, Err: closedErr(err)}
}

// closedErr is err, or net.ErrClosed for the errors an *os.File and its
// poller return once closed.
func closedErr(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return net.ErrClosed
	}
	return rawio.PollError(err)
}

// tcpAddr converts an IPv4 or IPv6 socket address; nil for any other.
func tcpAddr(sa syscall.Sockaddr) *net.TCPAddr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IPv4(sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3]), Port: sa.Port}
	case *syscall.SockaddrInet6:
		a := &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
		if sa.ZoneId != 0 {
			a.Zone = zoneName(sa.ZoneId)
		}
		return a
	}
	return nil
}

// netPort reads a port stored in network byte order.
func netPort(p *uint16) int {
	b := (*[2]byte)(unsafe.Pointer(p))
	return int(b[0])<<8 | int(b[1])
}

// zoneName is an IPv6 scope's zone as net names it: the interface's name,
// else the number.
func zoneName(id uint32) string {
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		return ifi.Name
	}
	return fmt.Sprint(id)
}
