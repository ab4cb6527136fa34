// Package httpguard is gorn's HTTP/1 request guard: a net.Conn wrapper that
// validates every request on a connection, head and chunked framing, before
// net/http reads a byte of it. It applies gunicorn's limits and its request
// parsing rules, and closes the request-smuggling gaps that net/http leaves
// open (obs-fold, bare LF, Transfer-Encoding with Content-Length, chunked on
// HTTP/1.0, whitespace before the colon, ...): see docs/security.md.
//
// A request whose head is invalid never reaches net/http: the guard replaces
// its bytes with a synthetic request that carries the rejection in a header
// whose name holds a per-process random token (see [Rejected]), so the
// handler answers it in pipelining order with the right status, and then the
// guard passes nothing more. A chunked body that turns out malformed, or a
// body over the limit, makes Read return a [*BodyError].
package httpguard

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// HeaderMap says what becomes of request header names that contain "_",
// which the CGI environ cannot tell apart from "-" (X_Forwarded_For and
// X-Forwarded-For are both HTTP_X_FORWARDED_FOR): gunicorn's --header-map.
type HeaderMap string

const (
	// HeaderMapDrop leaves such headers out of the environ (the default).
	HeaderMapDrop HeaderMap = "drop"
	// HeaderMapRefuse answers a request carrying one with 400; the guard
	// does it.
	HeaderMapRefuse HeaderMap = "refuse"
	// HeaderMapDangerous maps them like any other header, merged with the
	// "-" spelling: the app can be fooled by a spoofed header.
	HeaderMapDangerous HeaderMap = "dangerous"
)

// ParseHeaderMap checks a --header-map value; "" is the default, drop.
func ParseHeaderMap(s string) (HeaderMap, error) {
	switch m := HeaderMap(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return HeaderMapDrop, nil
	case HeaderMapDrop, HeaderMapRefuse, HeaderMapDangerous:
		return m, nil
	}
	return "", fmt.Errorf("--header-map must be drop, refuse or dangerous, not %q", s)
}

// Default limits, as gunicorn's.
const (
	DefaultRequestLine = 4094
	DefaultFields      = 100
	DefaultFieldSize   = 8190
)

// Hard bounds, as gunicorn's: a request line limit of 8190 at most, 32768
// header fields at most; and, as net/http's default MaxHeaderBytes, a whole
// head of 1 MiB at most whatever the limits say.
const (
	maxRequestLine = 8190
	maxFields      = 32768
	maxHead        = 1 << 20
	maxChunkLine   = 4096 // as net/http's chunked reader
)

// Config is what the guard enforces. The zero value means gunicorn's
// defaults for the limits, mode drop and no obs-fold.
type Config struct {
	// RequestLine is the longest request line, in bytes without its CRLF
	// (--limit-request-line, default 4094). 0 means unlimited (bounded by
	// the 1 MiB head); values over 8190 mean 8190. Longer lines get 400.
	RequestLine int
	// Fields is the largest number of header fields (and, separately, of
	// trailer fields) in a request (--limit-request-fields, default 100;
	// 0 or over 32768 means 32768). More get 431.
	Fields int
	// FieldSize is the largest header field line, in bytes with its CRLF
	// and any continuation lines (--limit-request-field_size, default
	// 8190; 0 means unlimited, bounded by the 1 MiB head). Larger get 431.
	FieldSize int
	// Body is the largest request body in bytes (--limit-request-body);
	// 0, the default, is unlimited. A larger Content-Length gets 413; a
	// chunked body that grows past it makes Read return a 413 BodyError.
	Body int64
	// HeaderMap is the --header-map mode; the guard only acts on refuse.
	HeaderMap HeaderMap
	// Forwarder, if set, names the header names containing "_" that
	// refuse lets through (--forwarder-headers): whether they may reach
	// the app depends on the peer, which the handler knows and the guard
	// does not. Trailers get no such exemption.
	Forwarder func(name string) bool
	// PermitObsFold accepts obsolete line folding in header values
	// (--permit-obsolete-folding); by default it gets 400.
	PermitObsFold bool
}

// Defaults returns the configuration with gunicorn's default limits.
func Defaults() Config {
	return Config{RequestLine: DefaultRequestLine, Fields: DefaultFields, FieldSize: DefaultFieldSize, HeaderMap: HeaderMapDrop}
}

// limits is a Config resolved to effective bounds.
type limits struct {
	line, fields, fieldSize, head int
	body                          int64
	refuseUnderscore, obsFold     bool
	forwarder                     func(name string) bool
}

func (c *Config) limits() limits {
	l := limits{line: c.RequestLine, fields: c.Fields, fieldSize: c.FieldSize, body: c.Body,
		refuseUnderscore: c.HeaderMap == HeaderMapRefuse, obsFold: c.PermitObsFold, forwarder: c.Forwarder}
	if l.line <= 0 {
		l.line = maxHead
	} else if l.line > maxRequestLine {
		l.line = maxRequestLine
	}
	if l.fields <= 0 || l.fields > maxFields {
		l.fields = maxFields
	}
	if l.fieldSize <= 0 {
		l.fieldSize = maxHead
	}
	l.head = maxHead
	if h := l.line + 2 + l.fields*(l.fieldSize+2) + 2; h > 0 && h < l.head {
		l.head = h
	}
	if l.body < 0 {
		l.body = 0
	}
	return l
}

// rejectPrefix starts the name of the header that carries a rejection;
// rejectName is this process's full name, unguessable by clients, in
// net/http's canonical form.
const rejectPrefix = "X-Gorn-Reject-"

var rejectName = func() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	// Digits only after the prefix would keep the canonical form trivially
	// equal to the sent one; hex with a leading letter is canonicalized to
	// "Xabc..." by net/http, so build the name from its canonical form.
	return http.CanonicalHeaderKey(rejectPrefix + "r" + hex.EncodeToString(b[:]))
}()

// rejectLineName is the header of a synthetic rejection that carries the
// refused request's line (Reject.Line), Go-quoted.
var rejectLineName = rejectName + "-Line"

// RejectedLine is the request line a synthetic rejection's headers carry:
// the refused request's, as the client sent it (at most maxLogLine bytes;
// "" when the guard refused before a line ended); ok is false for the
// headers of any other request.
func RejectedLine(h http.Header) (line string, ok bool) {
	vs := h[rejectLineName]
	if len(vs) == 0 {
		return "", false
	}
	line, err := strconv.Unquote(vs[0])
	return line, err == nil
}

// Rejected reports whether a request's headers mark it as a synthetic
// rejection, and if so the status to answer with and gunicorn's message.
func Rejected(h http.Header) (status int, msg string, ok bool) {
	vs := h[rejectName]
	if len(vs) == 0 {
		return 0, "", false
	}
	code, msg, _ := strings.Cut(vs[0], " ")
	status, err := strconv.Atoi(code)
	if err != nil || status < 400 || status > 599 {
		status = http.StatusBadRequest
	}
	return status, msg, true
}

// syntheticRequest is the request net/http reads in place of a bad one.
func syntheticRequest(r *Reject) []byte {
	// The line is quoted to ASCII: no byte of it can end or fold the field.
	return []byte("GET / HTTP/1.1\r\nHost: localhost\r\n" + rejectName + ": " +
		strconv.Itoa(r.Status) + " " + r.Msg + "\r\n" + rejectLineName + ": " + strconv.QuoteToASCII(r.Line) +
		"\r\nConnection: close\r\n\r\n")
}

// Reject is a request head the guard refused: the status and the message
// gunicorn would send, and the request line for the access log.
type Reject struct {
	Status int
	Msg    string
	// Line is the refused request's line as the client sent it, without
	// its line break, cut to maxLogLine bytes; "" when the guard refused
	// the connection's bytes before a line ended (a line too long is
	// cut).
	Line string
}

// maxLogLine bounds Reject.Line, in bytes.
const maxLogLine = 1024

func (r *Reject) Error() string { return strconv.Itoa(r.Status) + " " + r.Msg }

// BodyError is the error Read returns once a request body turns out bad:
// malformed chunked framing or trailers (Status 400), or a body over the
// limit (Status 413). The bytes before the fault were passed on; nothing
// after it is.
type BodyError struct {
	Status int
	Msg    string
}

func (e *BodyError) Error() string { return "httpguard: " + e.Msg }

// readBuf is the size of a connection's read buffer, in bytes: as
// net/http's own.
const readBuf = 4096

// readBufs holds the read buffers that connections gave back (see
// Conn.giveBack). A closing connection gives its buffer to the next one
// instead of to the garbage collector: under Connection: close that buffer
// was four tenths of the bytes a worker allocated.
var readBufs = sync.Pool{New: func() any { return new([readBuf]byte) }}

// Conn is a connection whose reads are validated HTTP/1 requests.
type Conn struct {
	net.Conn
	p      parser
	in     []byte // raw bytes read and not yet parsed: in[inOff:]
	inOff  int
	out    []byte // validated bytes not yet returned: out[outOff:]
	outOff int
	err    error // sticky: a BodyError, or the drain after a rejection
	pass   atomic.Bool
	// state is idle, reading (a Read runs) or closed (Close found no
	// Read running and handed the buffers on).
	state    atomic.Int32
	bufs     *bufs // the holder of the buffers taken at Wrap, for Close to hand them on
	checked  bool  // the ALPN choice was asked for
	rejected bool  // the synthetic request is out; drain the rest
}

// Wrap guards c with cfg (nil means the defaults). cfg must not change
// afterwards.
func Wrap(c net.Conn, cfg *Config) *Conn {
	if cfg == nil {
		d := Defaults()
		cfg = &d
	}
	g := &Conn{Conn: c}
	g.takeBufs()
	g.p.init(cfg.limits())
	return g
}

// bufs are the growing buffers of a connection's parser and its
// validated output, which a closed connection hands to the next one
// (Conn.Close), as it does its read buffer: a fresh parser grew them
// again for every connection, about 15 allocations under Connection:
// close.
type bufs struct {
	line, head, method, target, lastName, out []byte
	fields                                    []field
}

var parserBufs = sync.Pool{New: func() any { return new(bufs) }}

// maxKeptBufs is the most bytes of buffers a closed connection hands on;
// a connection that grew more (huge heads) leaves them to the collector.
const maxKeptBufs = 64 << 10

// takeBufs gives a new connection's parser the buffers of a closed one.
func (c *Conn) takeBufs() {
	b := parserBufs.Get().(*bufs)
	p := &c.p
	p.line, p.head, p.method, p.target, p.lastName, p.fields = b.line, b.head, b.method, b.target, b.lastName, b.fields
	c.out = b.out
	*b = bufs{}
	c.bufs = b
}

// keepBufs hands the parser's buffers on (Close, with no Read running).
func (c *Conn) keepBufs() {
	b, p := c.bufs, &c.p
	if b == nil {
		return
	}
	c.bufs = nil
	size := cap(p.line) + cap(p.head) + cap(p.method) + cap(p.target) + cap(p.lastName) + cap(c.out)
	for _, f := range p.fields[:cap(p.fields)] {
		size += cap(f.name) + cap(f.val)
	}
	if size > maxKeptBufs {
		return
	}
	*b = bufs{line: p.line[:0], head: p.head[:0], method: p.method[:0], target: p.target[:0],
		lastName: p.lastName[:0], out: c.out[:0], fields: p.fields[:0]}
	p.line, p.head, p.method, p.target, p.lastName, p.fields = nil, nil, nil, nil, nil, nil
	c.out, c.outOff = nil, 0
	parserBufs.Put(b)
}

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// PassThrough stops validating: from the next Read on, bytes pass as they
// come. For a connection that negotiated "h2" by ALPN. The guard switches
// by itself when the conn it wraps has a NegotiatedProtocol() string
// method (gorn's tlsconf.Conn) that returns "h2": it asks on its first
// Read, in the connection's goroutine.
func (c *Conn) PassThrough() { c.pass.Store(true) }

// Listener wraps every connection l accepts with the guard.
type Listener struct {
	net.Listener
	Config *Config
}

// Accept accepts a connection and guards it.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c, l.Config), nil
}

// Read returns validated request bytes. After Close it returns the
// wrapped conn's error.
func (c *Conn) Read(b []byte) (int, error) {
	if !c.state.CompareAndSwap(idle, reading) {
		if c.state.Load() == closed {
			return c.Conn.Read(b) // fails: the wrapped conn is closed
		}
		return 0, errConcurrentRead
	}
	n, err := c.read(b)
	c.state.Store(idle)
	return n, err
}

// A Conn's states (Conn.state).
const (
	idle int32 = iota
	reading
	closed
)

// errConcurrentRead is Read's error while another Read runs: the guard
// reads for one caller at a time (net/http's and gorn's servers never
// read a connection twice at once).
var errConcurrentRead = errors.New("httpguard: concurrent Read on one connection")

// Close closes the wrapped conn. Unless a Read is running (it gives the
// buffer back itself when its read fails), the read buffer goes back to
// the pool at once: a connection closed after its response, with no
// failed read to end it, would otherwise leave it to the garbage
// collector, and the next connection would allocate a new one.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	if c.state.CompareAndSwap(idle, closed) {
		c.giveBack()
		c.keepBufs()
	}
	return err
}

func (c *Conn) read(b []byte) (int, error) {
	for {
		if c.outOff < len(c.out) {
			n := copy(b, c.out[c.outOff:])
			c.outOff += n
			if c.outOff == len(c.out) {
				c.out, c.outOff = c.out[:0], 0
			}
			return n, nil
		}
		if c.err != nil {
			return 0, c.err
		}
		if !c.checked {
			// In the connection's goroutine, before any byte: a TLS
			// conn below runs its handshake here and tells the ALPN
			// choice.
			c.checked = true
			if np, ok := c.Conn.(interface{ NegotiatedProtocol() string }); ok && np.NegotiatedProtocol() == "h2" {
				c.pass.Store(true)
			}
		}
		if c.pass.Load() {
			if c.inOff < len(c.in) { // parsed ahead of the switch: hand it on raw
				n := copy(b, c.in[c.inOff:])
				c.inOff += n
				return n, nil
			}
			c.giveBack() // bytes pass straight through from now on
			return c.Conn.Read(b)
		}
		if c.rejected {
			return 0, c.drain()
		}
		if c.inOff < len(c.in) {
			c.parse()
			continue
		}
		// Fast path: body bytes go straight into the caller's buffer.
		if len(b) > 0 && c.checked {
			if room := c.p.passthrough(); room > 0 {
				if int64(len(b)) > room {
					b = b[:room]
				}
				n, err := c.Conn.Read(b)
				if n > 0 {
					c.p.passed(n)
					return n, nil
				}
				c.giveBack()
				return 0, err
			}
		}
		if cap(c.in) == 0 {
			c.in = readBufs.Get().(*[readBuf]byte)[:0]
		}
		n, err := c.Conn.Read(c.in[:cap(c.in)])
		c.in, c.inOff = c.in[:n], 0
		if n > 0 {
			c.parse()
			if c.outOff < len(c.out) || c.err != nil {
				continue
			}
		}
		if err != nil {
			if n == 0 {
				c.giveBack()
			}
			// Output for what was read first; the error is returned again
			// by the next read of the wrapped conn, when there is one.
			return 0, err
		}
	}
}

// giveBack returns the read buffer, if c holds one, to the pool. Read
// calls it when the buffer holds nothing: after a read of the wrapped conn
// failed (closed, failed or at its end, or stopped by a deadline, as
// net/http stops its background read after every request), everything
// read before being parsed, and once bytes pass straight through (h2).
// Only Read, never run twice at once, and Close while no Read runs touch
// the buffer; the next Read that needs one takes one again.
func (c *Conn) giveBack() {
	if cap(c.in) != 0 {
		readBufs.Put((*[readBuf]byte)(c.in[:readBuf]))
		c.in, c.inOff = nil, 0
	}
}

// parse runs the buffered input through the parser.
func (c *Conn) parse() {
	n, out, err := c.p.feed(c.in[c.inOff:], c.out)
	c.inOff += n
	c.out = out
	switch e := err.(type) {
	case nil:
	case *Reject:
		c.out = append(c.out, syntheticRequest(e)...)
		c.rejected = true
		c.in, c.inOff = c.in[:0], 0
	case *BodyError:
		c.err = e
	}
}

// drain reads and discards what follows a rejected request until the
// connection fails, is closed, or its read deadline passes: net/http reads
// ahead in the background while it answers the requests before (and the
// synthetic one), and an EOF would cancel those requests' contexts.
func (c *Conn) drain() error {
	var buf [4096]byte
	for {
		if _, err := c.Conn.Read(buf[:]); err != nil {
			return err
		}
	}
}
