package http1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
)

// errNoRequest is a connection that ended (or timed out) between
// requests: nothing to answer.
var errNoRequest = errors.New("http1: no request")

// reqBuf is where a connection's requests are built, one after the other:
// the request, its URL and its header map (and the backing array of the
// header's values) are reused for the next request, which saves their
// allocations. A handler must not keep them once ServeHTTP returns (see
// Server).
type reqBuf struct {
	r    http.Request
	u    url.URL
	hdr  http.Header
	strs []string
	// order is the head's field names, canonical, in the order the first
	// field of each came (Host and Transfer-Encoding too, which the
	// request's Header no longer holds): see response.FieldOrder.
	order []string
}

// readRequest reads a request head from br. The head is expected to be
// valid HTTP/1 (httpguard checked it); an error is a head it cannot parse,
// or errNoRequest when br ends before any byte. The request is a copy of
// tmpl (for its context; nil means none) with the head's fields, built in
// into, which also gets the order of the fields.
func readRequest(br *bufio.Reader, remote string, tmpl *http.Request, into *reqBuf) (*http.Request, error) {
	if br.Buffered() == 0 {
		// The guard passes on whole heads: one read brings the head in.
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF || isTimeout(err) {
				return nil, errNoRequest
			}
			return nil, err
		}
	}
	if r, ok, err := readBufferedHead(br, remote, tmpl, into); ok {
		return r, err
	}
	tp := textproto.NewReader(br)
	var line string
	for blank := 0; ; blank++ { // empty lines before a request line are skipped
		l, err := tp.ReadLine()
		if err != nil {
			if l == "" && (err == io.EOF || isTimeout(err) || blank > 0) {
				return nil, errNoRequest
			}
			return nil, err
		}
		if l != "" {
			line = l
			break
		}
		if blank >= 8 {
			return nil, errors.New("http1: too many empty lines")
		}
	}
	// As textproto's ReadMIMEHeader, keeping the order of the names.
	if into.hdr == nil {
		into.hdr = make(http.Header)
	}
	hdr := into.hdr
	clear(hdr)
	into.order = into.order[:0]
	for {
		kv, err := tp.ReadContinuedLine()
		if err != nil {
			return nil, err
		}
		if kv == "" {
			break
		}
		k, v, found := strings.Cut(kv, ":")
		if !found || k == "" {
			return nil, fmt.Errorf("http1: malformed header line %q", kv)
		}
		k = textproto.CanonicalMIMEHeaderKey(k)
		vs, seen := hdr[k]
		if !seen {
			into.order = append(into.order, k)
		}
		// TrimLeft, as ReadMIMEHeader: the line is trimmed already, but a
		// folded continuation of spaces leaves one trailing (net/http's).
		hdr[k] = append(vs, strings.TrimLeft(v, " \t"))
	}
	return newRequest(line, hdr, remote, tmpl, into)
}

// maxFastFields is the most header fields a head may have for
// readBufferedHead to parse it.
const maxFastFields = 32

// readBufferedHead parses a request head that br holds whole in its
// buffer, as textproto would, with one string for the whole head of which
// the method, target, header names (when sent in canonical form) and
// values are all slices. ok is false, and nothing is read, for a head it
// leaves to textproto: not buffered whole, empty lines before it, obsolete
// line folding, or more than maxFastFields fields.
func readBufferedHead(br *bufio.Reader, remote string, tmpl *http.Request, into *reqBuf) (r *http.Request, ok bool, err error) {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 || buf[0] == '\r' || buf[0] == '\n' {
		return nil, false, nil
	}
	head := string(buf[:end+2]) // every line with its CRLF
	line, rest, _ := strings.Cut(head, "\r\n")
	var fields [maxFastFields][2]string
	n := 0
	for rest != "" {
		var kv string
		kv, rest, _ = strings.Cut(rest, "\r\n")
		if n == maxFastFields || kv == "" || kv[0] == ' ' || kv[0] == '\t' {
			return nil, false, nil
		}
		k, v, found := strings.Cut(kv, ":")
		if !found {
			return nil, false, nil // textproto says what is wrong
		}
		fields[n] = [2]string{textproto.CanonicalMIMEHeaderKey(k), strings.Trim(v, " \t")}
		n++
	}
	// The map and one slab for its values, as textproto: most names
	// appear once. Both are the previous request's, when there is one.
	if into.hdr == nil || cap(into.strs) < n {
		into.hdr, into.strs = make(http.Header, max(n, 8)), make([]string, max(n, 8))
	}
	hdr, strs := into.hdr, into.strs[:n]
	clear(hdr)
	clear(strs)
	into.order = into.order[:0]
	for i, f := range fields[:n] {
		if vs, dup := hdr[f[0]]; dup {
			hdr[f[0]] = append(vs, f[1])
			continue
		}
		strs[i] = f[1]
		hdr[f[0]] = strs[i : i+1 : i+1]
		into.order = append(into.order, f[0])
	}
	br.Discard(end + 4)
	r, err = newRequest(line, hdr, remote, tmpl, into)
	return r, true, err
}

// newRequest builds the request of a request line and its header fields,
// in into.
func newRequest(line string, hdr http.Header, remote string, tmpl *http.Request, into *reqBuf) (*http.Request, error) {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" {
		return nil, fmt.Errorf("http1: malformed request line %q", line)
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok || major != 1 {
		return nil, fmt.Errorf("http1: unsupported version %q", proto)
	}
	r, u := &into.r, &into.u
	if err := parseTarget(method, target, u); err != nil {
		return nil, err
	}
	if tmpl != nil {
		*r = *tmpl
	} else {
		*r = http.Request{}
	}
	r.Method, r.URL, r.Proto, r.ProtoMajor, r.ProtoMinor = method, u, proto, major, minor
	r.Header, r.RequestURI, r.RemoteAddr, r.Host, r.Body = hdr, target, remote, u.Host, http.NoBody
	if r.Host == "" {
		r.Host = get(hdr, "Host")
	}
	delete(hdr, "Host")
	r.Close = shouldClose(minor, hdr["Connection"])
	if te := hdr["Transfer-Encoding"]; len(te) > 0 {
		if minor == 0 || len(te) != 1 || !strings.EqualFold(strings.TrimSpace(te[0]), "chunked") {
			return nil, fmt.Errorf("http1: unsupported transfer encoding %q", te)
		}
		delete(hdr, "Transfer-Encoding")
		delete(hdr, "Content-Length")
		r.TransferEncoding = []string{"chunked"}
		r.ContentLength = -1
	} else if cl := hdr["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseUint(strings.TrimSpace(cl[0]), 10, 63)
		if err != nil {
			return nil, fmt.Errorf("http1: bad Content-Length %q", cl[0])
		}
		r.ContentLength = int64(n)
		hdr["Content-Length"] = cl[:1] // identical duplicates (the guard checked) count once
	}
	return r, nil
}

// get is h.Get(key) for a key in canonical form, without canonicalizing
// it again.
func get(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// parseTarget parses a request target into u as net/http does
// (url.ParseRequestURI, or an authority for CONNECT), without its cost for
// the common origin form with no escapes.
func parseTarget(method, target string, u *url.URL) error {
	if target[0] == '/' && strings.IndexByte(target, '%') < 0 && (len(target) < 2 || target[1] != '/') {
		path, query, hasQuery := strings.Cut(target, "?")
		*u = url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
		return nil
	}
	var parsed *url.URL
	var err error
	if method == "CONNECT" && target[0] != '/' {
		if parsed, err = url.Parse("http://" + target); err == nil {
			parsed.Scheme = ""
		}
	} else {
		parsed, err = url.ParseRequestURI(target)
	}
	if err != nil {
		return err
	}
	*u = *parsed
	return nil
}

// shouldClose reports whether a request asks for its connection to close
// after the response: Connection: close, or HTTP/1.0 without keep-alive.
func shouldClose(minor int, conn []string) bool {
	if minor == 0 {
		return hasToken(conn, "close") || !hasToken(conn, "keep-alive")
	}
	return hasToken(conn, "close")
}

// hasToken reports whether the comma-separated values hold token (ASCII
// case-insensitive).
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.Trim(t, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// isReadError reports whether err is the connection's, not the head's:
// then there is nobody to answer (net/http closes silently too).
func isReadError(err error) bool {
	var oe *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isTimeout(err) || errors.As(err, &oe)
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// body is a request body: Content-Length bytes, or chunked. It sends
// 100 Continue before its first read when the client waits for one.
type body struct {
	c         *conn
	r         io.Reader // a LimitedReader over the conn, or a chunked reader
	lr        io.LimitedReader
	chunked   bool
	eof       bool
	expect    bool // the client sent Expect: 100-continue
	continue_ bool // send 100 Continue before the first read
	err       error
}

func (b *body) done() bool { return b.eof }

// Read reads the body; like net/http's, it returns io.EOF along with the
// last bytes of a Content-Length body.
func (b *body) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.continue_ {
		b.continue_ = false
		if !b.c.res.wroteHead {
			b.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := b.c.bw.Flush(); err != nil {
				b.err = err
				return 0, err
			}
		}
	}
	n, err := b.r.Read(p)
	switch {
	case b.chunked && err == io.EOF:
		err = b.trailer()
	case !b.chunked && b.lr.N == 0:
		err = io.EOF
	case !b.chunked && err == io.EOF:
		err = io.ErrUnexpectedEOF
	}
	if err == io.EOF {
		b.eof = true
		b.c.bodyDone()
	} else if err != nil {
		b.err = err
	}
	return n, err
}

// trailer reads a chunked body's trailer section (httpguard checked it)
// up to its empty line; io.EOF when it is all there.
func (b *body) trailer() error {
	for {
		line, err := b.c.br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if len(line) <= 2 && strings.TrimRight(string(line), "\r\n") == "" {
			return io.EOF
		}
	}
}

func (b *body) Close() error { return nil }

// newBody returns r's body reader, reading from c; nil for no body.
func newBody(c *conn, r *http.Request) *body {
	if r.ContentLength == 0 {
		return nil
	}
	b := &body{c: c}
	if r.ContentLength < 0 {
		b.chunked = true
		b.r = httputil.NewChunkedReader(c.br)
	} else {
		b.lr = io.LimitedReader{R: c.br, N: r.ContentLength}
		b.r = &b.lr
	}
	b.expect = r.ProtoAtLeast(1, 1) && hasToken(r.Header["Expect"], "100-continue")
	b.continue_ = b.expect
	return b
}
