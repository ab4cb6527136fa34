package httpguard

import (
	"bytes"
	"math"
	"net/http"
	"net/url"
	"strconv"
)

// state is where the parser is in the request stream.
type state uint8

const (
	stHead      state = iota // the request line and header fields
	stBody                   // Content-Length bytes: left
	stChunkLine              // a chunk-size line
	stChunkData              // chunk data: left
	stChunkCRLF              // the CRLF after chunk data: crlf seen
	stTrailer                // trailer fields after the last chunk
)

// Kinds of header field the parser keeps the values of.
const (
	kindOther uint8 = iota
	kindContentLength
	kindTransferEncoding
	kindHost
	kindExpect
)

type field struct {
	kind uint8
	name []byte // upper case, for messages
	val  []byte
}

// parser validates a stream of HTTP/1 requests. feed consumes raw bytes and
// appends the validated ones to out; it holds back the incomplete line and
// the head of a request until the head is complete and valid.
type parser struct {
	lim limits
	st  state

	line []byte // the incomplete line
	head []byte // the validated head so far (stripped fields left out)
	raw  int    // raw bytes of the head so far, leading empty lines included

	// The head being parsed.
	sawLine   bool
	empty     int // empty lines before the request line
	method    []byte
	target    []byte
	minor     int // HTTP/1.minor
	nfields   int
	fieldLen  int  // bytes of the current field, continuation lines included
	stripped  bool // the current field is left out
	lastField int  // index in fields of the current field, or -1
	lastName  []byte
	fields    []field

	left     int64 // body or chunk bytes left
	body     int64 // body bytes so far (chunked)
	crlf     int   // bytes of the CRLF after chunk data seen
	ntrailer int
	trailLen int
}

func (p *parser) init(l limits) {
	p.lim = l
	p.resetHead()
}

func (p *parser) resetHead() {
	p.st = stHead
	if cap(p.head) > 64<<10 || cap(p.line) > 64<<10 {
		// Do not keep a huge head's buffers for a whole keep-alive.
		p.head, p.line = nil, nil
	}
	p.head = p.head[:0]
	p.raw = 0
	p.sawLine = false
	p.empty = 0
	p.method, p.target = p.method[:0], p.target[:0]
	p.nfields, p.fieldLen = 0, 0
	p.stripped = false
	p.lastField = -1
	p.lastName = p.lastName[:0]
	for i := range p.fields {
		p.fields[i].val = p.fields[i].val[:0]
	}
	p.fields = p.fields[:0]
	p.left, p.body, p.crlf = 0, 0, 0
	p.ntrailer, p.trailLen = 0, 0
}

// passthrough is how many bytes may go straight from the wire to the
// reader: the rest of a Content-Length body or of a chunk's data.
func (p *parser) passthrough() int64 {
	if (p.st == stBody || p.st == stChunkData) && len(p.line) == 0 {
		return p.left
	}
	return 0
}

// passed accounts for n bytes that went straight through.
func (p *parser) passed(n int) {
	p.left -= int64(n)
	if p.left > 0 {
		return
	}
	if p.st == stBody {
		p.resetHead()
	} else {
		p.st = stChunkCRLF
	}
}

// feed parses in and appends what is valid to out. It returns how much of
// in it consumed; on a *Reject or *BodyError it stops at the fault.
func (p *parser) feed(in, out []byte) (int, []byte, error) {
	n := 0
	for n < len(in) {
		switch p.st {
		case stBody, stChunkData:
			k := int64(len(in) - n)
			if k > p.left {
				k = p.left
			}
			out = append(out, in[n:n+int(k)]...)
			n += int(k)
			p.passed(int(k))
		case stChunkCRLF:
			c := in[n]
			if c != "\r\n"[p.crlf] {
				return n, out, &BodyError{http.StatusBadRequest, "Invalid chunk terminator is not '\\r\\n': " + repr(in[n:min(len(in), n+2)])}
			}
			out = append(out, c)
			n++
			if p.crlf++; p.crlf == 2 {
				p.crlf = 0
				p.st = stChunkLine
			}
		default:
			i := bytes.IndexByte(in[n:], '\n')
			end := len(in)
			if i >= 0 {
				end = n + i + 1
			}
			first := in[n]
			if len(p.line) > 0 {
				first = p.line[0]
			}
			if err := p.checkLength(len(p.line)+end-n, first); err != nil {
				return n, out, p.withLine(err, p.line, in[n:end])
			}
			p.line = append(p.line, in[n:end]...)
			n = end
			if i < 0 {
				continue
			}
			var err error
			out, err = p.onLine(p.line, out)
			if err != nil {
				err = p.withLine(err, p.line, nil)
			}
			p.line = p.line[:0]
			if err != nil {
				return n, out, err
			}
		}
	}
	return n, out, nil
}

// withLine records in a *Reject the request line it refuses: the head's
// first line once the request line was read, else the line being read
// (line and then more, which may be a part of it), without its line break
// and cut to maxLogLine bytes.
func (p *parser) withLine(err error, line, more []byte) error {
	r, ok := err.(*Reject)
	if !ok || r.Line != "" {
		return err
	}
	if p.sawLine {
		line, _, _ = bytes.Cut(p.head, []byte("\n"))
		more = nil
	}
	b := make([]byte, 0, min(len(line)+len(more), maxLogLine))
	b = append(b, line[:min(len(line), maxLogLine)]...)
	b = append(b, more[:min(len(more), maxLogLine-len(b))]...)
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	r.Line = string(bytes.TrimSuffix(b, []byte("\r")))
	return err
}

// checkLength bounds the line being read, which has size bytes so far
// (its LF included when complete) and starts with first.
func (p *parser) checkLength(size int, first byte) error {
	switch p.st {
	case stHead:
		if p.raw+size > p.lim.head {
			return tooLarge("max buffer headers")
		}
		if !p.sawLine {
			if size > p.lim.line+2 {
				return &Reject{Status: http.StatusBadRequest, Msg: "Request Line is too large (" + strconv.Itoa(size-2) + " > " + strconv.Itoa(p.lim.line) + ")"}
			}
		} else if size > 2 {
			// A field line, or a continuation counted with its field.
			limit := p.lim.fieldSize
			if first == ' ' || first == '\t' {
				limit -= p.fieldLen
			}
			if size > limit {
				return tooLarge("limit request headers fields size")
			}
		}
	case stChunkLine:
		if size > maxChunkLine {
			return &BodyError{http.StatusBadRequest, "Invalid chunk size: line too long"}
		}
	case stTrailer:
		if p.trailLen+size > p.lim.head || size > p.lim.fieldSize {
			return &BodyError{http.StatusRequestHeaderFieldsTooLarge, "Error parsing trailers: 'limit request headers fields size'"}
		}
	}
	return nil
}

func tooLarge(what string) *Reject {
	return &Reject{Status: http.StatusRequestHeaderFieldsTooLarge, Msg: "Error parsing headers: '" + what + "'"}
}

func badHeader(name []byte) *Reject {
	return &Reject{Status: http.StatusBadRequest, Msg: "Invalid HTTP Header: " + repr(name)}
}

// onLine handles one complete line, its LF included.
func (p *parser) onLine(line, out []byte) ([]byte, error) {
	switch p.st {
	case stChunkLine:
		return p.chunkLine(line, out)
	case stTrailer:
		return p.trailerLine(line, out)
	}
	// RFC 9112 section 2.2 lets a recipient accept a bare LF; gunicorn does
	// not, and neither does the guard: a proxy that splits lines
	// differently would see other requests.
	crlf := len(line) >= 2 && line[len(line)-2] == '\r'
	content := line[:len(line)-1]
	if crlf {
		content = line[:len(line)-2]
	}
	if !p.sawLine {
		if !crlf {
			return out, &Reject{Status: http.StatusBadRequest, Msg: "Invalid Request Line 'Invalid HTTP request line: " + repr(content) + " (bare LF)'"}
		}
		if len(content) == 0 {
			// RFC 9112 section 2.2: ignore empty lines before a request.
			if p.empty++; p.empty > 8 {
				return out, &Reject{Status: http.StatusBadRequest, Msg: "Invalid Request Line 'Invalid HTTP request line: '''"}
			}
			p.raw += len(line)
			return out, nil
		}
		if len(content) > p.lim.line {
			return out, &Reject{Status: http.StatusBadRequest, Msg: "Request Line is too large (" + strconv.Itoa(len(content)) + " > " + strconv.Itoa(p.lim.line) + ")"}
		}
		if err := p.requestLine(content); err != nil {
			return out, err
		}
		p.sawLine = true
		p.raw += len(line)
		p.head = append(p.head, line...)
		return out, nil
	}
	p.raw += len(line)
	if !crlf {
		return out, badHeader(append([]byte("bare LF in "), content...))
	}
	if len(content) == 0 {
		return p.endHead(out)
	}
	if content[0] == ' ' || content[0] == '\t' {
		return out, p.fold(line, content)
	}
	return out, p.field(line, content)
}

// requestLine checks method SP request-target SP HTTP-version, as
// gunicorn: single spaces, a conventional method, HTTP/1.0 or HTTP/1.1.
func (p *parser) requestLine(content []byte) error {
	bad := func() error {
		return &Reject{Status: http.StatusBadRequest, Msg: "Invalid Request Line 'Invalid HTTP request line: " + repr(content) + "'"}
	}
	method, rest, ok1 := bytes.Cut(content, []byte(" "))
	target, version, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 {
		return bad()
	}
	// gunicorn refuses lower case and "#" in a method, and methods shorter
	// than 3 or longer than 20 characters; RFC 9110 wants a token.
	if len(method) < 3 || len(method) > 20 || !isToken(method) || bytes.ContainsAny(method, "#abcdefghijklmnopqrstuvwxyz") {
		return &Reject{Status: http.StatusBadRequest, Msg: "Invalid Method 'Invalid HTTP method: " + repr(method) + "'"}
	}
	if len(target) == 0 {
		return bad()
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return bad()
		}
	}
	switch string(version) {
	case "HTTP/1.1":
		p.minor = 1
	case "HTTP/1.0":
		p.minor = 0
	default:
		return &Reject{Status: http.StatusBadRequest, Msg: "Invalid HTTP Version 'Invalid HTTP Version: " + repr(version) + "'"}
	}
	// The four request-target forms of RFC 9112 section 3.2, parsed as
	// net/http will: "*" only for OPTIONS (the app gets it, PATH_INFO
	// "*", as in gunicorn), authority-form only for CONNECT.
	switch {
	case target[0] == '/' && bytes.IndexByte(target, '%') < 0:
		// The origin form without escapes, the common case: with the
		// control characters and spaces refused above, url.ParseRequestURI
		// cannot fail on it, so it is not run.
	case string(target) == "*":
		if string(method) != "OPTIONS" {
			return bad()
		}
	case string(method) == "CONNECT" && target[0] != '/':
		if _, err := url.ParseRequestURI("http://" + string(target)); err != nil {
			return bad()
		}
	default:
		u, err := url.ParseRequestURI(string(target))
		if err != nil || (target[0] != '/' && u.Scheme == "") {
			return bad()
		}
	}
	p.method = append(p.method[:0], method...)
	p.target = append(p.target[:0], target...)
	return nil
}

// field checks a header field line.
func (p *parser) field(line, content []byte) error {
	if p.nfields >= p.lim.fields {
		return tooLarge("limit request headers fields")
	}
	p.nfields++
	p.fieldLen = len(line)
	if p.fieldLen > p.lim.fieldSize {
		return tooLarge("limit request headers fields size")
	}
	name, value, ok := bytes.Cut(content, []byte(":"))
	if !ok || len(name) == 0 {
		return badHeader(content)
	}
	// A token: no whitespace before the colon (RFC 9112 section 5.1), no
	// control characters, no NUL, no non-ASCII.
	if !isToken(name) {
		return &Reject{Status: http.StatusBadRequest, Msg: "Invalid HTTP header name: " + repr(name)}
	}
	value = trimOWS(value)
	if !validValue(value) {
		return badHeader(upper(name))
	}
	if p.lim.refuseUnderscore && bytes.IndexByte(name, '_') >= 0 && (p.lim.forwarder == nil || !p.lim.forwarder(string(name))) {
		return &Reject{Status: http.StatusBadRequest, Msg: "Invalid HTTP header name: " + repr(upper(name))}
	}
	p.lastName = append(p.lastName[:0], name...)
	p.lastField = -1
	if p.stripped = hasPrefixFold(name, rejectPrefix); p.stripped {
		return nil
	}
	p.head = append(p.head, line...)
	kind := kindOther
	switch {
	case equalFold(name, "content-length"):
		kind = kindContentLength
	case equalFold(name, "transfer-encoding"):
		kind = kindTransferEncoding
	case equalFold(name, "host"):
		kind = kindHost
	case equalFold(name, "expect"):
		kind = kindExpect
	}
	if kind != kindOther {
		p.lastField = len(p.fields)
		if len(p.fields) < cap(p.fields) {
			p.fields = p.fields[:len(p.fields)+1]
		} else {
			p.fields = append(p.fields, field{})
		}
		f := &p.fields[p.lastField]
		f.kind = kind
		f.name = appendUpper(f.name[:0], name) // the field's buffer is reused
		f.val = append(f.val[:0], value...)
	}
	return nil
}

// fold handles an obs-fold line (RFC 9112 section 5.2): refused unless
// permitted; then its value continues the previous field's.
func (p *parser) fold(line, content []byte) error {
	if p.nfields == 0 {
		return badHeader(content)
	}
	if !p.lim.obsFold {
		return &Reject{Status: http.StatusBadRequest, Msg: "Obsolete line folding is unacceptable: " + repr(upper(p.lastName))}
	}
	p.fieldLen += len(line)
	if p.fieldLen > p.lim.fieldSize {
		return tooLarge("limit request headers fields size")
	}
	value := trimOWS(content)
	if !validValue(value) {
		return badHeader(upper(p.lastName))
	}
	if p.stripped {
		return nil
	}
	p.head = append(p.head, line...)
	if p.lastField >= 0 {
		f := &p.fields[p.lastField]
		f.val = append(append(f.val, ' '), value...)
	}
	return nil
}

// endHead checks the head as a whole and passes it on.
func (p *parser) endHead(out []byte) ([]byte, error) {
	var hosts, expects int
	var cl []byte
	ncl := 0
	chunked, te := false, false
	for i := range p.fields {
		f := &p.fields[i]
		switch f.kind {
		case kindHost:
			hosts++
			if !validHost(f.val) {
				return out, badHeader(f.name)
			}
		case kindExpect:
			expects++
			// RFC 9110 section 10.1.1: 100-continue is the only
			// expectation; anything else gets 417.
			if expects > 1 || !equalFold(f.val, "100-continue") {
				return out, &Reject{Status: http.StatusExpectationFailed, Msg: "Unsupported expectation: " + repr(f.val)}
			}
		case kindContentLength:
			// RFC 9110 section 8.6: 1*DIGIT; duplicates must agree.
			if len(f.val) == 0 || !allDigits(f.val) || (ncl > 0 && !bytes.Equal(f.val, cl)) {
				return out, badHeader(f.name)
			}
			ncl++
			cl = f.val
		case kindTransferEncoding:
			te = true
			// A list of codings, compared as exact tokens: no Unicode
			// whitespace stripping ("\xa0chunked" is not chunked).
			for elem := range bytes.SplitSeq(f.val, []byte(",")) {
				elem = trimOWS(elem)
				if equalFold(elem, "chunked") {
					if chunked { // chunked twice: stacked framing
						return out, badHeader(f.name)
					}
					chunked = true
					continue
				}
				if chunked { // chunked must be the last coding
					return out, badHeader(f.name)
				}
				return out, &Reject{Status: http.StatusNotImplemented, Msg: "Unsupported transfer coding: " + repr(f.val)}
			}
		}
	}
	if hosts > 1 {
		return out, badHeader([]byte("HOST"))
	}
	if hosts == 0 && p.minor == 1 {
		// RFC 9112 section 3.2: a server MUST answer 400.
		return out, &Reject{Status: http.StatusBadRequest, Msg: "Missing Host header"}
	}
	var length int64
	if te {
		if p.minor == 0 {
			// RFC 9112 section 6.1: chunked framing is HTTP/1.1.
			return out, badHeader([]byte("TRANSFER-ENCODING"))
		}
		if ncl > 0 {
			// RFC 9112 section 6.1: ought to be handled as an error.
			return out, badHeader([]byte("CONTENT-LENGTH"))
		}
	} else if ncl > 0 {
		n, err := strconv.ParseUint(string(cl), 10, 63)
		if err != nil {
			return out, badHeader([]byte("CONTENT-LENGTH"))
		}
		length = int64(n)
		if p.lim.body > 0 && length > p.lim.body {
			return out, &Reject{Status: http.StatusRequestEntityTooLarge, Msg: "Request body is too large (" + strconv.FormatInt(length, 10) + " > " + strconv.FormatInt(p.lim.body, 10) + ")"}
		}
	}
	out = append(out, p.head...)
	out = append(out, '\r', '\n')
	switch {
	case chunked:
		p.st = stChunkLine
	case length > 0:
		p.st = stBody
		p.left = length
	default:
		p.resetHead()
	}
	return out, nil
}

// chunkLine checks chunk-size [ chunk-ext ] CRLF (RFC 9112 section 7.1):
// hex digits only (no "0x", sign or whitespace), extensions as tokens or
// quoted strings.
func (p *parser) chunkLine(line, out []byte) ([]byte, error) {
	bad := func() error {
		return &BodyError{http.StatusBadRequest, "Invalid chunk size: " + repr(line)}
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return out, bad()
	}
	content := line[:len(line)-2]
	size, ext, _ := bytes.Cut(content, []byte(";"))
	if len(size) == 0 || len(size) > 16 || !validChunkExt(ext, len(ext) < len(content)-len(size)) {
		return out, bad()
	}
	var n uint64
	for _, c := range size {
		d, ok := unhex(c)
		if !ok {
			return out, bad()
		}
		n = n<<4 | uint64(d)
	}
	if n > math.MaxInt64 {
		return out, bad()
	}
	if p.lim.body > 0 && p.body+int64(n) > p.lim.body {
		return out, &BodyError{http.StatusRequestEntityTooLarge, "Request body is too large (over " + strconv.FormatInt(p.lim.body, 10) + ")"}
	}
	if n == 0 {
		// The last chunk is held back with the trailer section until
		// that is valid: net/http reports an error reading a trailer as
		// its own, but passes on one reading a chunk line.
		p.head = append(p.head[:0], line...)
		p.st = stTrailer
		return out, nil
	}
	out = append(out, line...)
	p.body += int64(n)
	p.left = int64(n)
	p.st = stChunkData
	return out, nil
}

// trailerLine checks a trailer field, or the empty line that ends the
// request.
func (p *parser) trailerLine(line, out []byte) ([]byte, error) {
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return out, &BodyError{http.StatusBadRequest, "Invalid trailer: bare LF"}
	}
	content := line[:len(line)-2]
	p.trailLen += len(line)
	if len(content) == 0 {
		out = append(append(out, p.head...), line...)
		p.resetHead()
		return out, nil
	}
	bad := func() error { return &BodyError{http.StatusBadRequest, "Invalid trailer: " + repr(content)} }
	if content[0] == ' ' || content[0] == '\t' {
		return out, bad() // obs-fold: no reason to accept it in trailers
	}
	if p.ntrailer++; p.ntrailer > p.lim.fields {
		return out, &BodyError{http.StatusRequestHeaderFieldsTooLarge, "Error parsing trailers: 'limit request headers fields'"}
	}
	name, value, ok := bytes.Cut(content, []byte(":"))
	if !ok || !isToken(name) || !validValue(trimOWS(value)) {
		return out, bad()
	}
	// RFC 9110 section 6.5.1: no framing or routing fields in trailers.
	for _, f := range []string{"content-length", "transfer-encoding", "host", "trailer"} {
		if equalFold(name, f) {
			return out, bad()
		}
	}
	if p.lim.refuseUnderscore && bytes.IndexByte(name, '_') >= 0 {
		return out, bad()
	}
	if !hasPrefixFold(name, rejectPrefix) {
		p.head = append(p.head, line...)
	}
	return out, nil
}

// validChunkExt checks *( ";" token [ "=" ( token / quoted-string ) ] ),
// ext being what follows the first ";" (present says there was one).
func validChunkExt(ext []byte, present bool) bool {
	if !present {
		return true
	}
	for {
		// ext starts just after a ";".
		i := 0
		for i < len(ext) && isTokenByte(ext[i]) {
			i++
		}
		if i == 0 {
			return false
		}
		ext = ext[i:]
		if len(ext) > 0 && ext[0] == '=' {
			ext = ext[1:]
			if len(ext) > 0 && ext[0] == '"' {
				j, ok := quotedString(ext)
				if !ok {
					return false
				}
				ext = ext[j:]
			} else {
				i = 0
				for i < len(ext) && isTokenByte(ext[i]) {
					i++
				}
				if i == 0 {
					return false
				}
				ext = ext[i:]
			}
		}
		if len(ext) == 0 {
			return true
		}
		if ext[0] != ';' {
			return false
		}
		ext = ext[1:]
	}
}

// quotedString returns the length of the quoted-string at the start of b.
func quotedString(b []byte) (int, bool) {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			i++
			if i >= len(b) || !(b[i] == '\t' || (b[i] >= 0x20 && b[i] != 0x7f)) {
				return 0, false
			}
		case c == '\t' || (c >= 0x20 && c != 0x7f):
		default:
			return 0, false
		}
	}
	return 0, false
}

// tokenChars marks tchar (RFC 9110 section 5.6.2).
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isTokenByte(c byte) bool { return tokenChars[c] }

// IsToken reports whether s is a token (RFC 9110 section 5.6.2), the
// syntax of a header field name.
func IsToken(s string) bool { return isToken(s) }

func isToken[T string | []byte](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if !tokenChars[b[i]] {
			return false
		}
	}
	return true
}

// validValue checks field-value bytes: VCHAR, SP, HTAB and obs-text; no
// other control character (RFC 9110 section 5.5).
func validValue(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts what net/http's Host check does: the bytes of a
// reg-name, IP literal and port (RFC 3986).
func validHost(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case bytes.IndexByte([]byte("!$%&'()*+,-.:;=[]_~"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// trimOWS trims SP and HTAB only: no Unicode whitespace.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares ASCII case-insensitively: "chunKed" is chunked,
// "chunKed" with a Kelvin sign is not.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && equalFold(b[:len(prefix)], prefix)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func upper(b []byte) []byte { return appendUpper(make([]byte, 0, len(b)), b) }

// appendUpper appends b, in ASCII upper case, to dst.
func appendUpper(dst, b []byte) []byte {
	for _, c := range b {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// repr quotes client bytes for a message as Python's repr does for a
// string: printable ASCII, the rest escaped, at most 64 bytes shown.
func repr(b []byte) string {
	const max = 64
	cut := len(b) > max
	if cut {
		b = b[:max]
	}
	s := make([]byte, 0, len(b)+8)
	s = append(s, '\'')
	for _, c := range b {
		switch {
		case c == '\'' || c == '\\':
			s = append(s, '\\', c)
		case c == '\t':
			s = append(s, `\t`...)
		case c == '\r':
			s = append(s, `\r`...)
		case c == '\n':
			s = append(s, `\n`...)
		case c < 0x20 || c >= 0x7f:
			s = append(s, '\\', 'x', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			s = append(s, c)
		}
	}
	s = append(s, '\'')
	if cut {
		s = append(s, "..."...)
	}
	return string(s)
}
