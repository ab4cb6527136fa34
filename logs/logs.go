// Package logs writes gorn's error log in gunicorn's line format and its
// access log in gunicorn's default access-log format.
package logs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
)

// LevelCritical is gunicorn's CRITICAL level, above slog.LevelError.
const LevelCritical = slog.Level(12)

// ParseLevel maps a --log-level name (debug, info, warning, error,
// critical) to a slog level; unknown names give info.
func ParseLevel(name string) slog.Level {
	switch strings.ToLower(name) {
	case "debug":
		return slog.LevelDebug
	case "warning", "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	case "critical":
		return LevelCritical
	}
	return slog.LevelInfo
}

func levelName(l slog.Level) string {
	switch {
	case l >= LevelCritical:
		return "CRITICAL"
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

// Handler is a slog.Handler writing lines such as
//
//	[2026-11-24 08:15:20 +0000] [1234] [INFO] Booting worker with pid: 1235
//
// with attributes appended as key=value. Each record is one write, so lines
// from several processes sharing the file do not interleave.
type Handler struct {
	mu    *sync.Mutex
	w     io.Writer
	level slog.Leveler
	pid   int
	attrs string
}

// NewHandler returns a Handler writing records at or above level to w,
// stamped with pid.
func NewHandler(w io.Writer, level slog.Leveler, pid int) *Handler {
	return &Handler{mu: new(sync.Mutex), w: w, level: level, pid: pid}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	var b strings.Builder
	b.WriteString(t.Format("[2006-01-02 15:04:05 -0700] "))
	fmt.Fprintf(&b, "[%d] [%s] %s", h.pid, levelName(r.Level), r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func writeAttr(b *strings.Builder, a slog.Attr) {
	if a.Equal(slog.Attr{}) {
		return
	}
	v := a.Value.Resolve()
	if a.Key == "traceback" {
		// Tracebacks are printed as gunicorn prints them: on their own lines.
		b.WriteByte('\n')
		b.WriteString(strings.TrimRight(v.String(), "\n"))
		return
	}
	s := v.String()
	if s == "" || strings.ContainsAny(s, " \"=") || strings.ContainsFunc(s, notPrint) {
		s = fmt.Sprintf("%q", s)
	}
	fmt.Fprintf(b, " %s=%s", a.Key, s)
}

// notPrint reports control characters (tab, newline...), which must not
// reach the log unquoted: a value could otherwise forge log lines.
func notPrint(r rune) bool { return !unicode.IsPrint(r) }

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = withAttrs(h.attrs, attrs)
	return &h2
}

// withAttrs is prefix, formatted attributes, with attrs formatted after it.
func withAttrs(prefix string, attrs []slog.Attr) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, a := range attrs {
		writeAttr(&b, a)
	}
	return b.String()
}

// WithGroup implements slog.Handler; groups are flattened.
func (h *Handler) WithGroup(string) slog.Handler { return h }

// Open opens a log destination: "-" is the given standard stream, anything
// else a file opened for appending (created 0644 if missing).
func Open(path string, std *os.File) (*os.File, error) {
	if path == "" || path == "-" {
		return std, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log file: %w", err)
	}
	return f, nil
}

// AccessEntry is what the access log records about one request. The
// default format uses the fields up to UserAgent; an --access-logformat
// may use the others.
type AccessEntry struct {
	RemoteAddr string    // client address, without the port
	User       string    // the user name of HTTP Basic authorization (BasicUser)
	Time       time.Time // when the request started
	Method     string
	RequestURI string // as sent, such as /path?q=1
	Proto      string // such as HTTP/1.1
	Status     int
	Bytes      int64 // response body bytes sent
	Referer    string
	UserAgent  string

	RemotePort     string        // the client's port ("" on a unix socket)
	Path           string        // PATH_INFO: the decoded path, less ScriptName
	Query          string        // QUERY_STRING
	ScriptName     string        // SCRIPT_NAME
	Scheme         string        // wsgi.url_scheme
	Duration       time.Duration // from the request's start to its response's end
	Pid            int           // the worker's
	Header         http.Header   // the request's headers
	ResponseHeader http.Header   // the response's headers
	// ProxyProtocol, ProxyAddr and ProxyPort are the environ's
	// PROXY_PROTOCOL, PROXY_ADDR and PROXY_PORT: a PROXY header's
	// protocol and destination; "" without one.
	ProxyProtocol, ProxyAddr, ProxyPort string
	// RequestLine is the request line as the client sent it, for a
	// request refused before it could be parsed; %(r)s shows it in place
	// of Method, RequestURI and Proto. "" for others.
	RequestLine string
}

// requestLine is %(r)s: "METHOD URI PROTO", or the refused request's line.
func (e *AccessEntry) requestLine() string {
	if e.RequestLine != "" {
		return e.RequestLine
	}
	return e.Method + " " + e.RequestURI + " " + e.Proto
}

// AppendAccess appends the entry in gunicorn's default access log format,
//
//	%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"
//
// and a newline, to dst.
func AppendAccess(dst []byte, e *AccessEntry) []byte {
	dst = append(dst, dash(e.RemoteAddr)...)
	dst = append(dst, " - "...)
	dst = appendEscaped(dst, dash(e.User))
	dst = append(dst, ' ')
	dst = e.Time.AppendFormat(append(dst, '['), "02/Jan/2006:15:04:05 -0700")
	dst = append(dst, "] \""...)
	dst = appendEscaped(dst, e.requestLine())
	dst = fmt.Appendf(dst, "\" %d ", e.Status)
	if e.sentNothing() { // as the b atom
		dst = append(dst, '-')
	} else {
		dst = fmt.Appendf(dst, "%d", e.Bytes)
	}
	dst = append(dst, " \""...)
	dst = appendEscaped(dst, dash(e.Referer))
	dst = append(dst, "\" \""...)
	dst = appendEscaped(dst, dash(e.UserAgent))
	return append(dst, "\"\n"...)
}

// appendEscaped escapes quotes, backslashes and control bytes so a client
// cannot forge access log lines.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < ' ' || c == 0x7f:
			dst = fmt.Appendf(dst, "\\x%02x", c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// File is a log destination that USR1 can reopen after logrotate moved it,
// and a reload point elsewhere. Writes, Reopen and Switch are safe from
// several goroutines.
type File struct {
	mu   sync.Mutex
	path string   // "" or "-" for the standard stream
	f    *os.File // the file written to
	std  *os.File // the standard stream, for "" and "-"
}

// OpenFile opens path as Open does and returns it as a reopenable File.
func OpenFile(path string, std *os.File) (*File, error) {
	f, err := Open(path, std)
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f, std: std}, nil
}

// Switch makes path the destination, opened as OpenFile opens it ("" or
// "-" being the standard stream OpenFile was given), and closes the file
// it replaces unless that is the standard stream. If path cannot be
// opened, the File keeps its destination.
func (f *File) Switch(path string) error {
	nf, err := Open(path, f.std)
	if err != nil {
		return err
	}
	f.mu.Lock()
	old := f.f
	f.f, f.path = nf, path
	f.mu.Unlock()
	if old == f.std {
		return nil
	}
	return old.Close()
}

// Write writes p to the current file.
func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Write(p)
}

// File returns the current file, for handing to a child process.
func (f *File) File() *os.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f
}

// Path is the path the File was opened or last switched to ("-" or "" for
// the standard stream).
func (f *File) Path() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.path
}

// Reopen opens the path again and switches to it; a standard stream is
// left alone.
func (f *File) Reopen() error {
	path := f.Path()
	if path == "" || path == "-" {
		return nil
	}
	nf, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("reopening log file: %w", err)
	}
	f.mu.Lock()
	old := f.f
	f.f = nf
	f.mu.Unlock()
	return old.Close()
}
