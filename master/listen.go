package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/worker"
)

// listener is one bound socket, open for the master's whole life.
type listener struct {
	// file is the socket, handed to every worker as an inherited fd; not
	// in the master's poller (see unpolledDup). nil for the metrics
	// listener.
	file *os.File
	// ln serves the socket in the master: the metrics listener only; nil
	// for the app's listeners, on which only workers accept.
	ln   net.Listener
	info worker.Listener
	url  string // for "Listening at:"
	spec string // the --bind (or --metrics-bind) value it was opened for
	// unlink is the path of a unix socket bound for a unix: address (not
	// one inherited with fd://), removed at close; "" once another master
	// shares the socket (USR2, upgrade.go).
	unlink string
}

// ParseBind splits a --bind value into a network and an address:
// unix:PATH, fd://N, [V6]:PORT, HOST:PORT, HOST (port 8000) or tcp://HOST:PORT.
func ParseBind(bind string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(bind, "unix:"):
		path := strings.TrimPrefix(strings.TrimPrefix(bind, "unix:"), "//")
		if path == "" {
			return "", "", fmt.Errorf("invalid bind %q: unix: needs a path", bind)
		}
		return "unix", path, nil
	case strings.HasPrefix(bind, "fd://"):
		n, err := strconv.Atoi(strings.TrimPrefix(bind, "fd://"))
		if err != nil || n < 0 {
			return "", "", fmt.Errorf("invalid bind %q: fd:// needs a descriptor number", bind)
		}
		return "fd", strconv.Itoa(n), nil
	}
	bind = strings.TrimPrefix(bind, "tcp://")
	host, port := bind, "8000"
	if strings.HasPrefix(bind, "[") {
		i := strings.Index(bind, "]")
		if i < 0 {
			return "", "", fmt.Errorf("invalid bind %q: unterminated [", bind)
		}
		host = bind[1:i]
		rest := bind[i+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", "", fmt.Errorf("invalid bind %q", bind)
			}
			port = rest[1:]
		}
		if net.ParseIP(host) == nil || !strings.Contains(host, ":") {
			return "", "", fmt.Errorf("invalid bind %q: %q is not an IPv6 address", bind, host)
		}
	} else if i := strings.LastIndexByte(bind, ':'); i >= 0 {
		host, port = bind[:i], bind[i+1:]
		if strings.Contains(host, ":") {
			return "", "", fmt.Errorf("invalid bind %q: put an IPv6 address in brackets", bind)
		}
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return "", "", fmt.Errorf("invalid bind %q: bad port %q", bind, port)
	}
	if strings.ContainsAny(host, "[]") {
		return "", "", fmt.Errorf("invalid bind %q: bad host %q", bind, host)
	}
	network = "tcp"
	if ip := net.ParseIP(host); ip != nil {
		switch {
		case ip.To4() != nil:
			network = "tcp4"
		case !ip.IsUnspecified():
			network = "tcp6"
		}
		// [::] stays "tcp": a dual-stack socket (IPV6_V6ONLY off), which
		// IPv4 clients reach too, as gunicorn's; Go's tcp6 would be IPv6
		// only.
	}
	return network, net.JoinHostPort(host, port), nil
}

// ListenFDs are the listening sockets systemd passed to process pid
// (socket activation: LISTEN_PID and LISTEN_FDS, read with getenv), as
// --bind values: fd://3, fd://4, … in systemd's order. nil when systemd
// passed none to pid (LISTEN_PID names another process, as it does once
// inherited by a child). A LISTEN_FDS that is not a count is an error.
func ListenFDs(getenv func(string) string, pid int) ([]string, error) {
	if getenv("LISTEN_PID") != strconv.Itoa(pid) {
		return nil, nil
	}
	n, err := strconv.Atoi(getenv("LISTEN_FDS"))
	if err != nil || n < 0 || n > 1<<16 {
		return nil, fmt.Errorf("LISTEN_FDS=%q from systemd is not a number of sockets", getenv("LISTEN_FDS"))
	}
	var binds []string
	for fd := 3; fd < 3+n; fd++ {
		binds = append(binds, "fd://"+strconv.Itoa(fd))
	}
	return binds, nil
}

// listenOpts are how gorn listens on the sockets it binds.
type listenOpts struct {
	backlog   int  // the listen(2) backlog (--backlog)
	reusePort bool // SO_REUSEPORT on TCP sockets (--reuse-port)
}

// bind opens one --bind address, for the workers to accept on; the socket
// comes from ho when the master that started this one handed it over
// (USR2), else it is bound here.
func bind(spec string, opts listenOpts, ho *handover) (*listener, error) {
	l, err := bindServed(spec, opts, ho)
	if err != nil {
		return nil, err
	}
	if l.file, err = unpolledDup(l.ln, spec); err != nil {
		l.ln.Close()
		return nil, fmt.Errorf("duplicating the listener %s: %w", spec, err)
	}
	// The master never accepts here. Keeping net's listener open would keep
	// the socket in the master's epoll set, edge-triggered, and wake the
	// master for every connection the workers accept (one context switch
	// of the master and a preempted worker per connection, measured).
	l.ln.Close()
	l.ln = nil
	return l, nil
}

// deferAccept is the TCP_DEFER_ACCEPT of every TCP socket gorn binds, in
// seconds: the kernel hands a connection to accept(2) once its first data
// has arrived, so a worker never accepts a connection whose request is
// still on its way (and then waits for it in the poller, holding up its
// accept loop; measured: a fifth more Connection: close requests per
// second, see docs/performance.md, entry 30). A client that connects and
// sends nothing is accepted after about this long instead of at once, as
// uWSGI (4) and nginx's "deferred" do. Sockets inherited with fd:// keep
// what their creator set (systemd's DeferAccept=).
const deferAccept = 1

// bindServed opens one address and keeps net's listener, for the master
// to serve on (the metrics listener); its file is nil. The socket is ho's
// when ho has one for spec.
func bindServed(spec string, opts listenOpts, ho *handover) (*listener, error) {
	network, addr, err := ParseBind(spec)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	switch fd := ho.take(spec); {
	case fd >= 0:
		f := os.NewFile(uintptr(fd), spec)
		ln, err = net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("the socket of %s handed over by the previous master (descriptor %d): %w", spec, fd, err)
		}
	case network == "fd":
		n, _ := strconv.Atoi(addr)
		f := os.NewFile(uintptr(n), "fd://"+addr)
		if f == nil {
			return nil, fmt.Errorf("fd://%s is not an open descriptor", addr)
		}
		ln, err = net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fd://%s is not a listening socket: %w", addr, err)
		}
	case network == "unix":
		if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(addr) // a stale socket from an earlier run
		}
		ln, err = net.Listen("unix", addr)
	default:
		// Plain TCP, as gunicorn: Go would otherwise listen with Multipath
		// TCP where the kernel has it, which every accept pays for, and
		// the workers accept TCP sockets their own way (package tcplisten).
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		if opts.reusePort {
			lc.Control = func(_, _ string, c syscall.RawConn) error {
				var err error
				if cerr := c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); cerr != nil {
					return cerr
				}
				return err
			}
		}
		ln, err = lc.Listen(context.Background(), network, addr)
	}
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("Connection in use: %s", addr)
		}
		return nil, fmt.Errorf("Can't connect to %s: %w", addr, listenCause(err))
	}
	sc, ok := ln.(syscall.Conn)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("%s: not a socket listener", spec)
	}
	raw, err := sc.SyscallConn()
	if err == nil && network != "fd" {
		// Go listens with the kernel's somaxconn; listen(2) again with
		// the configured backlog (Linux applies it to a listening socket).
		raw.Control(func(fd uintptr) { err = unix.Listen(int(fd), opts.backlog) })
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("setting the backlog of %s: %w", spec, err)
	}
	if strings.HasPrefix(network, "tcp") {
		raw.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAccept)
		})
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("setting TCP_DEFER_ACCEPT on %s: %w", spec, err)
		}
	}
	l := &listener{ln: ln, spec: spec}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // close removes l.unlink
	}
	switch a := ln.Addr().(type) {
	case *net.UnixAddr:
		l.info = worker.Listener{Network: "unix", Addr: a.Name}
		l.url = "unix:" + a.Name
		if network == "unix" {
			l.unlink = a.Name
		}
	default:
		l.info = worker.Listener{Network: "tcp", Addr: a.String()}
		l.url = "http://" + a.String()
	}
	return l, nil
}

// listenCause is why a listen failed, without Go's "listen tcp ADDR:"
// prefix: the errno when there is one, else the inner error (such as a
// failed host name lookup).
func listenCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) && se.Err != nil {
		err = se.Err
	}
	return err
}

// unpolledDup duplicates ln's socket into an *os.File named name, not in
// Go's poller, to hand to workers.
//
// Not ln.File(): the *os.File that returns puts the socket in blocking mode
// whenever its Fd method runs, and os.StartProcess runs it at every spawn.
// The mode belongs to the socket, shared by every worker, and a worker whose
// accept(2) blocks in the kernel cannot close its listener to drain. Nor
// os.NewFile as such: it registers a non-blocking descriptor in the poller,
// where a listening socket wakes the process for every connection that
// arrives. So O_NONBLOCK is cleared around that call and set again; this
// runs only while no worker does (the master binds before it starts any).
func unpolledDup(ln net.Listener, name string) (*os.File, error) {
	fd, err := dupSocket(ln.(syscall.Conn)) // bindServed checked it is one
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	if err := unix.SetNonblock(fd, true); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// dupSocket duplicates sc's descriptor, close-on-exec, above the standard
// ones.
func dupSocket(sc syscall.Conn) (int, error) {
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if cerr := raw.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 3) }); cerr != nil {
		err = cerr
	}
	return fd, err
}

func (l *listener) close() {
	if l.file != nil {
		l.file.Close()
	}
	if l.ln != nil {
		l.ln.Close()
	}
	if l.unlink != "" {
		os.Remove(l.unlink)
	}
}
