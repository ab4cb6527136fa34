package worker

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/forwarded"
	"github.com/gorn-project/gorn/httpguard"
	"github.com/gorn-project/gorn/protocol"
	pyruntime "github.com/gorn-project/gorn/worker/runtime"
)

// readRequest parses a raw HTTP/1.1 request as the server would.
func readRequest(t *testing.T, raw, remote string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("ReadRequest(%q): %v", raw, err)
	}
	r.RemoteAddr = remote
	return r
}

func TestEnviron(t *testing.T) {
	software := "gorn/" + config.Version
	tests := []struct {
		name       string
		raw        string
		remote     string
		scriptName string
		pathInfo   string // "" means r.URL.Path less the request's SCRIPT_NAME
		unix       bool   // served on a unix socket: SERVER_NAME from Host
		trusted    string // --forwarded-allow-ips; "" trusts no peer
		forwarders string // --forwarder-headers
		headerMap  httpguard.HeaderMap
		want       map[string]string
	}{
		{
			name:   "GET with query",
			raw:    "GET /path/to?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
			remote: "127.0.0.1:54321",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/path/to", "QUERY_STRING": "x=1&y=%20",
				"RAW_URI": "/path/to?x=1&y=%20", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "54321", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
				"HTTP_HOST": "example.com:8080", "HTTP_USER_AGENT": "curl/8", "HTTP_ACCEPT": "*/*",
			},
		},
		{
			name:   "HTTP/1.0 without Host uses the listener",
			raw:    "GET / HTTP/1.0\r\n\r\n",
			remote: "127.0.0.1:1000",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
				"RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.0", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "1000", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
			},
		},
		{
			name:   "Host without port",
			raw:    "HEAD /x HTTP/1.1\r\nHost: example.com\r\n\r\n",
			remote: "127.0.0.1:1000",
			want: map[string]string{
				"REQUEST_METHOD": "HEAD", "SCRIPT_NAME": "", "PATH_INFO": "/x", "QUERY_STRING": "",
				"RAW_URI": "/x", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "1000", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
				"HTTP_HOST": "example.com",
			},
		},
		{
			name:   "IPv6",
			raw:    "GET / HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n",
			remote: "[::1]:4444",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
				"RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "::1", "REMOTE_PORT": "4444", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
				"HTTP_HOST": "[::1]:9000",
			},
		},
		{
			name:   "unix socket peer",
			unix:   true,
			raw:    "GET / HTTP/1.1\r\nHost: app.local\r\n\r\n",
			remote: "@",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
				"RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "", "SERVER_NAME": "app.local", "SERVER_PORT": "80", "HTTP_HOST": "app.local", // as gunicorn's
			},
		},
		{
			name:    "unix socket behind a proxy that ends TLS: the https port",
			unix:    true,
			trusted: "127.0.0.1",
			raw:     "GET / HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-Proto: https\r\n\r\n",
			remote:  "@",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
				"RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "", "SERVER_NAME": "app.example", "SERVER_PORT": "443", "HTTP_HOST": "app.example", // as gunicorn's
				"HTTP_X_FORWARDED_PROTO": "https",
			},
		},
		{
			name:    "unix socket behind a proxy that ends TLS, Host with a port",
			unix:    true,
			trusted: "127.0.0.1",
			raw:     "GET / HTTP/1.1\r\nHost: app.example:8443\r\nX-Forwarded-Proto: https\r\n\r\n",
			remote:  "@",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
				"RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "", "SERVER_NAME": "app.example", "SERVER_PORT": "8443", "HTTP_HOST": "app.example:8443",
				"HTTP_X_FORWARDED_PROTO": "https",
			},
		},
		{
			name:   "unix socket, no Host",
			unix:   true,
			raw:    "GET / HTTP/1.0\r\n\r\n",
			remote: "@",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
				"RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.0", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "", "SERVER_NAME": "/run/gorn.sock", "SERVER_PORT": "80", // gunicorn's port is ""
			},
		},
		{
			name:       "script name",
			raw:        "GET /app/x/y?q HTTP/1.1\r\nHost: h\r\n\r\n",
			remote:     "127.0.0.1:1",
			scriptName: "/app",
			pathInfo:   "/x/y",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/app", "PATH_INFO": "/x/y", "QUERY_STRING": "q",
				"RAW_URI": "/app/x/y?q", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "1", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "h",
			},
		},
		{
			name:       "a trusted peer's forwarder headers, SCRIPT_NAME over the environment's",
			raw:        "GET /mount/x HTTP/1.1\r\nHost: h\r\nScript_Name: /mount/\r\nPath_Info: /p\r\nX_Other: o\r\n\r\n",
			remote:     "127.0.0.1:5",
			scriptName: "/env",
			trusted:    "127.0.0.1",
			forwarders: "SCRIPT_NAME,PATH_INFO",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/mount", "PATH_INFO": "/x", "QUERY_STRING": "",
				"RAW_URI": "/mount/x", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "h",
				"HTTP_SCRIPT_NAME": "/mount/", "HTTP_PATH_INFO": "/p",
			},
		},
		{
			name:       "an untrusted peer's forwarder headers are dropped",
			raw:        "GET /mount/x HTTP/1.1\r\nHost: h\r\nScript_Name: /mount\r\nPath_Info: /p\r\n\r\n",
			remote:     "10.0.0.9:6",
			trusted:    "127.0.0.1",
			forwarders: "SCRIPT_NAME,PATH_INFO",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/mount/x", "QUERY_STRING": "",
				"RAW_URI": "/mount/x", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "10.0.0.9", "REMOTE_PORT": "6", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "h",
			},
		},
		{
			name:       "a unix socket peer is trusted; the last SCRIPT_NAME counts",
			raw:        "GET /b/x HTTP/1.1\r\nHost: h\r\nSCRIPT_NAME: /a\r\nSCRIPT_NAME: /b\r\n\r\n",
			remote:     "@",
			unix:       true,
			trusted:    "127.0.0.1",
			forwarders: "script_name",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/b", "PATH_INFO": "/x", "QUERY_STRING": "",
				"RAW_URI": "/b/x", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "", "SERVER_NAME": "h", "SERVER_PORT": "80", "HTTP_HOST": "h",
				"HTTP_SCRIPT_NAME": "/a,/b",
			},
		},
		{
			name:       "a forwarder header joins its '-' twin",
			raw:        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n",
			remote:     "127.0.0.1:7",
			trusted:    "*",
			forwarders: "X_FORWARDED_FOR",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
				"RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "7", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "h",
				"HTTP_X_FORWARDED_FOR": "10.0.0.1,6.6.6.6",
			},
		},
		{
			name:       "dangerous maps every '_' name, from any peer, but only a trusted SCRIPT_NAME routes",
			raw:        "GET /mount/x HTTP/1.1\r\nHost: h\r\nScript_Name: /mount\r\nX_Other: o\r\n\r\n",
			remote:     "10.0.0.9:8",
			trusted:    "127.0.0.1",
			forwarders: "SCRIPT_NAME,PATH_INFO",
			headerMap:  httpguard.HeaderMapDangerous,
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/mount/x", "QUERY_STRING": "",
				"RAW_URI": "/mount/x", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "10.0.0.9", "REMOTE_PORT": "8", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "h",
				"HTTP_SCRIPT_NAME": "/mount", "HTTP_X_OTHER": "o",
			},
		},
		{
			name:   "body headers, joined values, dropped underscores",
			raw:    "POST /submit HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nX_Forwarded_For: 6.6.6.6\r\nx-lower-case: v\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n{}",
			remote: "127.0.0.1:2",
			want: map[string]string{
				"REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/submit", "QUERY_STRING": "",
				"RAW_URI": "/submit", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "2", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "h:1",
				"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "2",
				"HTTP_X_FORWARDED_FOR": "10.0.0.1,10.0.0.2", "HTTP_X_LOWER_CASE": "v", "HTTP_COOKIE": "a=1,b=2",
			},
		},
		{
			name:   "chunked",
			raw:    "PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			remote: "127.0.0.1:3",
			want: map[string]string{
				"REQUEST_METHOD": "PUT", "SCRIPT_NAME": "", "PATH_INFO": "/up", "QUERY_STRING": "",
				"RAW_URI": "/up", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "3", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "h",
				"HTTP_TRANSFER_ENCODING": "chunked",
			},
		},
		{
			name:   "percent-decoded path and latin-1 bytes",
			raw:    "GET /caf%C3%A9%20x HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\r\n\r\n",
			remote: "127.0.0.1:4",
			want: map[string]string{
				"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/caf\xc3\xa9 x", "QUERY_STRING": "",
				"RAW_URI": "/caf%C3%A9%20x", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": software,
				"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "4", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "h",
				"HTTP_X_NAME": "caf\xe9",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &handler{scriptName: tt.scriptName, serverName: "127.0.0.1", serverPort: "8000", headerMap: tt.headerMap}
			if tt.unix {
				h.serverName, h.serverPort = "/run/gorn.sock", ""
			}
			if tt.trusted != "" {
				h.trusted = forwarded.MustParseAllowList(tt.trusted)
			}
			var err error
			if h.forwarders, err = forwarded.ParseHeaderNames(tt.forwarders); err != nil {
				t.Fatal(err)
			}
			h.fwdScriptName = h.forwarders.Has("SCRIPT_NAME")
			r := readRequest(t, tt.raw, tt.remote)
			scriptName := h.requestScriptName(r)
			pathInfo := tt.pathInfo
			if pathInfo == "" {
				pathInfo = strings.TrimPrefix(r.URL.Path, scriptName)
			}
			h.schemeHeaders = forwarded.DefaultSchemeHeaders
			scheme, err := h.urlScheme(r)
			if err != nil {
				t.Fatal(err)
			}
			var e protocol.Environ
			e.Reset()
			h.environ(&e, r, request{scriptName: scriptName, pathInfo: pathInfo, scheme: scheme, names: sortedNames(r.Header, nil)})
			pairs, err := protocol.DecodeEnviron(e.AppendTo(nil))
			if err != nil {
				t.Fatalf("DecodeEnviron: %v", err)
			}
			got := map[string]string{}
			for _, kv := range pairs {
				if _, dup := got[kv[0]]; dup {
					t.Errorf("%s sent twice", kv[0])
				}
				got[kv[0]] = kv[1]
			}
			if !maps.Equal(got, tt.want) {
				for _, k := range slices.Sorted(maps.Keys(got)) {
					if w, ok := tt.want[k]; !ok || w != got[k] {
						t.Errorf("%s = %q, want %q (present: %v)", k, got[k], w, ok)
					}
				}
				for _, k := range slices.Sorted(maps.Keys(tt.want)) {
					if _, ok := got[k]; !ok {
						t.Errorf("%s missing, want %q", k, tt.want[k])
					}
				}
			}
		})
	}
}

func TestSplitHost(t *testing.T) {
	tests := []struct {
		host, name, port string
	}{
		{"example.com", "example.com", "80"},
		{"example.com:8080", "example.com", "8080"},
		{"example.com:", "example.com", "80"},
		{"127.0.0.1:9000", "127.0.0.1", "9000"},
		{"[::1]:9000", "[::1]", "9000"},
		{"[::1]", "[::1]", "80"},
		{"[::1]:", "[::1]", "80"},
		{"[fe80::1%25eth0]:1", "[fe80::1%25eth0]", "1"},
		{"", "", "80"},
	}
	for _, tt := range tests {
		name, port := splitHost(tt.host, "80")
		if name != tt.name || port != tt.port {
			t.Errorf("splitHost(%q) = %q, %q; want %q, %q", tt.host, name, port, tt.name, tt.port)
		}
	}
}

func TestListenerName(t *testing.T) {
	tests := []struct {
		l          Listener
		name, port string
	}{
		{Listener{Network: "tcp", Addr: "127.0.0.1:8000"}, "127.0.0.1", "8000"},
		{Listener{Network: "tcp", Addr: "0.0.0.0:80"}, "0.0.0.0", "80"},
		{Listener{Network: "tcp", Addr: "[::1]:8000"}, "[::1]", "8000"},
		{Listener{Network: "tcp", Addr: "[::]:443"}, "[::]", "443"},
		{Listener{Network: "tcp", Addr: "bogus"}, "bogus", ""},
		{Listener{Network: "unix", Addr: "/run/gorn.sock"}, "/run/gorn.sock", ""},
	}
	for _, tt := range tests {
		name, port := listenerName(tt.l)
		if name != tt.name || port != tt.port {
			t.Errorf("listenerName(%+v) = %q, %q; want %q, %q", tt.l, name, port, tt.name, tt.port)
		}
	}
}

func newTestState(rec *httptest.ResponseRecorder) *requestState {
	return &requestState{rw: rec, r: httptest.NewRequest("GET", "/x", nil)}
}

func TestWriteHead(t *testing.T) {
	tests := []struct {
		name    string
		code    int
		headers [][2]string
		ok      bool
		want    http.Header // the response headers; nil means none
	}{
		{
			name: "plain", code: 200, ok: true,
			headers: [][2]string{{"Content-Type", "text/plain"}, {"content-length", "5"}, {"X-Custom", "a"}},
			want:    http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"5"}, "X-Custom": {"a"}},
		},
		{
			name: "repeated headers kept in order", code: 201, ok: true,
			headers: [][2]string{{"Set-Cookie", "a=1"}, {"set-cookie", "b=2"}, {"Vary", "Accept"}},
			want:    http.Header{"Set-Cookie": {"a=1", "b=2"}, "Vary": {"Accept"}},
		},
		{
			name: "a repeated header does not overwrite the next one", code: 200, ok: true,
			headers: [][2]string{{"X-A", "1"}, {"X-B", "2"}, {"x-a", "3"}, {"X-C", "4"}, {"X-B", "5"}},
			want:    http.Header{"X-A": {"1", "3"}, "X-B": {"2", "5"}, "X-C": {"4"}},
		},
		{
			name: "the app's spelling kept, but for the fields the server reads", code: 200, ok: true,
			headers: [][2]string{{"ETag", `"x"`}, {"WWW-Authenticate", "Basic"}, {"content-type", "text/html"},
				{"x-lower", "v"}, {"content-encoding", "gzip"}, {"DATE", "Thu, 01 Jan 1970 00:00:00 GMT"}},
			want: http.Header{"ETag": {`"x"`}, "WWW-Authenticate": {"Basic"}, "Content-Type": {"text/html"},
				"x-lower": {"v"}, "Content-Encoding": {"gzip"}, "Date": {"Thu, 01 Jan 1970 00:00:00 GMT"}},
		},
		{
			name: "another spelling joins the first, in order", code: 200, ok: true,
			headers: [][2]string{{"set-cookie", "a=1"}, {"X", "y"}, {"Set-Cookie", "a=2"}},
			want:    http.Header{"set-cookie": {"a=1", "a=2"}, "X": {"y"}},
		},
		{
			name: "hop-by-hop dropped", code: 200, ok: true,
			headers: [][2]string{
				{"Connection", "keep-alive"}, {"Keep-Alive", "timeout=5"}, {"Transfer-Encoding", "chunked"},
				{"TE", "trailers"}, {"Trailer", "X-Sum"}, {"Trailers", "X-Sum"}, {"Upgrade", "websocket"},
				{"Proxy-Authenticate", "Basic"}, {"Proxy-Authorization", "Basic eA=="}, {"Proxy-Connection", "keep-alive"}, {"X-Kept", "1"},
			},
			want: http.Header{"X-Kept": {"1"}},
		},
		{
			name: "Connection: close honoured", code: 200, ok: true,
			headers: [][2]string{{"connection", " Close "}, {"Content-Length", "0"}},
			want:    http.Header{"Connection": {"close"}, "Content-Length": {"0"}},
		},
		{name: "no headers", code: 204, ok: true},
		{name: "informational status", code: 103, headers: [][2]string{{"Link", "</a.css>"}}, ok: false},
		{name: "negative Content-Length", code: 200, headers: [][2]string{{"Content-Length", "-1"}, {"X", "y"}}},
		{name: "non-numeric Content-Length", code: 200, headers: [][2]string{{"Content-Length", "ten"}}},
		{name: "signed Content-Length", code: 200, headers: [][2]string{{"Content-Length", "+5"}}},
		{name: "two different Content-Lengths", code: 200, headers: [][2]string{{"Content-Length", "5"}, {"Content-Length", "6"}}},
		{
			name: "the same Content-Length twice is one", code: 200, ok: true,
			headers: [][2]string{{"Content-Length", "5"}, {"X", "y"}, {"content-length", "5"}},
			want:    http.Header{"Content-Length": {"5"}, "X": {"y"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &handler{log: slog.New(slog.DiscardHandler), state: new(state)}
			rec := httptest.NewRecorder()
			st := newTestState(rec)
			ok := h.writeHead(st, protocol.ResponseHead{Status: strconv.Itoa(tt.code) + " X", Code: tt.code, Headers: tt.headers})
			if ok != tt.ok {
				t.Fatalf("writeHead = %v, want %v", ok, tt.ok)
			}
			if !ok {
				if st.headersSent || st.status != 0 || rec.Code != http.StatusOK || rec.Flushed {
					t.Errorf("a refused head was sent: headersSent=%v status=%d", st.headersSent, st.status)
				}
				if len(rec.Header()) != 0 {
					t.Errorf("headers left for the error page: %v", rec.Header())
				}
				return
			}
			if !st.headersSent || st.status != tt.code || rec.Code != tt.code {
				t.Errorf("headersSent=%v status=%d recorded %d, want %d", st.headersSent, st.status, rec.Code, tt.code)
			}
			want := maps.Clone(tt.want)
			if want == nil {
				want = http.Header{}
			}
			if _, ok := want["Content-Type"]; !ok {
				want["Content-Type"] = nil // no value: the server must not sniff one
			}
			got := rec.Result().Header
			if !maps.EqualFunc(got, want, slices.Equal) {
				t.Errorf("headers = %v, want %v", got, want)
			}
		})
	}
}

func TestPlainError(t *testing.T) {
	tests := []struct {
		code      int
		keepClose bool // a Connection: close set before survives
	}{
		{http.StatusBadRequest, true},
		{http.StatusNotFound, false},
		{http.StatusRequestEntityTooLarge, true},
		{http.StatusInternalServerError, false},
		{http.StatusBadGateway, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			h := &handler{}
			rec := httptest.NewRecorder()
			st := newTestState(rec)
			rec.Header().Set("X-App", "partial")
			if tt.keepClose {
				rec.Header().Set("Connection", "close")
			}
			h.plainError(st, tt.code)
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			text := http.StatusText(tt.code)
			wantBody := "<html>\n  <head>\n    <title>" + text + "</title>\n  </head>\n  <body>\n    <h1><p>" + text + "</p></h1>\n  </body>\n</html>\n"
			if res.StatusCode != tt.code || string(body) != wantBody {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, body, tt.code, wantBody)
			}
			want := http.Header{"Content-Type": {"text/html"}, "Content-Length": {strconv.Itoa(len(wantBody))}}
			if tt.keepClose {
				want["Connection"] = []string{"close"}
			}
			if !maps.EqualFunc(res.Header, want, slices.Equal) {
				t.Errorf("headers = %v, want %v", res.Header, want)
			}
			if st.status != tt.code || st.written != int64(len(wantBody)) || !st.headersSent {
				t.Errorf("state: status=%d written=%d headersSent=%v", st.status, st.written, st.headersSent)
			}
		})
	}
}

func TestPlainErrorAfterHeadersAborts(t *testing.T) {
	h := &handler{}
	rec := httptest.NewRecorder()
	st := newTestState(rec)
	st.headersSent = true
	defer func() {
		r := recover()
		err, _ := r.(error)
		if !errors.Is(err, http.ErrAbortHandler) {
			t.Errorf("recovered %v, want http.ErrAbortHandler", r)
		}
		if rec.Body.Len() != 0 {
			t.Errorf("an error page was written after the headers: %q", rec.Body)
		}
	}()
	h.plainError(st, http.StatusBadGateway)
}

func TestSharesVariable(t *testing.T) {
	tests := []struct {
		names []string // the request's header names, canonical; the first is asked about
		want  bool
	}{
		{[]string{"Script_name"}, false},
		{[]string{"Script_name", "Script-Name"}, true},
		{[]string{"X_forwarded_for", "X-Forwarded-For", "Host"}, true},
		{[]string{"X_forwarded-For", "X-Forwarded_for"}, true},
		{[]string{"Script_name", "Script-Names", "Script-Nam3"}, false},
		{[]string{"X_a", "X-B", "Xxa"}, false},
		{[]string{"X_1", "X-1"}, true},
	}
	for _, tt := range tests {
		hdr := http.Header{}
		for _, n := range tt.names {
			hdr[n] = []string{"v"}
		}
		if got := sharesVariable(hdr, tt.names[0]); got != tt.want {
			t.Errorf("sharesVariable(%q, %q) = %v, want %v", tt.names, tt.names[0], got, tt.want)
		}
	}
}

func TestRuntimeLogged(t *testing.T) {
	dead := make(chan struct{})
	close(dead)
	tests := []struct {
		name      string
		appHead   bool
		appRaised bool
		appDone   bool
		access    bool
		done      chan struct{}
		want      bool
	}{
		{"the app answered; the runtime logs to gunicorn.access", true, false, true, true, make(chan struct{}), true},
		{"the app raised; gorn's 500 is the runtime's to log", false, true, true, true, make(chan struct{}), true},
		{"the app raised; the runtime does not log", false, true, true, false, make(chan struct{}), false},
		{"the runtime does not log", true, false, true, false, make(chan struct{}), false},
		{"gorn answered", false, false, false, true, make(chan struct{}), false},
		{"the runtime died during the response", true, false, false, true, dead, false},
		{"the runtime died after the response's last frame", true, false, true, true, dead, true},
		{"the response left unfinished (client gone); the runtime lives to log it", true, false, false, true, make(chan struct{}), true},
	}
	for _, tt := range tests {
		st := &requestState{appHead: tt.appHead, appRaised: tt.appRaised, appDone: tt.appDone,
			rt: &runtimeProc{info: ReadyInfo{Access: tt.access}, done: tt.done}}
		if got := st.runtimeLogged(); got != tt.want {
			t.Errorf("%s: runtimeLogged() = %v, want %v", tt.name, got, tt.want)
		}
	}
	if (&requestState{appHead: true}).runtimeLogged() {
		t.Error("a request without a runtime was logged by one")
	}
}

func TestDropFragment(t *testing.T) {
	tests := []struct {
		target, path, rawPath, query string
	}{
		{"/a?x=1#f", "/a", "", "x=1"},
		{"/a#f?x=1", "/a", "", ""},
		{"/a%23b?q=%23#f", "/a#b", "", "q=%23"},
		{"/p%2Fq#", "/p/q", "/p%2Fq", ""},
		{"http://example.org/abs?x=y#top", "/abs", "", "x=y"},
		{"/#", "/", "", ""},
	}
	for _, tt := range tests {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + tt.target + " HTTP/1.1\r\nHost: h\r\n\r\n")))
		if err != nil {
			t.Fatalf("%s: %v", tt.target, err)
		}
		dropFragment(r)
		if r.URL.Path != tt.path || r.URL.RawPath != tt.rawPath || r.URL.RawQuery != tt.query || r.RequestURI != tt.target {
			t.Errorf("%s: path %q raw %q query %q uri %q, want %q %q %q and the target", tt.target,
				r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.RequestURI, tt.path, tt.rawPath, tt.query)
		}
	}
}

// TestRuntimeKnowsErrorPage: the runtime logs the worker's 500 for an app
// that raised before its response began (with a logging configuration or a
// logger class) with the length of the page errorPage writes, which it
// holds as ERROR_PAGE_500_BYTES.
func TestRuntimeKnowsErrorPage(t *testing.T) {
	m := regexp.MustCompile(`(?m)^ERROR_PAGE_500_BYTES = (\d+)$`).FindSubmatch(pyruntime.Source)
	if m == nil {
		t.Fatal("gorn_runtime.py has no ERROR_PAGE_500_BYTES")
	}
	rec := httptest.NewRecorder()
	if n := errorPage(rec, http.StatusInternalServerError, ""); strconv.Itoa(n) != string(m[1]) || rec.Body.Len() != n {
		t.Errorf("errorPage writes %d bytes (%d in the body) for a 500; gorn_runtime.py says %s", n, rec.Body.Len(), m[1])
	}
}

// TestEnvironOrder checks that the environ has the header's variables in
// the order it is given, and every one of them even if that order lacks a
// name.
func TestEnvironOrder(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: h\r\nX-Zeta: 1\r\nContent-Type: t\r\nAccept: a\r\nX-Alpha: 2\r\nCookie: c=1\r\nX-Mid: 3\r\ncookie: d=2\r\n\r\n"
	tests := []struct {
		name  string
		names []string
		want  []string
	}{
		{
			name:  "as the fields came (gorn's HTTP/1 server)",
			names: []string{"Host", "X-Zeta", "Content-Type", "Accept", "X-Alpha", "Cookie", "X-Mid"},
			want:  []string{"HTTP_X_ZETA", "CONTENT_TYPE", "HTTP_ACCEPT", "HTTP_X_ALPHA", "HTTP_COOKIE", "HTTP_X_MID"},
		},
		{
			name: "sorted, when the server cannot tell (net/http)",
			want: []string{"HTTP_ACCEPT", "CONTENT_TYPE", "HTTP_COOKIE", "HTTP_X_ALPHA", "HTTP_X_MID", "HTTP_X_ZETA"},
		},
		{
			name:  "a name the order lacks still comes, after the others",
			names: []string{"X-Zeta", "Content-Type", "Accept", "X-Alpha", "X-Mid"},
			want:  []string{"HTTP_X_ZETA", "CONTENT_TYPE", "HTTP_ACCEPT", "HTTP_X_ALPHA", "HTTP_X_MID", "HTTP_COOKIE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &handler{serverName: "127.0.0.1", serverPort: "8000"}
			r := readRequest(t, raw, "127.0.0.1:1")
			names := tt.names
			if names == nil {
				names = sortedNames(r.Header, nil)
			}
			var e protocol.Environ
			e.Reset()
			h.environ(&e, r, request{pathInfo: "/", scheme: "http", names: names})
			pairs, err := protocol.DecodeEnviron(e.AppendTo(nil))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, kv := range pairs {
				if kv[0] == "CONTENT_TYPE" || strings.HasPrefix(kv[0], "HTTP_") && kv[0] != "HTTP_HOST" {
					got = append(got, kv[0])
				}
				if kv[0] == "HTTP_COOKIE" && kv[1] != "c=1,d=2" {
					t.Errorf("HTTP_COOKIE = %q, want both fields joined", kv[1])
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("order %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUnderScriptName(t *testing.T) {
	tests := []struct {
		path, scriptName, pathInfo string
		ok                         bool
	}{
		{"/app/x", "/app", "/x", true},
		{"/app", "/app", "", true},
		{"/app/", "/app", "/", true},
		{"/application", "/app", "", false},
		{"/other/app", "/app", "", false},
		{"/x", "", "/x", true},
		{"*", "", "*", true}, // OPTIONS *
		{"*", "/app", "", false},
	}
	for _, tt := range tests {
		pathInfo, ok := underScriptName(tt.path, tt.scriptName)
		if pathInfo != tt.pathInfo || ok != tt.ok {
			t.Errorf("underScriptName(%q, %q) = %q, %v; want %q, %v", tt.path, tt.scriptName, pathInfo, ok, tt.pathInfo, tt.ok)
		}
	}
}
