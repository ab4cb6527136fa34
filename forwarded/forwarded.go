// Package forwarded decides what gorn believes of a front-end proxy: which
// peers are trusted (gunicorn's --forwarded-allow-ips and
// --proxy-allow-from lists of IPs, CIDRs and "*"), the URL scheme that a
// trusted peer's secure scheme headers (X-Forwarded-Proto and friends)
// give a request, and which header names with "_" a trusted peer may pass
// to the app (--forwarder-headers).
package forwarded

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
)

// AllowList is a parsed list of trusted peers. The zero value and nil
// trust no IP peer. Peers without an IP address (unix sockets) are always
// trusted, as gunicorn does: only something on the same host can connect
// to them.
type AllowList struct {
	all      bool
	prefixes []netip.Prefix
	text     string
}

// ParseAllowList parses a comma-separated list of IP addresses ("10.0.0.1",
// "::1"), networks in CIDR notation ("10.0.0.0/8", "fd00::/8") and "*" (any
// peer). Blank entries are ignored; an empty list trusts no IP peer.
func ParseAllowList(s string) (*AllowList, error) {
	l := &AllowList{text: s}
	for _, item := range listItems(s) {
		switch {
		case item == "*":
			l.all = true
		case strings.Contains(item, "/"):
			p, err := netip.ParsePrefix(item)
			if err != nil || p.Addr().Zone() != "" {
				return nil, fmt.Errorf("invalid network %q: want an address in CIDR notation, e.g. 10.0.0.0/8", item)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			l.prefixes = append(l.prefixes, p.Masked())
		default:
			a, err := netip.ParseAddr(item)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("invalid IP address %q", item)
			}
			a = a.Unmap()
			l.prefixes = append(l.prefixes, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return l, nil
}

// MustParseAllowList is ParseAllowList for lists known to be valid; it
// panics on an error.
func MustParseAllowList(s string) *AllowList {
	l, err := ParseAllowList(s)
	if err != nil {
		panic(err)
	}
	return l
}

// String returns the list as it was given.
func (l *AllowList) String() string {
	if l == nil {
		return ""
	}
	return l.text
}

// AllowsIP reports whether the peer with IP address a is trusted. An
// IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4 peer)
// is matched as the IPv4 address it holds.
func (l *AllowList) AllowsIP(a netip.Addr) bool {
	if l == nil || !a.IsValid() {
		return false
	}
	if l.all {
		return true
	}
	a = a.Unmap().WithZone("")
	for _, p := range l.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Allows reports whether the peer at addr is trusted. Addresses that are
// not IP addresses (unix sockets) are trusted.
func (l *AllowList) Allows(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ok && l.AllowsIP(ip)
	case *net.UDPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ok && l.AllowsIP(ip)
	case *net.UnixAddr:
		return true
	case nil:
		return false
	}
	return l.AllowsString(addr.String())
}

// AllowsString is Allows for an address in its string form, as
// http.Request.RemoteAddr holds it: "host:port" or a bare IP is checked;
// what holds no IP address (a unix socket peer's name: "", "@" or a path)
// is trusted.
func (l *AllowList) AllowsString(addr string) bool {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return l.AllowsIP(ap.Addr())
	}
	if a, err := netip.ParseAddr(addr); err == nil {
		return l.AllowsIP(a)
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return l.AllowsIP(a)
		}
	}
	return !looksLikeIP(addr)
}

// looksLikeIP is a conservative guard for AllowsString: text that holds an
// IP address we failed to parse must not count as a unix socket.
func looksLikeIP(s string) bool {
	return strings.ContainsAny(s, ".:") && !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "@")
}

// SchemeHeaders are secure scheme headers (gunicorn's
// secure_scheme_headers): header names, each with the value that means
// https. The zero value and nil hold none.
type SchemeHeaders struct {
	names  []string // canonical (http.CanonicalHeaderKey), sorted
	values []string
}

// DefaultSchemeHeadersJSON are gunicorn's default secure_scheme_headers,
// as ParseSchemeHeaders takes them.
const DefaultSchemeHeadersJSON = `{"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"}`

// DefaultSchemeHeaders are gunicorn's default secure_scheme_headers:
// X-Forwarded-Protocol: ssl, X-Forwarded-Proto: https and
// X-Forwarded-Ssl: on.
var DefaultSchemeHeaders = mustParseSchemeHeaders(DefaultSchemeHeadersJSON)

// ParseSchemeHeaders parses secure scheme headers given as a JSON object
// of header names (in any case) to values; "" means DefaultSchemeHeaders
// and "{}" none. A name that is not an HTTP token, a name given twice, or
// a value that is not a string is an error.
func ParseSchemeHeaders(s string) (*SchemeHeaders, error) {
	if strings.TrimSpace(s) == "" {
		return DefaultSchemeHeaders, nil
	}
	return parseSchemeHeaders(s)
}

// mustParseSchemeHeaders parses a JSON object of headers known to be
// valid; it panics on an error.
func mustParseSchemeHeaders(s string) *SchemeHeaders {
	sh, err := parseSchemeHeaders(s)
	if err != nil {
		panic(err)
	}
	return sh
}

func parseSchemeHeaders(s string) (*SchemeHeaders, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, fmt.Errorf(`want a JSON object of header names to values, such as {"X-FORWARDED-PROTO": "https"}, not %s`, s)
	}
	canon := make(map[string]string, len(m))
	for name, v := range m {
		if !isToken(name) {
			return nil, fmt.Errorf("invalid header name %q", name)
		}
		c := http.CanonicalHeaderKey(name)
		if _, dup := canon[c]; dup {
			return nil, fmt.Errorf("header %q is given twice", c)
		}
		canon[c] = v
	}
	sh := &SchemeHeaders{}
	for name := range canon {
		sh.names = append(sh.names, name)
	}
	sort.Strings(sh.names)
	for _, name := range sh.names {
		sh.values = append(sh.values, canon[name])
	}
	return sh, nil
}

// ErrConflictingSchemeHeaders is returned by Scheme when the secure scheme
// headers disagree; gunicorn answers such a request with 400
// (InvalidSchemeHeaders).
var ErrConflictingSchemeHeaders = errors.New("contradictory scheme headers")

// Scheme returns the URL scheme that the secure scheme headers in h give,
// or base when there are none. Call it only for requests from a trusted
// peer. Each header (and each repeat of one) counts: a value equal to the
// configured one (case-sensitive, as gunicorn; surrounding blanks
// ignored) says https, any other value says http, and two that disagree
// are an error.
func (sh *SchemeHeaders) Scheme(h http.Header, base string) (string, error) {
	if sh == nil {
		return base, nil
	}
	scheme := ""
	for i, name := range sh.names {
		want := sh.values[i]
		for _, v := range h[name] {
			s := "http"
			if strings.Trim(v, " \t") == want {
				s = "https"
			}
			if scheme != "" && s != scheme {
				return base, ErrConflictingSchemeHeaders
			}
			scheme = s
		}
	}
	if scheme == "" {
		return base, nil
	}
	return scheme, nil
}

// HeaderNames is a parsed --forwarder-headers list (gunicorn's
// forwarder_headers): the request header names containing "_" that a
// trusted peer may send to the app, such as SCRIPT_NAME. The zero value
// and nil hold no name.
type HeaderNames struct {
	all   bool
	names []string // upper-case
}

// ParseHeaderNames parses a comma-separated list of header names, in any
// case, or "*" (every name). Blank entries are ignored; an empty list
// holds no name. A name that is not an HTTP token is an error.
func ParseHeaderNames(s string) (*HeaderNames, error) {
	n := &HeaderNames{}
	for _, item := range listItems(s) {
		switch {
		case item == "*":
			n.all = true
		case !isToken(item):
			return nil, fmt.Errorf("invalid header name %q", item)
		default:
			n.names = append(n.names, strings.ToUpper(item))
		}
	}
	return n, nil
}

// Has reports whether the list holds the header name, compared without
// regard to case.
func (n *HeaderNames) Has(name string) bool {
	if n == nil {
		return false
	}
	if n.all {
		return true
	}
	for _, m := range n.names {
		if strings.EqualFold(m, name) {
			return true
		}
	}
	return false
}

// Empty reports whether the list holds no name.
func (n *HeaderNames) Empty() bool {
	return n == nil || !n.all && len(n.names) == 0
}

// listItems splits a comma-separated list into its items, trimmed of
// blanks, leaving out empty ones.
func listItems(s string) []string {
	var items []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2),
// which is what a header name is.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return s != ""
}
