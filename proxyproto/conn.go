package proxyproto

import (
	"bufio"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorn-project/gorn/forwarded"
)

// DefaultTimeout bounds the wait for a PROXY header when Options.Timeout
// is zero.
const DefaultTimeout = 5 * time.Second

// Options configure Wrap and NewListener.
type Options struct {
	// Mode is which header versions are looked for; Off wraps nothing.
	Mode Mode
	// Allow are the peers (proxies) whose header is honoured: gunicorn's
	// --proxy-allow-from. Connections from other peers are not wrapped: a
	// header they send is left for the HTTP server to refuse as a
	// malformed request. Nil allows no IP peer; unix socket peers are
	// always allowed.
	Allow *forwarded.AllowList
	// Timeout bounds the wait for the header; DefaultTimeout if zero.
	Timeout time.Duration
	// Log, if set, gets a debug record for each connection closed over a
	// malformed header.
	Log *slog.Logger
}

// Wrap returns c ready to read a PROXY header, or c itself when o is nil
// or Off, or c's peer is not allowed to send one. It does no I/O.
func Wrap(c net.Conn, o *Options) net.Conn {
	if o == nil || o.Mode == Off || !o.Allow.Allows(c.RemoteAddr()) {
		return c
	}
	return &Conn{Conn: c, opts: o}
}

// NewListener returns l with Wrap applied to every connection it accepts,
// or l itself when o is nil or Off.
func NewListener(l net.Listener, o *Options) net.Listener {
	if o == nil || o.Mode == Off {
		return l
	}
	return &listener{Listener: l, opts: o}
}

type listener struct {
	net.Listener
	opts *Options
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c, l.opts), nil
}

// Conn is a connection from an allowed peer that may begin with a PROXY
// header. The header is read on the first Read or RemoteAddr; after it,
// RemoteAddr is the client the header names (the real peer for LOCAL,
// UNKNOWN and the like), and Read returns what followed the header. A
// malformed header closes the connection: Read fails from then on.
type Conn struct {
	net.Conn
	opts *Options

	ready atomic.Bool // the header has been read (or found absent)
	mu    sync.Mutex  // serializes reading the header
	hdr   *Header
	err   error
	rest  *bufio.Reader // bytes read past the header; nil once drained

	dl       sync.Mutex
	readDL   time.Time // the read deadline the layers above asked for
	headerDL time.Time // the deadline for the header, while reading it
}

// NetConn returns the wrapped connection, as tls.Conn's NetConn does.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Header returns the connection's PROXY header, reading it if need be; nil
// if the connection has none or it was malformed.
func (c *Conn) Header() *Header {
	c.readHeader()
	return c.hdr
}

// PeerAddr is the address of the real peer, the proxy.
func (c *Conn) PeerAddr() net.Addr { return c.Conn.RemoteAddr() }

// RemoteAddr is the client's address as the PROXY header gives it, else
// the real peer's.
func (c *Conn) RemoteAddr() net.Addr {
	c.readHeader()
	if c.hdr.HasAddrs() {
		return net.TCPAddrFromAddrPort(c.hdr.Source)
	}
	return c.Conn.RemoteAddr()
}

// Read reads what follows the header.
func (c *Conn) Read(p []byte) (int, error) {
	if !c.ready.Load() {
		c.readHeader()
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.rest != nil {
		n, _ := c.rest.Read(p) // buffered bytes only: no I/O
		if c.rest.Buffered() == 0 {
			c.rest = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// readHeader reads the header once, under its own deadline.
func (c *Conn) readHeader() {
	if c.ready.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready.Load() {
		return
	}
	defer c.ready.Store(true)
	timeout := c.opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c.dl.Lock()
	c.headerDL = time.Now().Add(timeout)
	c.Conn.SetReadDeadline(c.deadline())
	c.dl.Unlock()

	br := bufio.NewReaderSize(c.Conn, 256)
	h, err := Read(br, c.opts.Mode)

	c.dl.Lock()
	c.headerDL = time.Time{}
	c.Conn.SetReadDeadline(c.deadline())
	c.dl.Unlock()

	if err != nil {
		if c.opts.Log != nil && errors.Is(err, ErrInvalid) {
			c.opts.Log.Debug("Closing a connection with an invalid PROXY protocol header", "peer", c.Conn.RemoteAddr().String(), "err", err)
		} else if c.opts.Log != nil {
			c.opts.Log.Debug("Closing a connection that sent no complete PROXY protocol header", "peer", c.Conn.RemoteAddr().String(), "err", err)
		}
		c.err = &HeaderError{Err: err}
		c.Conn.Close()
		return
	}
	c.hdr = h
	if br.Buffered() > 0 {
		c.rest = br
	}
}

// deadline is the read deadline in force: the earlier of the header's and
// the one asked for. c.dl must be held.
func (c *Conn) deadline() time.Time {
	if c.headerDL.IsZero() || (!c.readDL.IsZero() && c.readDL.Before(c.headerDL)) {
		return c.readDL
	}
	return c.headerDL
}

// SetReadDeadline sets the read deadline; while the header is being read,
// its own (earlier) deadline also applies.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dl.Lock()
	defer c.dl.Unlock()
	c.readDL = t
	return c.Conn.SetReadDeadline(c.deadline())
}

// SetDeadline sets the read and write deadlines, as SetReadDeadline and
// net.Conn's SetWriteDeadline.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// HeaderError is what Read returns on a connection whose PROXY header was
// malformed, truncated or late.
type HeaderError struct {
	Err error
}

func (e *HeaderError) Error() string { return "proxyproto: " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *HeaderError) Unwrap() error { return e.Err }

// PeerAddr returns the address of the real peer of c: through wrappers
// that expose the connection they wrap with NetConn (as *tls.Conn does),
// a *Conn's PeerAddr, else c's RemoteAddr.
func PeerAddr(c net.Conn) net.Addr {
	if pc, inner := find(c); pc != nil {
		return pc.PeerAddr()
	} else if inner != nil {
		return inner.RemoteAddr()
	}
	return nil
}

// HeaderOf returns the PROXY header of c, found as PeerAddr finds the
// real peer; nil if c is not a *Conn, nor wraps one, or it has none.
func HeaderOf(c net.Conn) *Header {
	if pc, _ := find(c); pc != nil {
		return pc.Header()
	}
	return nil
}

// find returns the *Conn that c is or wraps (through NetConn, at most 8
// deep), else nil and the innermost connection reached.
func find(c net.Conn) (*Conn, net.Conn) {
	for i := 0; i < 8 && c != nil; i++ {
		if pc, ok := c.(*Conn); ok {
			return pc, nil
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	return nil, c
}
