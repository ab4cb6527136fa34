package tlsconf

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Listener wraps every connection its inner listener accepts in
// server-side TLS. Accept does no I/O: the handshake runs on the
// connection's first Read (or NegotiatedProtocol call), in the goroutine
// net/http serves the connection from, bounded by the read deadline
// net/http sets for the request head.
type Listener struct {
	net.Listener
	config *tls.Config
	log    *slog.Logger
}

// NewListener wraps inner; cfg is the worker's one *tls.Config (from New),
// shared by all connections. log, if not nil, gets failed handshakes at
// debug level.
func NewListener(inner net.Listener, cfg *tls.Config, log *slog.Logger) *Listener {
	return &Listener{Listener: inner, config: cfg, log: log}
}

// Accept returns the next connection as a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Server(c, l.config, l.log), nil
}

// Conn is a server-side TLS connection. It is deliberately not a
// *tls.Conn and has no ConnectionState method (net/http takes a conn with
// one for a TLS conn it need not handshake, and then never serves HTTP/2
// on it), so net/http treats it as a plain stream and serves HTTP/2 on it,
// as "unencrypted" HTTP/2, once ALPN has chosen "h2". The TLS facts are
// reached through NegotiatedProtocol and TLSConnectionState.
//
// Layers stacked above it (the HTTP/1 guard) find it by unwrapping with
// NetConn, or by asserting the interface
//
//	interface{ NegotiatedProtocol() string }
//
// on the conn they wrap. They must call it from the connection's own
// goroutine (their first Read), never from Accept: it runs the handshake.
// It returns "h2" when the client chose HTTP/2, in which case the bytes
// that follow are an HTTP/2 connection preface and frames, not an HTTP/1
// request; "http/1.1" or "" (no ALPN) mean HTTP/1.
type Conn struct {
	tc       *tls.Conn
	raw      net.Conn
	log      *slog.Logger
	failOnce sync.Once
}

// Server wraps c, which the caller no longer uses directly, in TLS.
func Server(c net.Conn, cfg *tls.Config, log *slog.Logger) *Conn {
	return &Conn{tc: tls.Server(c, cfg), raw: c, log: log}
}

// handshake runs the TLS handshake once; later calls return its result.
// A client that spoke plain HTTP gets a short 400 in plain text, as
// net/http answers on its own TLS listeners, and the connection closes.
func (c *Conn) handshake() error {
	err := c.tc.Handshake()
	if err == nil {
		return nil
	}
	c.failOnce.Do(func() {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			re.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			re.Conn.Close()
		}
		if c.log != nil && !errors.Is(err, io.EOF) {
			c.log.Debug("TLS handshake failed", "remote", c.raw.RemoteAddr().String(), "err", err)
		}
	})
	return err
}

// looksLikeHTTP reports whether a would-be TLS record header is the start
// of a plain HTTP request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE":
		return true
	}
	return false
}

// Read reads decrypted bytes, running the handshake first if needed.
func (c *Conn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.tc.Read(b)
}

// Write encrypts and writes b, running the handshake first if needed.
func (c *Conn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.tc.Write(b)
}

// NegotiatedProtocol runs the handshake if it has not run and returns the
// protocol ALPN chose: "h2", "http/1.1", or "" (no ALPN, or a failed
// handshake, after which Read fails too).
func (c *Conn) NegotiatedProtocol() string {
	if c.handshake() != nil {
		return ""
	}
	return c.tc.ConnectionState().NegotiatedProtocol
}

// TLSConnectionState runs the handshake if it has not run and returns the
// connection's TLS state (client certificates, version, cipher suite).
func (c *Conn) TLSConnectionState() (tls.ConnectionState, error) {
	if err := c.handshake(); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.tc.ConnectionState(), nil
}

// NetConn returns the connection under TLS, as (*tls.Conn).NetConn does.
func (c *Conn) NetConn() net.Conn { return c.raw }

// Close sends a close_notify alert, if the handshake completed (bounded by
// a 5 s write deadline), and closes the connection.
func (c *Conn) Close() error { return c.tc.Close() }

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the peer's address as the connection below tells it
// (the real client's, behind a PROXY-protocol layer).
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.tc.SetDeadline(t) }

// SetReadDeadline sets the read deadline, which also bounds a handshake
// run from Read.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.tc.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tc.SetWriteDeadline(t) }
