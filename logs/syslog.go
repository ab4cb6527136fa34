package logs

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
)

// DefaultSyslogAddr is --log-syslog-to's default on Linux, as gunicorn's.
const DefaultSyslogAddr = "udp://localhost:514"

// syslogFacilities are the facility names --log-syslog-facility takes, as
// gunicorn's.
var syslogFacilities = map[string]int{
	"auth": 4, "authpriv": 10, "cron": 9, "daemon": 3, "ftp": 11, "kern": 0,
	"lpr": 6, "mail": 2, "news": 7, "security": 4, "syslog": 5, "user": 1,
	"uucp": 8, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
	"local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// ParseSyslogAddr reads a --log-syslog-to address, as gunicorn does:
// udp://HOST:PORT, tcp://HOST:PORT (the port defaults to 514, the host to
// localhost), or unix://PATH, with #dgram or #stream to pick the socket
// type ("" tries a datagram socket, then a stream one).
func ParseSyslogAddr(addr string) (network, address string, err error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		path, kind, _ := strings.Cut(path, "#")
		if path == "" {
			return "", "", fmt.Errorf("--log-syslog-to %q: unix:// needs a path", addr)
		}
		switch kind {
		case "dgram":
			return "unixgram", path, nil
		case "stream":
			return "unix", path, nil
		case "":
			return "unix*", path, nil
		}
		return "", "", fmt.Errorf("--log-syslog-to %q: #%s is neither #dgram nor #stream", addr, kind)
	}
	var rest string
	switch {
	case strings.HasPrefix(addr, "udp://"):
		network, rest = "udp", strings.TrimPrefix(addr, "udp://")
	case strings.HasPrefix(addr, "tcp://"):
		network, rest = "tcp", strings.TrimPrefix(addr, "tcp://")
	default:
		return "", "", fmt.Errorf("--log-syslog-to %q: want udp://HOST:PORT, tcp://HOST:PORT or unix://PATH", addr)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil { // no port
		host, port = strings.Trim(rest, "[]"), "514"
	}
	if host == "" {
		host = "localhost"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("--log-syslog-to %q: %q is not a valid port number", addr, port)
	}
	return network, net.JoinHostPort(host, port), nil
}

// ParseSyslogFacility reads a --log-syslog-facility name.
func ParseSyslogFacility(name string) (int, error) {
	f, ok := syslogFacilities[strings.ToLower(name)]
	if !ok {
		return 0, fmt.Errorf("--log-syslog-facility %q: unknown facility name", name)
	}
	return f, nil
}

// Syslog sends log lines to a syslog server as Python's SysLogHandler
// (gunicorn's) does: "<PRI>TAG: MESSAGE" and a NUL byte, one line per
// datagram or write. Sends are best effort; a nil *Syslog sends nothing.
// Safe from several goroutines.
type Syslog struct {
	mu       sync.Mutex
	conn     net.Conn
	facility int
}

// DialSyslog connects to the --log-syslog-to address with the
// --log-syslog-facility name.
func DialSyslog(addr, facility string) (*Syslog, error) {
	network, address, err := ParseSyslogAddr(addr)
	if err != nil {
		return nil, err
	}
	f, err := ParseSyslogFacility(facility)
	if err != nil {
		return nil, err
	}
	var conn net.Conn
	if network == "unix*" {
		if conn, err = net.Dial("unixgram", address); err != nil {
			conn, err = net.Dial("unix", address)
		}
	} else {
		conn, err = net.Dial(network, address)
	}
	if err != nil {
		return nil, fmt.Errorf("--log-syslog-to %s: %w", addr, err)
	}
	return &Syslog{conn: conn, facility: f}, nil
}

// SyslogTag is gunicorn's syslog tag for a log: "gunicorn.PREFIX.NAME",
// the prefix --log-syslog-prefix, else the process name, name "error" or
// "access".
func SyslogTag(prefix, procName, name string) string {
	if prefix == "" {
		prefix = strings.ReplaceAll(procName, ":", ".")
	}
	return "gunicorn." + prefix + "." + name
}

// Send sends one line with the tag at a slog level.
func (s *Syslog) Send(level slog.Level, tag, msg string) {
	if s == nil {
		return
	}
	pri := s.facility*8 + severity(level)
	b := make([]byte, 0, len(tag)+len(msg)+16)
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(pri), 10)
	b = append(b, '>')
	b = append(b, tag...)
	b = append(b, ": "...)
	b = append(b, msg...)
	b = append(b, 0)
	s.mu.Lock()
	s.conn.Write(b) // best effort, as gunicorn's handler
	s.mu.Unlock()
}

// Close closes the connection.
func (s *Syslog) Close() error {
	if s == nil {
		return nil
	}
	return s.conn.Close()
}

// severity is the syslog severity of a slog level, as Python maps its
// levels.
func severity(l slog.Level) int {
	switch {
	case l > slog.LevelError:
		return 2 // critical
	case l == slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// SyslogHandler passes records on to an inner handler and sends them to
// syslog too, as gunicorn's "[PID] message" (attributes as key=value).
type SyslogHandler struct {
	inner slog.Handler
	s     *Syslog
	tag   string
	pid   int
	attrs string
}

// NewSyslogHandler wraps inner; with a nil Syslog it returns inner.
func NewSyslogHandler(inner slog.Handler, s *Syslog, tag string, pid int) slog.Handler {
	if s == nil {
		return inner
	}
	return &SyslogHandler{inner: inner, s: s, tag: tag, pid: pid}
}

// Enabled implements slog.Handler: the inner handler's level decides.
func (h *SyslogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *SyslogHandler) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "[%d] %s", h.pid, r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, a)
		return true
	})
	h.s.Send(r.Level, h.tag, b.String())
	return h.inner.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *SyslogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.inner = h.inner.WithAttrs(attrs)
	h2.attrs = withAttrs(h.attrs, attrs)
	return &h2
}

// WithGroup implements slog.Handler; groups are flattened.
func (h *SyslogHandler) WithGroup(name string) slog.Handler {
	h2 := *h
	h2.inner = h.inner.WithGroup(name)
	return &h2
}
