package forwarded

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestAllowList(t *testing.T) {
	tests := []struct {
		list    string
		bad     bool
		allowed []string
		denied  []string
	}{
		{list: "127.0.0.1,::1", allowed: []string{"127.0.0.1:5", "[::1]:80", "[::ffff:127.0.0.1]:9", "[::1%lo]:1", "@", ""}, denied: []string{"127.0.0.2:5", "10.0.0.1:1", "[::2]:1"}},
		{list: "*", allowed: []string{"127.0.0.2:5", "[2001:db8::1]:1", "8.8.8.8:53"}},
		{list: " 10.0.0.0/8 , fd00::/8 ", allowed: []string{"10.255.0.1:1", "[fd12::1]:1", "[::ffff:10.1.1.1]:1"}, denied: []string{"11.0.0.1:1", "[fe00::1]:1"}},
		{list: "10.1.2.3/8", allowed: []string{"10.200.0.1:1"}}, // host bits are masked
		{list: "::ffff:10.0.0.0/104", allowed: []string{"10.3.3.3:1"}, denied: []string{"11.0.0.1:1"}},
		{list: "", denied: []string{"127.0.0.1:1", "[::1]:1"}},
		{list: "127.0.0.1", allowed: []string{"127.0.0.1"}, denied: []string{"127.0.0.11"}},
		{list: "fe80::1%eth0", bad: true},
		{list: "localhost", bad: true},
		{list: "10.0.0.0/33", bad: true},
		{list: "10.0.0.1, nonsense", bad: true},
	}
	for _, tt := range tests {
		l, err := ParseAllowList(tt.list)
		if (err != nil) != tt.bad {
			t.Fatalf("ParseAllowList(%q): %v", tt.list, err)
		}
		if tt.bad {
			continue
		}
		if l.String() != tt.list {
			t.Errorf("String() = %q, want %q", l.String(), tt.list)
		}
		check := func(addr string, want bool) {
			t.Helper()
			if got := l.AllowsString(addr); got != want {
				t.Errorf("%q AllowsString(%q) = %v, want %v", tt.list, addr, got, want)
			}
			var a net.Addr
			if addr == "@" || addr == "" {
				a = &net.UnixAddr{Name: addr, Net: "unix"}
			} else if ta, err := net.ResolveTCPAddr("tcp", addr); err == nil {
				a = ta
			} else {
				return
			}
			if got := l.Allows(a); got != want {
				t.Errorf("%q Allows(%v) = %v, want %v", tt.list, a, got, want)
			}
		}
		for _, a := range tt.allowed {
			check(a, true)
		}
		for _, a := range tt.denied {
			check(a, false)
		}
	}
	var none *AllowList
	if none.Allows(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}) {
		t.Error("a nil list allows an IP peer")
	}
}

func TestScheme(t *testing.T) {
	tests := []struct {
		name    string
		headers [][2]string
		base    string
		want    string
		err     bool
	}{
		{name: "none", base: "http", want: "http"},
		{name: "none on TLS", base: "https", want: "https"},
		{name: "proto https", headers: [][2]string{{"X-Forwarded-Proto", "https"}}, base: "http", want: "https"},
		{name: "proto upper-case name", headers: [][2]string{{"X-FORWARDED-PROTO", "https"}}, base: "http", want: "https"},
		{name: "proto http on TLS", headers: [][2]string{{"X-Forwarded-Proto", "http"}}, base: "https", want: "http"},
		{name: "value is case-sensitive", headers: [][2]string{{"X-Forwarded-Proto", "HTTPS"}}, base: "http", want: "http"},
		{name: "ssl on", headers: [][2]string{{"X-Forwarded-Ssl", "on"}}, base: "http", want: "https"},
		{name: "protocol ssl", headers: [][2]string{{"X-Forwarded-Protocol", "ssl"}}, base: "http", want: "https"},
		{name: "all agree", headers: [][2]string{{"X-Forwarded-Protocol", "ssl"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Ssl", "on"}}, base: "http", want: "https"},
		{name: "all agree on http", headers: [][2]string{{"X-Forwarded-Proto", "http"}, {"X-Forwarded-Ssl", "off"}}, base: "https", want: "http"},
		{name: "conflict", headers: [][2]string{{"X-Forwarded-Proto", "https"}, {"X-Forwarded-Ssl", "off"}}, base: "http", err: true},
		{name: "conflict other way", headers: [][2]string{{"X-Forwarded-Ssl", "on"}, {"X-Forwarded-Proto", "http"}}, base: "http", err: true},
		{name: "repeated header conflict", headers: [][2]string{{"X-Forwarded-Proto", "https"}, {"X-Forwarded-Proto", "http"}}, base: "http", err: true},
		{name: "list is not https", headers: [][2]string{{"X-Forwarded-Proto", "https, http"}}, base: "http", want: "http"},
		{name: "other headers ignored", headers: [][2]string{{"Forwarded", "proto=https"}, {"X-Forwarded-Scheme", "https"}}, base: "http", want: "http"},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, kv := range tt.headers {
			h.Add(kv[0], kv[1])
		}
		got, err := DefaultSchemeHeaders.Scheme(h, tt.base)
		if tt.err {
			if !errors.Is(err, ErrConflictingSchemeHeaders) {
				t.Errorf("%s: err = %v, want a conflict", tt.name, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: Scheme = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestHeaderNames(t *testing.T) {
	tests := []struct {
		in         string
		err        bool
		empty      bool
		has, hasnt []string
	}{
		{in: "SCRIPT_NAME,PATH_INFO", has: []string{"SCRIPT_NAME", "Script_name", "script_name", "PATH_INFO"}, hasnt: []string{"REMOTE_USER", "SCRIPT-NAME", "SCRIPT_NAMES", ""}},
		{in: " remote_user , ", has: []string{"REMOTE_USER", "Remote_user"}, hasnt: []string{"SCRIPT_NAME"}},
		{in: "*", has: []string{"SCRIPT_NAME", "X_Anything"}},
		{in: "", empty: true, hasnt: []string{"SCRIPT_NAME"}},
		{in: " , ", empty: true, hasnt: []string{"SCRIPT_NAME"}},
		{in: "SCRIPT NAME", err: true},
		{in: "SCRIPT_NAME,X:Y", err: true},
		{in: "SCRIPT_NAMÉ", err: true},
	}
	for _, tt := range tests {
		n, err := ParseHeaderNames(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseHeaderNames(%q): no error", tt.in)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ParseHeaderNames(%q): %v", tt.in, err)
		}
		if n.Empty() != tt.empty {
			t.Errorf("ParseHeaderNames(%q).Empty() = %v", tt.in, n.Empty())
		}
		for _, name := range tt.has {
			if !n.Has(name) {
				t.Errorf("ParseHeaderNames(%q).Has(%q) = false", tt.in, name)
			}
		}
		for _, name := range tt.hasnt {
			if n.Has(name) {
				t.Errorf("ParseHeaderNames(%q).Has(%q) = true", tt.in, name)
			}
		}
	}
	var none *HeaderNames
	if none.Has("SCRIPT_NAME") || !none.Empty() {
		t.Error("a nil list holds a name")
	}
}

func TestSchemeHeaders(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		headers [][2]string
		want    string // "" for a conflict
		err     string // ParseSchemeHeaders' error, a substring
	}{
		{name: "default", config: "", headers: [][2]string{{"X-Forwarded-Ssl", "on"}}, want: "https"},
		{name: "custom header", config: `{"X-SCHEME": "https"}`, headers: [][2]string{{"X-Scheme", "https"}}, want: "https"},
		{name: "custom drops the defaults", config: `{"X-SCHEME": "https"}`, headers: [][2]string{{"X-Forwarded-Proto", "https"}}, want: "http-base"},
		{name: "names in any case", config: `{"cloudfront-forwarded-proto": "https"}`, headers: [][2]string{{"CloudFront-Forwarded-Proto", "https"}}, want: "https"},
		{name: "other value is http", config: `{"X-SCHEME": "https"}`, headers: [][2]string{{"X-Scheme", "http"}}, want: "http"},
		{name: "conflict", config: `{"X-SCHEME": "https", "X-FORWARDED-PROTO": "https"}`, headers: [][2]string{{"X-Scheme", "https"}, {"X-Forwarded-Proto", "http"}}, want: ""},
		{name: "empty object: none", config: `{}`, headers: [][2]string{{"X-Forwarded-Proto", "https"}}, want: "http-base"},
		{name: "not an object", config: `["X-SCHEME"]`, err: "want a JSON object"},
		{name: "null", config: `null`, err: "want a JSON object"},
		{name: "value not a string", config: `{"X-SCHEME": true}`, err: "want a JSON object"},
		{name: "bad name", config: `{"X SCHEME": "https"}`, err: `invalid header name "X SCHEME"`},
		{name: "name twice", config: `{"X-SCHEME": "https", "x-scheme": "on"}`, err: "given twice"},
	}
	for _, tt := range tests {
		sh, err := ParseSchemeHeaders(tt.config)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: ParseSchemeHeaders(%q) = %v, want an error with %q", tt.name, tt.config, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: ParseSchemeHeaders(%q): %v", tt.name, tt.config, err)
		}
		h := http.Header{}
		for _, kv := range tt.headers {
			h.Add(kv[0], kv[1])
		}
		got, err := sh.Scheme(h, "http-base")
		if tt.want == "" {
			if !errors.Is(err, ErrConflictingSchemeHeaders) {
				t.Errorf("%s: Scheme = %q, %v; want a conflict", tt.name, got, err)
			}
		} else if err != nil || got != tt.want {
			t.Errorf("%s: Scheme = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}
