package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Environ encodes the CGI part of a WSGI environ as the serialization of a
// Python dict of str that Python's marshal.loads decodes in one C call.
//
// Every value is a byte string that the runtime sees as its latin-1 decoding,
// as PEP 3333 wants for "native strings": pure ASCII strings use marshal's
// ASCII types, anything else is re-encoded so that each byte becomes the code
// point of the same value.
type Environ struct {
	buf []byte
}

// Marshal type codes used by the encoder (CPython Python/marshal.c).
const (
	marshalDict       = '{'
	marshalNull       = '0'
	marshalShortASCII = 'z' // 1-byte length, ASCII bytes
	marshalASCII      = 'a' // 4-byte length, ASCII bytes
	marshalUnicode    = 'u' // 4-byte length, UTF-8 bytes
)

// Reset starts a new environ, reusing the buffer.
func (e *Environ) Reset() { e.buf = append(e.buf[:0], marshalDict) }

// ResetAfter starts a new dict whose encoding is appended to prefix, so a
// frame can be built in one buffer: Bytes then returns prefix followed by
// the dict.
func (e *Environ) ResetAfter(prefix []byte) { e.buf = append(prefix, marshalDict) }

// Add appends one key and value.
func (e *Environ) Add(key, value string) {
	if len(e.buf) == 0 {
		e.buf = append(e.buf, marshalDict)
	}
	e.buf = appendLatin1(e.buf, key)
	e.buf = appendLatin1(e.buf, value)
}

// Bytes terminates the dict and returns its encoding. The Environ must be
// Reset before it is used again.
func (e *Environ) Bytes() []byte {
	if len(e.buf) == 0 {
		e.buf = append(e.buf, marshalDict)
	}
	e.buf = append(e.buf, marshalNull)
	return e.buf
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func appendLatin1(dst []byte, s string) []byte {
	if isASCII(s) {
		if len(s) < 256 {
			dst = append(dst, marshalShortASCII, byte(len(s)))
		} else {
			dst = append(dst, marshalASCII)
			dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
		}
		return append(dst, s...)
	}
	n := len(s)
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			n++
		}
	}
	dst = append(dst, marshalUnicode)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	for i := 0; i < len(s); i++ {
		dst = utf8.AppendRune(dst, rune(s[i]))
	}
	return dst
}

// DecodeEnviron decodes what Environ produced back into ordered pairs of
// byte strings (each code point back to one byte). It exists for tests and
// tools; the runtime decodes with marshal.loads.
func DecodeEnviron(b []byte) ([][2]string, error) {
	if len(b) < 2 || b[0] != marshalDict {
		return nil, errors.New("protocol: environ is not a marshal dict")
	}
	var out [][2]string
	p := b[1:]
	for {
		if len(p) == 0 {
			return nil, errors.New("protocol: environ truncated")
		}
		if p[0] == marshalNull {
			if len(p) != 1 {
				return nil, errors.New("protocol: trailing bytes after environ")
			}
			return out, nil
		}
		var k, v string
		var err error
		if k, p, err = decodeString(p); err != nil {
			return nil, err
		}
		if v, p, err = decodeString(p); err != nil {
			return nil, err
		}
		out = append(out, [2]string{k, v})
	}
}

func decodeString(p []byte) (string, []byte, error) {
	if len(p) == 0 {
		return "", nil, errors.New("protocol: environ truncated")
	}
	var n int
	code := p[0]
	switch code {
	case marshalShortASCII:
		if len(p) < 2 {
			return "", nil, errors.New("protocol: environ truncated")
		}
		n, p = int(p[1]), p[2:]
	case marshalASCII, marshalUnicode:
		if len(p) < 5 {
			return "", nil, errors.New("protocol: environ truncated")
		}
		n, p = int(binary.LittleEndian.Uint32(p[1:])), p[5:]
	default:
		return "", nil, fmt.Errorf("protocol: unexpected marshal type %q in environ", code)
	}
	if n > len(p) {
		return "", nil, errors.New("protocol: environ truncated")
	}
	s, rest := p[:n], p[n:]
	if code != marshalUnicode {
		if !isASCII(string(s)) {
			return "", nil, errors.New("protocol: non-ASCII byte in an ASCII string")
		}
		return string(s), rest, nil
	}
	out := make([]byte, 0, n)
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size <= 1 || r > 0xff {
			return "", nil, errors.New("protocol: environ string is not latin-1")
		}
		out = append(out, byte(r))
		s = s[size:]
	}
	return string(out), rest, nil
}

// ResponseHead is the decoded head of a Start frame.
type ResponseHead struct {
	// Status is the full status line from the app, such as "200 OK".
	Status string
	// Code is the numeric status code.
	Code int
	// Headers are name/value pairs in the order the app gave them.
	Headers [][2]string
}

// AppendStart appends a Start frame: the status, the headers and the first
// body bytes. It is used by tests and tools; the runtime builds Start frames
// itself.
func AppendStart(dst []byte, f Flags, id uint32, status string, headers [][2]string, body []byte) []byte {
	head := []byte(status)
	for _, h := range headers {
		head = append(head, 0)
		head = append(head, h[0]...)
		head = append(head, 0)
		head = append(head, h[1]...)
	}
	n := 4 + len(head) + len(body)
	dst = AppendHeader(dst, Start, f, id, n)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(head)))
	dst = append(dst, head...)
	return append(dst, body...)
}

// ParseStart decodes a Start payload into the response head and the first
// body bytes. The head is the status line and the header names and values,
// latin-1, separated by NUL bytes. It refuses a status that is not three
// digits and a reason, and header names or values that could not be sent
// as they are (CR, LF, NUL, or a name that is not an RFC 9110 token).
func ParseStart(p []byte) (ResponseHead, []byte, error) {
	if len(p) < 4 {
		return ResponseHead{}, nil, errors.New("protocol: start frame too short")
	}
	n := int(binary.LittleEndian.Uint32(p))
	if n > len(p)-4 {
		return ResponseHead{}, nil, errors.New("protocol: start frame head truncated")
	}
	head, body := p[4:4+n], p[4+n:]
	// One copy of the head: the status, names and values are slices of it.
	rest := string(head)
	seps := strings.Count(rest, "\x00")
	if seps%2 != 0 {
		return ResponseHead{}, nil, errors.New("protocol: start frame has a header name without a value")
	}
	status, rest, _ := strings.Cut(rest, "\x00")
	code, err := parseStatus(status)
	if err != nil {
		return ResponseHead{}, nil, err
	}
	h := ResponseHead{Status: status, Code: code}
	if seps > 0 {
		h.Headers = make([][2]string, 0, seps/2)
	}
	for range seps / 2 {
		var name, value string
		name, rest, _ = strings.Cut(rest, "\x00")
		value, rest, _ = strings.Cut(rest, "\x00")
		if !validHeaderName(name) {
			return ResponseHead{}, nil, fmt.Errorf("protocol: invalid header name %q", name)
		}
		if !validHeaderValue(value) {
			return ResponseHead{}, nil, fmt.Errorf("protocol: invalid value for header %q: %q", name, value)
		}
		h.Headers = append(h.Headers, [2]string{name, value})
	}
	return h, body, nil
}

func parseStatus(s string) (int, error) {
	if len(s) < 3 || (len(s) > 3 && s[3] != ' ') {
		return 0, fmt.Errorf("protocol: invalid status %q", s)
	}
	code, err := strconv.Atoi(s[:3])
	if err != nil || code < 100 || code > 999 || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("protocol: invalid status %q", s)
	}
	if !validHeaderValue(s) {
		return 0, fmt.Errorf("protocol: invalid status %q", s)
	}
	return code, nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validHeaderValue refuses control characters other than horizontal tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
