package logs

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// formatEntry is an entry with every field set.
func formatEntry() AccessEntry {
	return AccessEntry{
		RemoteAddr:     "10.0.0.7",
		User:           "alice",
		Time:           stamp,
		Method:         "POST",
		RequestURI:     "/app/items%20x?id=3",
		Proto:          "HTTP/1.1",
		Status:         201,
		Bytes:          1234,
		Referer:        "http://example.com/",
		UserAgent:      "curl/8.5.0",
		RemotePort:     "51234",
		Path:           "/items x",
		Query:          "id=3",
		ScriptName:     "/app",
		Scheme:         "https",
		Duration:       2*time.Second + 345678*time.Microsecond,
		Pid:            4242,
		Header:         http.Header{"X-Forwarded-For": {"1.1.1.1", "2.2.2.2"}, "Content-Type": {"text/plain"}, "X-Empty": {""}},
		ResponseHeader: http.Header{"Content-Type": {"application/json"}, "X-Quote": {`say "hi"`}},
	}
}

func TestAccessFormatAppend(t *testing.T) {
	tests := []struct {
		format string
		edit   func(e *AccessEntry)
		want   string
	}{
		{format: "%(h)s %(l)s %(u)s %(t)s", want: `10.0.0.7 - alice [24/Nov/2026:08:15:20 +0000]`},
		{format: `"%(r)s" %(s)s %(m)s %(U)s %(q)s %(H)s`, want: `"POST /app/items%20x?id=3 HTTP/1.1" 201 POST /items x id=3 HTTP/1.1`},
		{format: "%(b)s %(B)s %(f)s %(a)s", want: `1234 1234 http://example.com/ curl/8.5.0`},
		{format: "%(b)s %(B)s", edit: func(e *AccessEntry) { e.Bytes = 0 }, want: `0 0`}, // as gunicorn's, for a 204 or a 304
		{format: "%(b)s %(B)s", edit: func(e *AccessEntry) { e.Bytes, e.Status = 0, 499 }, want: `- 0`},
		{format: "%(T)s %(D)s %(M)s %(L)s", want: `2 2345678 2345 2.345678`},
		{format: "%(L)s", edit: func(e *AccessEntry) { e.Duration = 1500 * time.Nanosecond }, want: `0.000001`},
		{format: "%(p)s", want: `<4242>`},
		{format: "%({x-forwarded-for}i)s %({X-FORWARDED-FOR}i)s %({x-missing}i)s [%({x-empty}i)s]", want: `2.2.2.2 2.2.2.2 - []`},
		{format: "%({content-type}o)s %({x-quote}o)s %({x-missing}o)s", want: `application/json say \"hi\" -`},
		{format: "%({remote_addr}e)s:%({REMOTE_PORT}e)s %({wsgi.url_scheme}e)s %({script_name}e)s%({path_info}e)s", want: `10.0.0.7:51234 https /app/items x`},
		{format: "%({proxy_protocol}e)s %({PROXY_ADDR}e)s %({proxy_port}e)s", want: `- - -`},
		{format: "%({proxy_protocol}e)s %({PROXY_ADDR}e)s %({proxy_port}e)s", edit: func(e *AccessEntry) {
			e.ProxyProtocol, e.ProxyAddr, e.ProxyPort = "TCP6", "2001:db8::2", "443"
		}, want: `TCP6 2001:db8::2 443`},
		{format: "%({http_x_forwarded_for}e)s %({content_type}e)s %({raw_uri}e)s %({query_string}e)s", want: `1.1.1.1,2.2.2.2 text/plain /app/items%20x?id=3 id=3`}, // the environ's value: both fields, as the app sees it
		{format: "%({server_software}e)s %({no_such}e)s", want: `- -`},
		{format: "%(z)s %(hh)s %({x}z)s %()s", want: `- - - -`},
		{format: "%(u)s %(f)s %(a)s %(h)s", edit: func(e *AccessEntry) { e.User, e.Referer, e.UserAgent, e.RemoteAddr = "", "", "", "" }, want: `- - - -`},
		{format: "100%% %(s)d %(s)i", want: `100% 201 201`},
		{format: "[%(s)5s] [%(s)-5s] [%(s)05d] [%(h)05s]", want: `[  201] [201  ] [00201] [10.0.0.7]`},
		{format: "[%(a).4s] [%(a)8.4s] [%(a)-8.4s] [%(a).0s]", want: `[curl] [    curl] [curl    ] []`},
		{format: "%(a).2s", edit: func(e *AccessEntry) { e.UserAgent = "ünï" }, want: `ün`},
		{format: "%(s)ld %(s)hs", want: `201 201`},
		{format: `"%(r)s" %(m)s %(H)s`, edit: func(e *AccessEntry) {
			e.RequestLine, e.Method, e.Proto = "BAD LINE\x01", "BAD", ""
		}, want: `"BAD LINE\x01" BAD `},
		{format: "no atoms at all", want: `no atoms at all`},
		{format: "", want: ``},
		{format: "%(a)s", edit: func(e *AccessEntry) { e.UserAgent = "x\n10.0.0.1 - - \"forged\"" }, want: `x\x0a10.0.0.1 - - \"forged\"`},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			f, err := ParseAccessFormat(tt.format)
			if err != nil {
				t.Fatalf("ParseAccessFormat(%q): %v", tt.format, err)
			}
			if f == nil {
				t.Fatalf("ParseAccessFormat(%q) = nil (the default)", tt.format)
			}
			e := formatEntry()
			if tt.edit != nil {
				tt.edit(&e)
			}
			got := string(f.Append([]byte("previous\n"), &e))
			if want := "previous\n" + tt.want + "\n"; got != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

func TestParseAccessFormatErrors(t *testing.T) {
	tests := []struct{ format, want string }{
		{"%s", "at character 1: % must be followed by (name)"},
		{"x %", "at character 3: % must be followed by (name)"},
		{"%(h", "%( without its )"},
		{"%(h)", "%(h) has no conversion"},
		{"%(h)-10", "%(h) has no conversion"},
		{"%(h)r", "%(h)r: only the conversions s, d and i"},
		{"%(D)f", "%(D)f: only the conversions s, d and i"},
		{"%(a)5000s", "padded or cut to over 1024 characters"},
		{"%(a).2000s", "padded or cut to over 1024 characters"},
	}
	for _, tt := range tests {
		f, err := ParseAccessFormat(tt.format)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseAccessFormat(%q) = %v, %v; want an error with %q", tt.format, f, err, tt.want)
		}
	}
}

// TestDefaultAccessFormat: gunicorn's default format compiles to the fast
// path, and a format the same but for one space renders the same line
// through the general one.
func TestDefaultAccessFormat(t *testing.T) {
	f, err := ParseAccessFormat(DefaultAccessFormat)
	if err != nil || f != nil {
		t.Fatalf("ParseAccessFormat(default) = %v, %v; want nil, nil", f, err)
	}
	general, err := ParseAccessFormat(DefaultAccessFormat + " ")
	if err != nil || general == nil {
		t.Fatalf("ParseAccessFormat(default + space) = %v, %v", general, err)
	}
	for _, edit := range []func(e *AccessEntry){
		func(e *AccessEntry) {},
		func(e *AccessEntry) { e.User, e.Referer, e.UserAgent, e.Bytes, e.RemoteAddr = "", "", "", 0, "" },
		func(e *AccessEntry) { e.UserAgent, e.User = "a \"b\" \\ \x01", `c"d` },
	} {
		e := formatEntry()
		edit(&e)
		fast := string(f.Append(nil, &e))
		slow := strings.TrimSuffix(string(general.Append(nil, &e)), " \n") + "\n"
		if fast != slow {
			t.Errorf("default format:\nfast    %q\ngeneral %q", fast, slow)
		}
	}
}

func TestBasicUser(t *testing.T) {
	tests := []struct{ header, want string }{
		{"Basic YWxpY2U6c2VjcmV0", "alice"},   // alice:secret
		{"basic YWxpY2U6c2VjcmV0", "alice"},   // the scheme in any case
		{"BASIC  YWxpY2U6c2VjcmV0 ", "alice"}, // spaces around the credentials
		{"Basic Ym9i", "bob"},                 // bob, no colon
		{"Basic OnB3", ""},                    // ":pw": no user
		{"Basic !!!", ""},                     // not base64
		{"Basic /w==", ""},                    // not UTF-8
		{"Bearer abc.def", ""},
		{"Basic", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := BasicUser(tt.header); got != tt.want {
			t.Errorf("BasicUser(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

// FuzzParseAccessFormat: any format either fails to compile or renders
// one line, with every atom's value escaped.
func FuzzParseAccessFormat(f *testing.F) {
	for _, s := range []string{DefaultAccessFormat, "%(h)s %({x-forwarded-for}i)s", "%%(h)s %(s)05d", "%(a)-10.3s", "%(", "%(h)", "%(D)ld", "%({a}e)s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, format string) {
		af, err := ParseAccessFormat(format)
		if err != nil {
			return
		}
		e := formatEntry()
		e.UserAgent = "evil\nline"
		out := string(af.Append(nil, &e))
		if !strings.HasSuffix(out, "\n") {
			t.Fatalf("%q rendered %q: no newline at the end", format, out)
		}
		if strings.Count(out, "\n") > 1+strings.Count(format, "\n") {
			t.Fatalf("%q rendered %q: a value broke the line", format, out)
		}
	})
}
