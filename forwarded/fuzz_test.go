package forwarded

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseAllowList: parsing never panics, "*" trusts everything, and
// every address listed is trusted.
func FuzzParseAllowList(f *testing.F) {
	for _, s := range []string{"127.0.0.1,::1", "*", "10.0.0.0/8, fd00::/8", "::ffff:10.0.0.1", "::ffff:10.0.0.0/104", "1.2.3.4/33", "fe80::1%eth0", "", ",,"} {
		f.Add(s, "10.1.2.3")
	}
	f.Fuzz(func(t *testing.T, list, ip string) {
		l, err := ParseAllowList(list)
		if err != nil {
			return
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return
		}
		got := l.AllowsIP(a)
		if l.all && !got {
			t.Fatalf("%q does not allow %s", list, a)
		}
		if a.Zone() == "" && !a.Is4In6() {
			if single, err := ParseAllowList(ip); err == nil && !single.AllowsIP(a) {
				t.Fatalf("%q does not allow itself", ip)
			}
		}
	})
}

// FuzzScheme: DefaultSchemeHeaders.Scheme never panics and answers http or https, or the base
// with an error.
func FuzzScheme(f *testing.F) {
	f.Add("https", "on", "ssl")
	f.Add("http", "on", "")
	f.Fuzz(func(t *testing.T, proto, ssl, protocol string) {
		h := http.Header{}
		for name, v := range map[string]string{"X-Forwarded-Proto": proto, "X-Forwarded-Ssl": ssl, "X-Forwarded-Protocol": protocol} {
			if v != "" {
				h.Set(name, v)
			}
		}
		s, err := DefaultSchemeHeaders.Scheme(h, "base")
		switch {
		case err != nil && s != "base":
			t.Fatalf("error %v with scheme %q", err, s)
		case err == nil && len(h) == 0 && s != "base":
			t.Fatalf("no headers gave %q", s)
		case err == nil && len(h) > 0 && s != "http" && s != "https":
			t.Fatalf("scheme %q", s)
		}
	})
}

// FuzzParseSchemeHeaders: ParseSchemeHeaders never panics, and headers it
// accepts each make a request carrying them https.
func FuzzParseSchemeHeaders(f *testing.F) {
	f.Add(`{"X-FORWARDED-PROTO": "https"}`)
	f.Add(`{"x-scheme": "on", "CloudFront-Forwarded-Proto": "https"}`)
	f.Add(`{}`)
	f.Add(`{"a b": "c"}`)
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := ParseSchemeHeaders(s)
		if err != nil {
			return
		}
		for i, name := range sh.names {
			value := sh.values[i]
			if name != http.CanonicalHeaderKey(name) {
				t.Fatalf("name %q is not canonical", name)
			}
			got, err := sh.Scheme(http.Header{name: {value}}, "base")
			if err != nil || got != "https" && strings.Trim(value, " \t") == value {
				t.Fatalf("%s: %q gives %q, %v", name, value, got, err)
			}
		}
	})
}
