// Package statsd sends gunicorn's statsd metrics (--statsd-host), so that
// dashboards fed by a statsd server or exporter keep working after the
// switch: per request gunicorn.requests, gunicorn.request.duration and
// gunicorn.request.status.CODE from the workers, gunicorn.workers from the
// master, and gunicorn.log.LEVEL for warnings and errors, with
// --statsd-prefix before each name and --dogstatsd-tags after each line.
//
// Sends are best effort, as gunicorn's: one UDP datagram per event, never
// waiting, and a lost datagram is a lost sample.
package statsd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Client sends metrics to one statsd server. A nil *Client sends nothing.
// Its methods are safe from several goroutines.
type Client struct {
	conn   net.Conn
	prefix string // "" or ending in "."
	tags   string // "" or "|#tags"
}

// ParseHost checks a --statsd-host value: HOST:PORT.
func ParseHost(host string) error {
	h, port, err := net.SplitHostPort(host)
	if err != nil || h == "" {
		return fmt.Errorf("--statsd-host wants HOST:PORT, not %q", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("--statsd-host wants HOST:PORT, not %q", host)
	}
	return nil
}

// Dial makes a client for the statsd server at host (HOST:PORT), with
// prefix (--statsd-prefix; a "." is added unless it ends with one) and
// DogStatsD tags (--dogstatsd-tags, such as "env:prod,app:shop"; "" for
// none).
func Dial(host, prefix, tags string) (*Client, error) {
	if err := ParseHost(host); err != nil {
		return nil, err
	}
	conn, err := net.Dial("udp", host)
	if err != nil {
		return nil, fmt.Errorf("--statsd-host %s: %w", host, err)
	}
	return &Client{conn: conn, prefix: normalizePrefix(prefix), tags: tagSuffix(tags)}, nil
}

// normalizePrefix ends a non-empty prefix with exactly one ".", as
// gunicorn does.
func normalizePrefix(p string) string {
	p = strings.TrimRight(p, ".")
	if p == "" {
		return ""
	}
	return p + "."
}

func tagSuffix(tags string) string {
	if tags == "" {
		return ""
	}
	return "|#" + tags
}

// Close closes the client's socket.
func (c *Client) Close() error {
	if c == nil {
		return nil
	}
	return c.conn.Close()
}

// Incr adds n to the counter name.
func (c *Client) Incr(name string, n int64) {
	if c == nil {
		return
	}
	c.send(c.appendLine(nil, name, strconv.FormatInt(n, 10), "c|@1.0"))
}

// Gauge sets the gauge name to v.
func (c *Client) Gauge(name string, v int64) {
	if c == nil {
		return
	}
	c.send(c.appendLine(nil, name, strconv.FormatInt(v, 10), "g"))
}

// Request sends a request's three metrics in one datagram: the request
// count, its duration (a timer, in milliseconds) and its status count.
func (c *Client) Request(status int, d time.Duration) {
	if c == nil {
		return
	}
	b := make([]byte, 0, 192)
	b = c.appendLine(b, "gunicorn.request.duration", strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', -1, 64), "ms")
	b = append(b, '\n')
	b = c.appendLine(b, "gunicorn.requests", "1", "c|@1.0")
	b = append(b, '\n')
	b = c.appendLine(b, "gunicorn.request.status."+strconv.Itoa(status), "1", "c|@1.0")
	c.send(b)
}

// appendLine appends "PREFIXname:value|type|#tags".
func (c *Client) appendLine(b []byte, name, value, typ string) []byte {
	b = append(b, c.prefix...)
	b = append(b, name...)
	b = append(b, ':')
	b = append(b, value...)
	b = append(b, '|')
	b = append(b, typ...)
	return append(b, c.tags...)
}

func (c *Client) send(b []byte) {
	c.conn.Write(b) // best effort: no statsd server is no reason to fail a request
}

// LogHandler counts the records of inner's at warning level and above as
// gunicorn.log.warning, gunicorn.log.error and gunicorn.log.critical, as
// gunicorn's statsd logger does, and passes them on.
type LogHandler struct {
	slog.Handler
	c *Client
}

// NewLogHandler wraps inner; with a nil client it returns inner.
func NewLogHandler(inner slog.Handler, c *Client) slog.Handler {
	if c == nil {
		return inner
	}
	return &LogHandler{Handler: inner, c: c}
}

// Handle implements slog.Handler.
func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error {
	switch {
	case r.Level > slog.LevelError:
		h.c.Incr("gunicorn.log.critical", 1)
	case r.Level == slog.LevelError:
		h.c.Incr("gunicorn.log.error", 1)
	case r.Level >= slog.LevelWarn:
		h.c.Incr("gunicorn.log.warning", 1)
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &LogHandler{Handler: h.Handler.WithAttrs(attrs), c: h.c}
}

// WithGroup implements slog.Handler.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	return &LogHandler{Handler: h.Handler.WithGroup(name), c: h.c}
}
