// Package http1 serves HTTP/1.0 and HTTP/1.1 on plain connections to a
// net/http Handler: a lean stand-in for net/http's server where the
// request heads have already been validated (by package httpguard).
//
// It exists for speed. net/http's server parses a head the guard has
// already parsed, starts a background read and sets four read deadlines
// per request, and formats the response through two layers of buffers;
// together those were a fifth of a worker's time on small requests (see
// docs/performance.md, entry 24). This server parses the validated head
// once with net/textproto, sets one read deadline per keep-alive request
// (a second to clear it before a body is read), and
// watches for a client that goes away only once a request has run for
// [WatchAfter]. It keeps net/http's behaviour where gorn's handler relies
// on it: the framing a response gets (Content-Length for a small body
// written whole, else chunked on HTTP/1.1, else close-delimited),
// HTTP/1.0 keep-alive, Expect: 100-continue, HEAD, the Date header,
// Content-Type sniffing, ConnState and ConnContext, and a request context
// cancelled when the client hangs up. It also keeps what net/http's
// header map forgets: the order the request's fields came in (the
// ResponseWriter's FieldOrder method).
//
// What it does not do: HTTP/2, TLS, Hijack, trailers in responses, and
// any check of the request head beyond what it needs to parse it. Put it
// behind httpguard, which refuses what must be refused.
package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"sync"
	"time"
)

// WatchAfter is how long a request runs before the server starts reading
// its connection in the background to notice a client that hung up (and
// cancel the request's context). net/http does that for every request;
// most finish well within this, and never pay for it.
const WatchAfter = 5 * time.Millisecond

// Server serves HTTP/1.x connections. Its fields must not change once
// Serve is called.
type Server struct {
	// Handler answers every request. Unlike net/http's, the server reuses
	// a request's *http.Request, its URL and its Header for the
	// connection's next request: the handler must not keep them, or
	// anything that refers to them, once ServeHTTP returns.
	Handler http.Handler
	// ReadHeaderTimeout bounds the time to read a request head, from its
	// first byte (from the accept for a connection's first request); 0
	// means no bound.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection; 0 means ReadHeaderTimeout bounds it instead.
	IdleTimeout time.Duration
	// DisableKeepAlives closes every connection after one response.
	DisableKeepAlives bool
	// ConnContext, if set, derives a connection's base context (of which
	// every request context is a child) from the server's.
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// ConnState, if set, is told of each connection's state changes, as
	// net/http's: New (in the accept loop, before the next accept),
	// Active, Idle and Closed.
	ConnState func(net.Conn, http.ConnState)
	// Log gets panics of the handler and temporary accept errors (out of
	// descriptors) at error level; nil discards them.
	Log *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = http.ErrServerClosed

// Serve accepts connections on l and serves each in its own goroutine,
// until l fails (its error is returned) or Close is called. Connections
// already accepted are served on after Serve returns, until Close.
func (s *Server) Serve(l net.Listener) error {
	if !s.track(l) {
		return ErrServerClosed
	}
	defer s.untrack(l)
	var delay time.Duration // backoff on temporary accept errors, as net/http's
	for {
		rwc, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			// As net/http: a temporary error (EMFILE, ECONNABORTED, ...)
			// is waited out, anything else ends Serve.
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				if s.Log != nil { // as net/http logs it: out of descriptors says so
					s.Log.Error(fmt.Sprintf("Accept error: %v; retrying in %v", err, delay))
				}
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(rwc)
		if c == nil {
			rwc.Close()
			return ErrServerClosed
		}
		s.setState(rwc, http.StateNew)
		go c.serve()
	}
}

// Close closes the listeners Serve is using and every connection, at
// once, whatever it is doing; as net/http's Server.Close.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	var err error
	for l := range s.listeners {
		if e := l.Close(); e != nil && err == nil {
			err = e
		}
	}
	clear(s.listeners)
	for c := range s.conns {
		c.rwc.Close()
	}
	s.mu.Unlock()
	return err
}

func (s *Server) track(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) untrack(l net.Listener) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// newConn registers a connection; nil once the server is closed.
func (s *Server) newConn(rwc net.Conn) *conn {
	c := connPool.Get().(*conn)
	c.srv, c.rwc = s, rwc
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.srv, c.rwc = nil, nil
		connPool.Put(c)
		return nil
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) setState(c net.Conn, st http.ConnState) {
	if s.ConnState != nil {
		s.ConnState(c, st)
	}
}

// conn is one client connection. Its goroutine (serve) owns everything
// but the watch fields, which the watcher shares under mu.
type conn struct {
	srv    *Server
	rwc    net.Conn
	cr     connReader
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string
	res    response
	reqs   reqBuf // where each request is built

	// The watcher: after WatchAfter, a goroutine reads the connection
	// to notice a client that hangs up (as net/http's background read).
	mu        sync.Mutex
	timer     *time.Timer
	active    bool          // a request runs
	inRequest bool          // ... and its body is read to the end: it may be watched
	watching  bool          // the watcher is reading
	watchDone chan struct{} // closed when the watcher's read returns
	stale     bool          // a read deadline set for the head may still be pending
	hungUp    bool          // the watcher's read failed: the client is gone

	// cancel ends the connection's context, of which every request's
	// context is: a read of the connection failed, the client is gone.
	// Set before the first request; safe to call from any goroutine.
	cancel context.CancelFunc
}

// connPool holds the conns of closed connections for new ones, with
// their read and write buffers, request, response, header maps and watch
// timer: under one connection per request their allocations were most of
// what a request cost the garbage collector (net/http pools only the
// buffers).
var connPool = sync.Pool{New: func() any {
	c := &conn{br: bufio.NewReaderSize(nil, 4<<10), bw: bufio.NewWriterSize(nil, 4<<10)}
	c.cr.c = c
	c.timer = time.AfterFunc(time.Hour, c.startWatch)
	c.timer.Stop()
	return c
}}

// release readies c for another connection and pools it, once nothing
// can use it: its goroutine is done, the server has forgotten it, and
// stopWatch has waited for a watcher that was reading. A timer that fired
// too late to start a watch finds no request and does nothing, or, if c
// already serves the next connection, watches that one's request, as its
// own timer would a little later.
func (c *conn) release() {
	c.br.Reset(nil)
	c.bw.Reset(nil)
	c.srv, c.rwc, c.remote, c.cancel = nil, nil, "", nil
	c.cr.hasByte = false
	// The last request's strings and context go; the maps and buffers stay.
	c.reqs.r, c.reqs.u = http.Request{}, url.URL{}
	clear(c.reqs.hdr)
	clear(c.reqs.strs)
	clear(c.res.hdr)
	clear(c.res.order)
	c.res.req, c.res.body, c.res.err = nil, nil, nil
	c.mu.Lock()
	c.active, c.inRequest, c.watching, c.watchDone, c.stale, c.hungUp = false, false, false, nil, false, false
	c.mu.Unlock()
	connPool.Put(c)
}

// aLongTimeAgo is a deadline in the past, which stops a pending read.
var aLongTimeAgo = time.Unix(1, 0)

// serve runs the connection's requests one after the other.
func (c *conn) serve() {
	s := c.srv
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			const size = 64 << 10
			buf := make([]byte, size)
			buf = buf[:runtime.Stack(buf, false)]
			if s.Log != nil {
				s.Log.Error(fmt.Sprintf("http: panic serving %s: %v\n%s", c.remote, err, buf))
			}
		}
		c.stopWatch()
		c.rwc.Close()
		s.forget(c)
		s.setState(c.rwc, http.StateClosed)
		c.release()
	}()
	ctx := context.Background()
	if s.ConnContext != nil {
		ctx = s.ConnContext(ctx, c.rwc)
	}
	// One context for all the connection's requests: it ends only when
	// the client is gone, and then the connection closes after the
	// request. (net/http makes one per request, two allocations more.)
	ctx, c.cancel = context.WithCancel(ctx)
	defer c.cancel()
	tmpl := new(http.Request).WithContext(ctx)
	c.remote = addrString(c.rwc.RemoteAddr())
	c.br.Reset(&c.cr)
	c.bw.Reset(c.rwc)
	if d := s.ReadHeaderTimeout; d > 0 {
		c.rwc.SetReadDeadline(time.Now().Add(d))
	}
	for first := true; ; first = false {
		if !first {
			// Wait for the next request's first byte: up to the idle
			// timeout, then up to the header timeout for the rest of
			// its head (unless the whole head is already here).
			idle := s.IdleTimeout
			if idle == 0 {
				idle = s.ReadHeaderTimeout
			}
			if idle > 0 {
				c.rwc.SetReadDeadline(time.Now().Add(idle))
			}
			if _, err := c.br.Peek(1); err != nil {
				return
			}
			if !headBuffered(c.br) { // the rest of the head may take time
				if d := s.ReadHeaderTimeout; d > 0 {
					c.rwc.SetReadDeadline(time.Now().Add(d))
				} else if idle > 0 {
					c.rwc.SetReadDeadline(time.Time{})
				}
			}
		}
		req, err := readRequest(c.br, c.remote, tmpl, &c.reqs)
		if err != nil {
			if !errors.Is(err, errNoRequest) && !isReadError(err) {
				c.badRequest()
			}
			return
		}
		// The head's deadline must not cut a body short, nor the watch;
		// without a body only the watch reads, and clears it first.
		stale := s.ReadHeaderTimeout > 0 || s.IdleTimeout > 0
		if stale && req.ContentLength != 0 {
			c.rwc.SetReadDeadline(time.Time{})
			stale = false
		}
		s.setState(c.rwc, http.StateActive)
		if !c.serveRequest(req, stale) {
			return
		}
		s.setState(c.rwc, http.StateIdle)
	}
}

// serveRequest runs one request; false if the connection must close.
// stale says a read deadline may be pending.
func (c *conn) serveRequest(req *http.Request, stale bool) bool {
	w := &c.res
	w.reset(c, req)
	c.mu.Lock()
	c.active, c.inRequest, c.stale = true, w.body == nil, stale
	c.mu.Unlock()
	c.timer.Reset(WatchAfter)
	c.srv.Handler.ServeHTTP(w, req)
	hungUp := c.stopWatch()
	if err := w.finish(); err != nil {
		return false
	}
	return w.reusable() && !hungUp
}

// bodyDone lets the watcher start: the request's body has been read to
// its end (the watcher must not read body bytes).
func (c *conn) bodyDone() {
	c.mu.Lock()
	active := c.active
	if active {
		c.inRequest = true
	}
	c.mu.Unlock()
	if active {
		// The timer may have fired while the body was still coming (and
		// found nothing to watch): the watch starts WatchAfter from now.
		c.timer.Reset(WatchAfter)
	}
}

// startWatch runs on the timer's goroutine once a request has run for
// WatchAfter: it reads the connection until the request ends (stopWatch
// aborts the read), the client hangs up, or the client sends more.
func (c *conn) startWatch() {
	c.mu.Lock()
	if !c.inRequest || c.watching || c.cr.hasByte {
		c.mu.Unlock()
		return
	}
	if c.stale {
		c.rwc.SetReadDeadline(time.Time{})
		c.stale = false
	}
	c.watching = true
	c.watchDone = make(chan struct{})
	done := c.watchDone
	c.mu.Unlock()
	var b [1]byte
	n, err := c.rwc.Read(b[:])
	c.mu.Lock()
	if n == 1 {
		c.cr.hasByte, c.cr.byte = true, b[0]
	}
	if err != nil && !(isTimeout(err) && !c.inRequest) { // not stopWatch's abort
		c.hungUp = true
		c.cancel()
	}
	c.watching = false
	c.mu.Unlock()
	close(done)
}

// stopWatch ends the request's watch: a pending watcher read is stopped
// and waited for. It reports whether the watch found the client gone.
func (c *conn) stopWatch() (hungUp bool) {
	if c.timer == nil {
		return false
	}
	c.timer.Stop()
	c.mu.Lock()
	c.active, c.inRequest = false, false
	watching, done, hungUp := c.watching, c.watchDone, c.hungUp
	c.mu.Unlock()
	if watching {
		c.rwc.SetReadDeadline(aLongTimeAgo)
		<-done
		c.rwc.SetReadDeadline(time.Time{})
		c.mu.Lock()
		hungUp = c.hungUp
		c.mu.Unlock()
	}
	return hungUp
}

// badRequest answers a head the server cannot parse, as net/http does.
func (c *conn) badRequest() {
	const page = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"
	c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	c.bw.WriteString(page)
	c.bw.Flush()
}

// connReader reads the connection for the request parser, first handing
// on a byte the watcher read.
type connReader struct {
	c       *conn
	hasByte bool // guarded by c.mu while a watcher may run; else owned by serve
	byte    byte
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.hasByte {
		r.hasByte = false
		p[0] = r.byte
		return 1, nil
	}
	n, err := r.c.rwc.Read(p)
	if err != nil && r.c.cancel != nil {
		r.c.cancel() // as net/http: a failed read means the client is gone
	}
	return n, err
}

// addrString is a.String(), made in one allocation for a TCP address
// (net.TCPAddr's String makes three).
func addrString(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok && ta.Port >= 0 && ta.Port <= 0xffff {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return netip.AddrPortFrom(ip.Unmap().WithZone(ta.Zone), uint16(ta.Port)).String()
		}
	}
	return a.String()
}

// headBuffered reports whether br holds a whole request head already.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}
