package logs

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultAccessFormat is gunicorn's default --access-logformat, the
// Apache combined log format.
const DefaultAccessFormat = `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`

// AccessFormat is a compiled --access-logformat: text with gunicorn's
// atoms in Python's %-mapping syntax, such as %(h)s, %(D)d, %(a).40s or
// %({x-forwarded-for}i)s. The nil *AccessFormat is DefaultAccessFormat.
type AccessFormat struct {
	parts []accessPart
}

// accessPart is literal text or one atom with its padding.
type accessPart struct {
	lit    string
	isAtom bool
	atom   string // "h", "s", …; for {name}i, {name}o, {name}e: "i", "o", "e"
	name   string // the header or environ name, lower case
	left   bool   // flag '-': pad on the right
	zero   bool   // flag '0': pad numbers with zeros
	width  int
	prec   int // -1: none; a string is cut to this many characters
}

// ParseAccessFormat compiles an --access-logformat. Atoms gunicorn does
// not know are logged as "-", as gunicorn logs them; text Python's
// %-formatting would reject (a lone %, a conversion other than s, d or
// i) is an error. The default format compiles to nil.
func ParseAccessFormat(s string) (*AccessFormat, error) {
	if s == DefaultAccessFormat {
		return nil, nil
	}
	f := &AccessFormat{}
	var lit strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			lit.WriteByte('%')
			i += 2
			continue
		}
		p, n, err := parseAtom(s[i:])
		if err != nil {
			return nil, fmt.Errorf("at character %d: %w", i+1, err)
		}
		if lit.Len() > 0 {
			f.parts = append(f.parts, accessPart{lit: lit.String()})
			lit.Reset()
		}
		f.parts = append(f.parts, p)
		i += n
	}
	if lit.Len() > 0 {
		f.parts = append(f.parts, accessPart{lit: lit.String()})
	}
	return f, nil
}

// parseAtom parses one %(key)[flags][width][.precision][length]conversion
// at the start of s and returns it and its length.
func parseAtom(s string) (accessPart, int, error) {
	p := accessPart{isAtom: true, prec: -1}
	if len(s) < 2 || s[1] != '(' {
		return p, 0, fmt.Errorf("%% must be followed by (name), as in %%(h)s, or be doubled as %%%%")
	}
	end := strings.IndexByte(s, ')')
	if end < 0 {
		return p, 0, fmt.Errorf("%%( without its )")
	}
	key := s[2:end]
	i := end + 1
	for ; i < len(s) && strings.IndexByte("-0 +#", s[i]) >= 0; i++ {
		p.left = p.left || s[i] == '-'
		p.zero = p.zero || s[i] == '0'
	}
	start := i
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
	}
	if i > start {
		p.width, _ = strconv.Atoi(s[start:i])
	}
	if i < len(s) && s[i] == '.' {
		i++
		start = i
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		}
		p.prec, _ = strconv.Atoi(s[start:i]) // "%(a).s" is precision 0, as in Python
	}
	if p.width > 1024 || p.prec > 1024 {
		return p, 0, fmt.Errorf("%%(%s) is padded or cut to over 1024 characters", key)
	}
	if i < len(s) && strings.IndexByte("hlL", s[i]) >= 0 {
		i++ // a length modifier, which Python ignores
	}
	if i >= len(s) {
		return p, 0, fmt.Errorf("%%(%s) has no conversion, as in %%(%s)s", key, key)
	}
	if strings.IndexByte("sdi", s[i]) < 0 {
		return p, 0, fmt.Errorf("%%(%s)%c: only the conversions s, d and i are supported", key, s[i])
	}
	i++
	p.atom = key
	if len(key) >= 3 && key[0] == '{' && key[len(key)-2] == '}' && strings.IndexByte("ioe", key[len(key)-1]) >= 0 {
		p.atom, p.name = key[len(key)-1:], strings.ToLower(key[1:len(key)-2])
	}
	return p, i, nil
}

// Append appends the entry in the format, and a newline, to dst. String
// values have quotes, backslashes and control bytes escaped, so a client
// cannot forge a line.
func (f *AccessFormat) Append(dst []byte, e *AccessEntry) []byte {
	if f == nil {
		return AppendAccess(dst, e)
	}
	for _, p := range f.parts {
		if !p.isAtom {
			dst = append(dst, p.lit...)
			continue
		}
		v, num := e.atom(p.atom, p.name)
		if !num && p.prec >= 0 && utf8.RuneCountInString(v) > p.prec {
			v = string([]rune(v)[:p.prec])
		}
		pad := p.width - utf8.RuneCountInString(v)
		if pad > 0 && !p.left {
			fill := byte(' ')
			if p.zero && num {
				fill = '0'
			}
			for range pad {
				dst = append(dst, fill)
			}
		}
		dst = appendEscaped(dst, v)
		if pad > 0 && p.left {
			for range pad {
				dst = append(dst, ' ')
			}
		}
	}
	return append(dst, '\n')
}

// atom is the value of one atom, and whether it is a number.
func (e *AccessEntry) atom(atom, name string) (string, bool) {
	us := e.Duration.Microseconds()
	switch atom {
	case "h":
		return dash(e.RemoteAddr), false
	case "l":
		return "-", false
	case "u":
		return dash(e.User), false
	case "t":
		return e.Time.Format("[02/Jan/2006:15:04:05 -0700]"), false
	case "r":
		return e.requestLine(), false
	case "s":
		return strconv.Itoa(e.Status), true
	case "m":
		return e.Method, false
	case "U":
		return e.Path, false
	case "q":
		return e.Query, false
	case "H":
		return e.Proto, false
	case "b":
		if e.sentNothing() {
			return "-", false
		}
		return strconv.FormatInt(e.Bytes, 10), true
	case "B":
		return strconv.FormatInt(e.Bytes, 10), true
	case "f":
		return dash(e.Referer), false
	case "a":
		return dash(e.UserAgent), false
	case "T":
		return strconv.FormatInt(us/1e6, 10), true
	case "D":
		return strconv.FormatInt(us, 10), true
	case "M":
		return strconv.FormatInt(us/1e3, 10), true
	case "L":
		return fmt.Sprintf("%d.%06d", us/1e6, us%1e6), false
	case "p":
		return "<" + strconv.Itoa(e.Pid) + ">", false
	case "i":
		return lastValue(e.Header, name), false
	case "o":
		return lastValue(e.ResponseHeader, name), false
	case "e":
		return e.environ(name), false
	}
	return "-", false
}

// environ is the value of a variable of the request's WSGI environ, by its
// name in lower case: the CGI variables and headers gorn puts there (not
// what the app adds); "-" for any other.
func (e *AccessEntry) environ(name string) string {
	switch name {
	case "remote_addr":
		return e.RemoteAddr
	case "remote_port":
		return dash(e.RemotePort)
	case "request_method":
		return e.Method
	case "script_name":
		return e.ScriptName
	case "path_info":
		return e.Path
	case "query_string":
		return e.Query
	case "raw_uri":
		return e.RequestURI
	case "server_protocol":
		return e.Proto
	case "wsgi.url_scheme":
		return dash(e.Scheme)
	case "content_type":
		return environValue(e.Header, "Content-Type")
	case "content_length":
		return lastValue(e.Header, "Content-Length") // duplicates are identical (the guard checked)
	case "proxy_protocol":
		return dash(e.ProxyProtocol)
	case "proxy_addr":
		return dash(e.ProxyAddr)
	case "proxy_port":
		return dash(e.ProxyPort)
	}
	if h, ok := strings.CutPrefix(name, "http_"); ok {
		return environValue(e.Header, strings.ReplaceAll(h, "_", "-"))
	}
	return "-"
}

// sentNothing reports whether no response went out at all (a client that
// left before it: 499), which the b atom logs as "-"; an empty body is 0,
// as gunicorn logs it.
func (e *AccessEntry) sentNothing() bool { return e.Status == 499 && e.Bytes == 0 }

// environValue is header name's variable in the environ: its values joined
// with commas, as the handler joins them; "-" when there is none.
func environValue(h http.Header, name string) string {
	vs := h.Values(name)
	if len(vs) == 0 {
		return "-"
	}
	return strings.Join(vs, ",")
}

// lastValue is the last value of header name in h, as gunicorn logs it;
// "-" when there is none.
func lastValue(h http.Header, name string) string {
	vs := h.Values(name)
	if len(vs) == 0 {
		// A response header keeps the app's spelling (ETag): look for
		// it in any case.
		for k, kvs := range h {
			if strings.EqualFold(k, name) && len(kvs) > 0 {
				vs = kvs
			}
		}
		if len(vs) == 0 {
			return "-"
		}
	}
	return vs[len(vs)-1]
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// BasicUser is the user name of a request's HTTP Basic Authorization
// header, as gunicorn's access log shows it (%(u)s); "" when there is
// none.
func BasicUser(authorization string) string {
	scheme, cred, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "basic") {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return ""
	}
	user, _, _ := strings.Cut(string(b), ":")
	if !utf8.ValidString(user) {
		return ""
	}
	return user
}
