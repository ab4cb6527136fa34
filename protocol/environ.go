package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// EnvironKeys are the environ keys with a place of their own in the
// encoding, in that order (docs/protocol.md §2): the ones the worker sends
// with nearly every request. The runtime builds a request's environ by
// pairing these with the values it decodes, which costs far less than
// decoding a key string per entry.
var EnvironKeys = [...]string{
	"REQUEST_METHOD",
	"SCRIPT_NAME",
	"PATH_INFO",
	"QUERY_STRING",
	"RAW_URI",
	"SERVER_PROTOCOL",
	"SERVER_SOFTWARE",
	"REMOTE_ADDR",
	"REMOTE_PORT",
	"SERVER_NAME",
	"SERVER_PORT",
	"HTTP_HOST",
	"wsgi.url_scheme",
}

// environKey returns the index of key in EnvironKeys, or -1.
func environKey(key string) int {
	switch key {
	case "REQUEST_METHOD":
		return 0
	case "SCRIPT_NAME":
		return 1
	case "PATH_INFO":
		return 2
	case "QUERY_STRING":
		return 3
	case "RAW_URI":
		return 4
	case "SERVER_PROTOCOL":
		return 5
	case "SERVER_SOFTWARE":
		return 6
	case "REMOTE_ADDR":
		return 7
	case "REMOTE_PORT":
		return 8
	case "SERVER_NAME":
		return 9
	case "SERVER_PORT":
		return 10
	case "HTTP_HOST":
		return 11
	case "wsgi.url_scheme":
		return 12
	}
	return -1
}

// Environ encodes the CGI part of a WSGI environ in a form that Python's
// marshal.loads decodes in one C call: a tuple of the values of
// EnvironKeys (None for a key not sent), a dict of the other entries, and
// the bit mask of the keys not sent (docs/protocol.md §2).
//
// Every value is a byte string that the runtime sees as its latin-1 decoding,
// as PEP 3333 wants for "native strings": pure ASCII strings use marshal's
// ASCII types, anything else is re-encoded so that each byte becomes the code
// point of the same value.
//
// The zero value is an empty environ. An Environ keeps its buffer across
// Reset, for reuse.
type Environ struct {
	values [len(EnvironKeys)]string
	set    uint32 // bit i: values[i] was added
	other  []byte // the other entries, encoded as the dict's body
}

// Marshal type codes used by the encoder (CPython Python/marshal.c).
const (
	marshalSmallTuple = ')' // 1-byte count, then the items
	marshalNone       = 'N'
	marshalInt        = 'i' // 4-byte signed integer
	marshalDict       = '{'
	marshalNull       = '0' // the end of a dict
	marshalShortASCII = 'z' // 1-byte length, ASCII bytes
	marshalASCII      = 'a' // 4-byte length, ASCII bytes
	marshalUnicode    = 'u' // 4-byte length, UTF-8 bytes
)

// environItems is the length of the encoded tuple: the values of
// EnvironKeys, the dict of the others, the mask.
const environItems = len(EnvironKeys) + 2

// allKeys is the mask with a bit for every key of EnvironKeys.
const allKeys = 1<<len(EnvironKeys) - 1

// Reset empties the environ, keeping its buffer.
func (e *Environ) Reset() { *e = Environ{other: e.other[:0]} }

// Add sets key to value. A key added twice keeps its last value, as in a
// Python dict.
func (e *Environ) Add(key, value string) {
	if i := environKey(key); i >= 0 {
		e.values[i] = value
		e.set |= 1 << i
		return
	}
	e.other = appendLatin1(e.other, key)
	e.other = appendLatin1(e.other, value)
}

// AppendTo appends the environ's encoding to dst and returns the result.
func (e *Environ) AppendTo(dst []byte) []byte {
	dst = append(dst, marshalSmallTuple, byte(environItems))
	for i, v := range e.values {
		if e.set&(1<<i) == 0 {
			dst = append(dst, marshalNone)
			continue
		}
		dst = appendLatin1(dst, v)
	}
	dst = append(dst, marshalDict)
	dst = append(dst, e.other...)
	dst = append(dst, marshalNull, marshalInt)
	return binary.LittleEndian.AppendUint32(dst, ^e.set&allKeys)
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

// DecodeEnviron decodes what Environ produced into the entries the
// runtime's environ gets, as ordered pairs of byte strings (each code point
// back to one byte): the keys of EnvironKeys that were sent, in that
// order, then the other entries in the order they were added. It exists
// for tests and tools; the runtime decodes with marshal.loads. It refuses
// anything Environ does not produce.
func DecodeEnviron(b []byte) ([][2]string, error) {
	if len(b) < 2 || b[0] != marshalSmallTuple || int(b[1]) != environItems {
		return nil, fmt.Errorf("protocol: environ is not a marshal tuple of %d items", environItems)
	}
	var out [][2]string
	var absent uint32
	p := b[2:]
	for i, key := range EnvironKeys {
		if len(p) > 0 && p[0] == marshalNone {
			absent |= 1 << i
			p = p[1:]
			continue
		}
		var v string
		var err error
		if v, p, err = decodeString(p); err != nil {
			return nil, err
		}
		out = append(out, [2]string{key, v})
	}
	if len(p) == 0 || p[0] != marshalDict {
		return nil, errors.New("protocol: environ has no dict of other entries")
	}
	p = p[1:]
	for {
		if len(p) == 0 {
			return nil, errors.New("protocol: environ truncated")
		}
		if p[0] == marshalNull {
			p = p[1:]
			break
		}
		var k, v string
		var err error
		if k, p, err = decodeString(p); err != nil {
			return nil, err
		}
		if environKey(k) >= 0 {
			return nil, fmt.Errorf("protocol: environ key %q belongs in the tuple", k)
		}
		if v, p, err = decodeString(p); err != nil {
			return nil, err
		}
		out = append(out, [2]string{k, v})
	}
	if len(p) != 5 || p[0] != marshalInt {
		return nil, errors.New("protocol: environ has no mask of absent keys, or bytes after it")
	}
	if mask := binary.LittleEndian.Uint32(p[1:]); mask != absent {
		return nil, fmt.Errorf("protocol: environ mask %#x does not match its absent keys %#x", mask, absent)
	}
	return out, nil
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
