package http1

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorn-project/gorn/httpguard"
)

// bufferBeforeChunking is how many body bytes a response holds back
// before its head is written: a response that ends within them gets a
// Content-Length instead of chunked framing (net/http's
// bufferBeforeChunkingSize).
const bufferBeforeChunking = 2048

// maxScratch is the largest head buffer a connection keeps between
// requests, in bytes.
const maxScratch = 16 << 10

// sniffLen is how many bytes http.DetectContentType looks at.
const sniffLen = 512

// response is the http.ResponseWriter of the running request; a
// connection reuses one for all its requests.
type response struct {
	c    *conn
	req  *http.Request
	body *body // nil: no request body
	hdr  http.Header

	status        int    // 0 until WriteHeader
	reason        string // the status line's text; "" for the standard one
	contentLength int64  // -1: not known
	written       int64  // body bytes the handler wrote
	buf           []byte
	wroteHead     bool // the head is in the write buffer
	chunked       bool
	isHEAD        bool
	closeAfter    bool  // the connection closes after this response
	err           error // a failed write: the client is gone
	deadlineSet   bool  // the handler set a read deadline
	keys          []string
	order         []string // SetHeaderOrder's; empty: every field sorted
	scratch       []byte
}

// reset readies w for req.
func (w *response) reset(c *conn, req *http.Request) {
	if w.hdr == nil {
		w.hdr = make(http.Header)
	} else {
		clear(w.hdr)
	}
	scratch := w.scratch[:0]
	if cap(scratch) > maxScratch {
		scratch = nil // an app's huge head once must not stay with the connection
	}
	*w = response{c: c, req: req, hdr: w.hdr, contentLength: -1, buf: w.buf[:0], keys: w.keys[:0], order: w.order[:0], scratch: scratch,
		isHEAD: req.Method == "HEAD"}
	w.body = newBody(c, req)
	if w.body != nil {
		req.Body = w.body
	}
}

// Header returns the response header map, as net/http's.
func (w *response) Header() http.Header { return w.hdr }

// FieldOrder returns the names of the request's header fields, in the
// canonical form of its Header's keys, in the order the first field of
// each name came on the wire, which net/http's Header map forgets. It
// names every key of the request's Header as the server built it, and
// also Host and Transfer-Encoding, which the Header does not hold. The
// slice is the connection's: valid until ServeHTTP returns, not to be
// changed.
func (w *response) FieldOrder() []string { return w.c.reqs.order }

// WriteHeader sets the status; later calls are ignored. An informational
// status (1xx but 101) is written at once, as an interim response.
func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("http1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if w.status != 0 {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		b := appendStatusLine(w.scratch[:0], w.req, code, "")
		b = w.appendHeader(b)
		b = append(b, "\r\n"...)
		w.scratch = b
		w.c.bw.Write(b)
		if err := w.c.bw.Flush(); err != nil {
			w.err = err
		}
		return
	}
	w.status = code
	if cl := get(w.hdr, "Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			delete(w.hdr, "Content-Length")
		}
	}
}

// WriteHeaderReason is WriteHeader with the reason phrase of the status
// line ("Custom Thing" in "299 Custom Thing"), which net/http's
// ResponseWriter cannot send; "" means the standard phrase. A phrase with
// a control character other than HTAB is replaced by the standard one.
func (w *response) WriteHeaderReason(code int, reason string) {
	if w.status != 0 || code < 200 {
		w.WriteHeader(code)
		return
	}
	for i := 0; i < len(reason); i++ {
		if c := reason[i]; (c < ' ' && c != '\t') || c == 0x7f {
			reason = ""
			break
		}
	}
	w.WriteHeader(code)
	w.reason = reason
}

// Write writes body bytes, holding back the first bufferBeforeChunking
// until the head is written.
func (w *response) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.wroteHead {
		if len(w.buf)+len(p) <= bufferBeforeChunking {
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		w.writeHead(false, p)
		if err := w.writeBody(w.buf); err != nil {
			return 0, err
		}
	}
	if err := w.writeBody(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeBody writes p in the response's framing.
func (w *response) writeBody(p []byte) error {
	if len(p) == 0 || w.isHEAD || w.err != nil {
		return w.err
	}
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, w.err = bw.WriteString("\r\n")
	} else {
		_, w.err = bw.Write(p)
	}
	return w.err
}

// commit writes the head and the body bytes held back, if not yet done;
// done says the handler has returned.
func (w *response) commit(done bool) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.wroteHead {
		w.writeHead(done, nil)
		w.writeBody(w.buf)
	}
}

// FlushError sends the head and every byte written so far to the client.
func (w *response) FlushError() error {
	w.commit(false)
	if w.err == nil {
		w.err = w.c.bw.Flush()
	}
	return w.err
}

// Flush is FlushError for http.Flusher.
func (w *response) Flush() { w.FlushError() }

// EnableFullDuplex is accepted and changes nothing: the request body can
// always be read while the response is written.
func (w *response) EnableFullDuplex() error { return nil }

// SetReadDeadline sets the connection's read deadline (for request body
// reads).
func (w *response) SetReadDeadline(t time.Time) error {
	w.deadlineSet = !t.IsZero()
	return w.c.rwc.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline.
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// finish completes the response after the handler returned.
func (w *response) finish() error {
	w.commit(true)
	if w.chunked && !w.isHEAD && w.err == nil {
		_, w.err = w.c.bw.WriteString("0\r\n\r\n")
	}
	if w.err == nil {
		w.err = w.c.bw.Flush()
	}
	if w.deadlineSet {
		w.c.rwc.SetReadDeadline(time.Time{})
	}
	return w.err
}

// reusable reports whether the connection can serve another request.
func (w *response) reusable() bool {
	switch {
	case w.closeAfter || w.err != nil || w.c.srv.DisableKeepAlives:
		return false
	case w.body != nil && !w.body.eof: // an unread body: its end is unknown
		return false
	case w.contentLength != -1 && !w.isHEAD && bodyAllowedForStatus(w.status) && w.written != w.contentLength:
		return false // a short body: the client waits for the rest
	}
	return true
}

// writeHead decides the framing, as net/http's server does, and writes the
// status line and header. done says the handler has returned, so w.buf is
// the whole body; next is body bytes being written after w.buf, for
// Content-Type sniffing.
func (w *response) writeHead(done bool, next []byte) {
	w.wroteHead = true
	hdr, code, req := w.hdr, w.status, w.req
	keepAlives := !w.c.srv.DisableKeepAlives
	allowed := bodyAllowedForStatus(code)
	var setLength, setType, setConn string
	if done && allowed && w.contentLength == -1 && (!w.isHEAD || len(w.buf) > 0) {
		w.contentLength = int64(len(w.buf))
		setLength = strconv.Itoa(len(w.buf))
	}
	wants10KeepAlive := req.ProtoMinor == 0 && hasToken(req.Header["Connection"], "keep-alive")
	hasCL := w.contentLength != -1
	connHdr := get(hdr, "Connection")
	if wants10KeepAlive && (w.isHEAD || hasCL || !allowed) {
		if _, ok := hdr["Connection"]; !ok {
			setConn = "keep-alive"
		}
	} else if req.ProtoMinor == 0 || req.Close {
		w.closeAfter = true
	}
	if connHdr == "close" || !keepAlives {
		w.closeAfter = true
	}
	if w.body != nil && !w.body.eof && (w.body.expect || done) {
		w.closeAfter = true // the client's body is not read (or will not be)
	}
	if allowed {
		_, haveType := hdr["Content-Type"]
		if sniff := w.buf; !haveType && get(hdr, "Content-Encoding") == "" && len(sniff)+len(next) > 0 {
			if len(sniff) < sniffLen && len(next) > 0 {
				sniff = append(sniff[:len(sniff):len(sniff)], next[:min(len(next), sniffLen-len(sniff))]...)
			}
			setType = http.DetectContentType(sniff)
		}
	} else {
		delete(hdr, "Content-Length")
		delete(hdr, "Transfer-Encoding")
		if code == http.StatusNotModified {
			delete(hdr, "Content-Type")
		}
	}
	delete(hdr, "Transfer-Encoding") // gorn frames the body itself
	switch {
	case w.isHEAD || !allowed || code == http.StatusNoContent || hasCL:
	case req.ProtoMinor >= 1:
		w.chunked = true
	default:
		w.closeAfter = true // HTTP/1.0 with no length: the close ends the body
	}
	if w.closeAfter && (!keepAlives || !hasToken(hdr["Connection"], "close")) {
		delete(hdr, "Connection")
		setConn = ""
		if req.ProtoMinor >= 1 {
			setConn = "close"
		}
	}

	b := appendStatusLine(w.scratch[:0], req, code, w.reason)
	b = w.appendHeader(b)
	if setType != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, setType...)
		b = append(b, "\r\n"...)
	}
	if setConn != "" {
		b = append(b, "Connection: "...)
		b = append(b, setConn...)
		b = append(b, "\r\n"...)
	}
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if _, ok := hdr["Date"]; !ok {
		b = append(b, "Date: "...)
		b = appendDate(b, time.Now())
		b = append(b, "\r\n"...)
	}
	if setLength != "" {
		b = append(b, "Content-Length: "...)
		b = append(b, setLength...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	w.scratch = b
	_, w.err = w.c.bw.Write(b)
}

// appendStatusLine appends "HTTP/1.x CODE TEXT\r\n": HTTP/1.0 to an
// HTTP/1.0 request, as net/http. TEXT is reason, or the code's standard
// text when reason is "".
func appendStatusLine(b []byte, req *http.Request, code int, reason string) []byte {
	if req.ProtoMinor == 0 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if reason != "" {
		b = append(b, reason...)
	} else if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// SetHeaderOrder has the head write the header's fields named in keys
// (keys of Header(), each once) first, in that order, as the app gave them;
// the others (those the server adds among them) follow, sorted by name.
// Call it before the head is written; keys is copied (the head may go out
// only after ServeHTTP returns).
func (w *response) SetHeaderOrder(keys []string) { w.order = append(w.order[:0], keys...) }

// appendHeader appends the handler's header fields: those SetHeaderOrder
// named in that order, then the others sorted by name as net/http writes
// them. Fields with invalid names are dropped, and CR or
// LF in a value becomes a space, as in net/http.
func (w *response) appendHeader(b []byte) []byte {
	keys := w.keys[:0]
	for k := range w.hdr {
		if !slices.Contains(w.order, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	w.keys = keys
	for _, k := range w.order {
		b = w.appendField(b, k)
	}
	for _, k := range keys {
		b = w.appendField(b, k)
	}
	return b
}

// appendField appends the lines of header field k, if it has any.
func (w *response) appendField(b []byte, k string) []byte {
	if !httpguard.IsToken(k) {
		return b
	}
	for _, v := range w.hdr[k] {
		b = append(b, k...)
		b = append(b, ": "...)
		b = appendValue(b, v)
		b = append(b, "\r\n"...)
	}
	return b
}

// appendValue appends v trimmed of surrounding whitespace, with CR and LF
// as spaces.
func appendValue(b []byte, v string) []byte {
	v = strings.Trim(v, " \t\r\n")
	if strings.IndexAny(v, "\r\n") < 0 {
		return append(b, v...)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return b
}

// bodyAllowedForStatus reports whether a response with status may have a
// body (not 1xx, 204 or 304).
func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == http.StatusNoContent, status == http.StatusNotModified:
		return false
	}
	return true
}

// dateCache is the Date header's value for one second, shared by all
// connections: formatting it was about 1 % of a small request's time.
type dateCache struct {
	sec   int64
	value []byte
}

var lastDate atomic.Pointer[dateCache]

// appendDate appends now in the HTTP date format (http.TimeFormat).
func appendDate(b []byte, now time.Time) []byte {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return append(b, d.value...)
	}
	d := &dateCache{sec: sec, value: now.UTC().AppendFormat(make([]byte, 0, len(http.TimeFormat)), http.TimeFormat)}
	lastDate.Store(d)
	return append(b, d.value...)
}
