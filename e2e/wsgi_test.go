package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wcExchange writes a hand-written request on c and reads one response to
// a request of the given method, with its whole body. bodyErr is what
// reading the body ended with (nil for a complete body).
func wcExchange(t *testing.T, c net.Conn, br *bufio.Reader, method, raw string) (resp *http.Response, body []byte, bodyErr error) {
	t.Helper()
	if raw != "" {
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatalf("writing %q: %v", firstLine(raw), err)
		}
	}
	return wcRead(t, br, method)
}

// wcRead reads one response to a request of the given method.
func wcRead(t *testing.T, br *bufio.Reader, method string) (*http.Response, []byte, error) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response to a %s: %v", method, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body, err
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// wcEnviron sends raw on a fresh connection to the conform app's /env
// route and decodes the environ it dumps. It also returns the client's
// local address.
func wcEnviron(t *testing.T, s *server, raw string) (map[string]any, *net.TCPAddr) {
	t.Helper()
	c, br := s.rawConn()
	defer c.Close()
	resp, body, err := wcExchange(t, c, br, "GET", raw)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: %d %v\n%s", firstLine(raw), resp.StatusCode, err, body)
	}
	var env map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("%s: decoding %s: %v", firstLine(raw), body, err)
	}
	return env, c.LocalAddr().(*net.TCPAddr)
}

// wcLogLacks fails the test if the server's output contains any of bad.
func wcLogLacks(t *testing.T, s *server, bad ...string) {
	t.Helper()
	out := s.log.String()
	for _, b := range bad {
		if strings.Contains(out, b) {
			t.Errorf("gorn output contains %q:\n%s", b, out)
		}
	}
}

// wcReadUntilClosed reads c until the server closes it, waiting at most d;
// it fails the test if the connection is still open then.
func wcReadUntilClosed(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	rest, err := io.ReadAll(br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %s (read %q)", d, rest)
	}
	return rest
}

// TestWSGIValidator runs an app wrapped in wsgiref.validate.validator with
// every warning turned into an error: gorn's environ, input, errors,
// start_response, write and iteration must not trip it.
func TestWSGIValidator(t *testing.T) {
	for _, args := range wcRuntimeModes {
		t.Run(wcModeName(args), func(t *testing.T) { testValidator(t, args) })
	}
}

// wcRuntimeModes are the runtime's two ways of running the app: on the
// thread that reads frames, and on a pool of threads.
var wcRuntimeModes = [][]string{nil, {"--threads", "4"}}

func wcModeName(args []string) string {
	if len(args) == 0 {
		return "default"
	}
	return strings.Join(args, " ")
}

func testValidator(t *testing.T, args []string) {
	s := start(t, python(t), append(args, "conform:validated")...)
	s.ready("/hello")
	source, err := os.ReadFile(filepath.Join(appsDir(t), "conform.py"))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789abcdef", 200000/16)

	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string
		wantLen                  int64 // Content-Length, -1 for none
		chunked                  bool  // the response; the validator's iterator hides one-item lists
		chunkedReq               bool  // send the body chunked
	}{
		{"get", "GET", "/hello", "", 200, "hello, validated world\n", 23, false, false},
		{"post small body", "POST", "/echo", "some body bytes", 200, "some body bytes", 15, false, false},
		{"post body beyond the first frame", "POST", "/echo", big, 200, big, int64(len(big)), false, false},
		{"head", "HEAD", "/hello", "", 200, "", 23, false, false},
		{"query string", "GET", "/query?a=1&b=two%20x&c", "", 200, "a=1&b=two%20x&c", -1, true, false},
		{"streaming generator", "GET", "/stream?n=4", "", 200, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n", -1, true, false},
		{"write callable", "GET", "/write", "", 200, "written 1\nwritten 2\nreturned 3\n", -1, true, false},
		{"readline and readlines", "POST", "/lines", "line one\nline two\nthree\nfour", 200,
			`{"first": "line one\n", "second": "line", "rest": [" two\n", "three\n", "four"]}`, -1, true, false},
		{"chunked request body", "POST", "/lines", "line one\nline two\nthree\nfour", 200,
			`{"first": "line one\n", "second": "line", "rest": [" two\n", "three\n", "four"]}`, -1, true, true},
		{"wsgi.errors", "GET", "/errors", "", 200, "ok", -1, true, false},
		{"wsgi.file_wrapper", "GET", "/file", "", 200, string(source), -1, true, false},
		{"not found", "GET", "/nowhere", "", 404, "not found\n", -1, true, false},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
				if tt.chunkedReq {
					body = io.MultiReader(body) // hides the length
				}
			}
			req, err := http.NewRequest(tt.method, s.URL+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if resp.StatusCode != tt.status || string(got) != tt.want {
				t.Fatalf("%s %s = %d %q, want %d %q", tt.method, tt.path, resp.StatusCode, got, tt.status, tt.want)
			}
			if tt.wantLen >= 0 && resp.ContentLength != tt.wantLen {
				t.Errorf("Content-Length = %d, want %d", resp.ContentLength, tt.wantLen)
			}
			if chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"; chunked != tt.chunked {
				t.Errorf("Transfer-Encoding = %v, want chunked: %v", resp.TransferEncoding, tt.chunked)
			}
		})
	}
	s.waitLog(`line two of wsgi.errors`, 10*time.Second)
	if !strings.Contains(s.log.String(), "validated app wrote to wsgi.errors\n") {
		t.Errorf("wsgi.errors output missing from the log")
	}
	wcLogLacks(t, s, "STRICT-FAILURE", "Traceback", "Warning", "Exception ignored", "[ERROR]")
}

// TestWSGIValidatorCatches proves the strict validator setup of
// TestWSGIValidator can fail: a warning from the validator is an error, is
// logged, and fails the response.
func TestWSGIValidatorCatches(t *testing.T) {
	// The validated app's /hello is fine; a request whose environ lacks
	// nothing cannot trip it, so check the machinery with an app that is
	// wrong: a status without a reason phrase makes the validator warn.
	dir := t.TempDir()
	app := `from conform import _strict

def _bad(environ, start_response):
    start_response("200", [("Content-Type", "text/plain")])
    return [b"x"]

app = _strict(_bad)
`
	if err := os.WriteFile(filepath.Join(dir, "badvalidated.py"), []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startIn(t, dir, python(t), "--pythonpath", appsDir(t), "badvalidated:app")
	s.ready("/")
	if code, _ := s.get("/"); code != 500 {
		t.Errorf("GET / = %d, want 500", code)
	}
	s.waitLog(`STRICT-FAILURE in call of /(.|\n)*WSGIWarning`, 10*time.Second)
}

// TestWSGIEnviron checks the CGI and wsgi.* variables of PEP 3333 (and
// gunicorn's RAW_URI) as the app sees them.
func TestWSGIEnviron(t *testing.T) {
	s := start(t, python(t), "-e", "SCRIPT_NAME=/app", "conform:app")
	s.ready("/app/env")
	_, port, _ := net.SplitHostPort(s.Addr)

	t.Run("request", func(t *testing.T) {
		raw := "POST /app/env/caf%C3%A9?q=1&r=%20&q=2 HTTP/1.1\r\n" +
			"Host: example.com:8080\r\n" +
			"X-Multi: one\r\n" +
			"X-Multi: two\r\n" +
			"X-Under: kept\r\n" +
			"X_Under: dropped\r\n" +
			"X_Only_Underscores: dropped\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Content-Length: 5\r\n" +
			"User-Agent: wsgi-e2e\r\n" +
			"X-Latin: caf\xc3\xa9 \xff\r\n" +
			"\r\nhello"
		env, local := wcEnviron(t, s, raw)
		want := map[string]any{
			"REQUEST_METHOD":        "POST",
			"SCRIPT_NAME":           "/app",
			"PATH_INFO":             "/env/cafÃ©",
			"QUERY_STRING":          "q=1&r=%20&q=2",
			"RAW_URI":               "/app/env/caf%C3%A9?q=1&r=%20&q=2",
			"SERVER_PROTOCOL":       "HTTP/1.1",
			"SERVER_NAME":           "127.0.0.1", // the listener's, as gunicorn
			"SERVER_PORT":           port,
			"REMOTE_ADDR":           "127.0.0.1",
			"REMOTE_PORT":           strconv.Itoa(local.Port),
			"CONTENT_TYPE":          "text/plain; charset=utf-8",
			"CONTENT_LENGTH":        "5",
			"HTTP_HOST":             "example.com:8080",
			"HTTP_X_MULTI":          "one,two",
			"HTTP_X_UNDER":          "kept",
			"HTTP_USER_AGENT":       "wsgi-e2e",
			"HTTP_X_LATIN":          "cafÃ© ÿ",
			"wsgi.url_scheme":       "http",
			"wsgi.input_terminated": true,
			"wsgi.run_once":         false,
			"wsgi.multithread":      false,
			"wsgi.multiprocess":     false,
			"has_file_wrapper":      true,
			"has_input":             true,
			"has_errors":            true,
			"body_len":              float64(5),
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("environ[%q] = %#v, want %#v", k, env[k], v)
			}
		}
		for _, k := range []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_X_ONLY_UNDERSCORES"} {
			if v, ok := env[k]; ok {
				t.Errorf("environ has %s = %#v", k, v)
			}
		}
		for k, v := range env {
			if strings.Contains(k, "UNDER") && v != "kept" {
				t.Errorf("environ[%q] = %#v: a header with _ got through", k, v)
			}
		}
		if v, ok := env["wsgi.version"].([]any); !ok || len(v) != 2 || v[0] != float64(1) || v[1] != float64(0) {
			t.Errorf("wsgi.version = %#v, want (1, 0)", env["wsgi.version"])
		}
		if sw, _ := env["SERVER_SOFTWARE"].(string); !strings.HasPrefix(sw, "gorn/") {
			t.Errorf("SERVER_SOFTWARE = %#v, want gorn/...", env["SERVER_SOFTWARE"])
		}
	})

	t.Run("header order", func(t *testing.T) {
		// The variables come in the order the fields came, as gunicorn's
		// (more than eight names: a Go map's order would show).
		names := []string{"X-Zulu", "Accept", "X-Alpha", "Content-Type", "X-Mike", "Cookie", "X-Bravo",
			"Accept-Language", "X-Yankee", "Referer", "X-Charlie", "X-Xray"}
		raw := "GET /app/env HTTP/1.1\r\nHost: h\r\n"
		var want []string
		for i, n := range names {
			raw += n + ": " + strconv.Itoa(i) + "\r\n"
			if n == "Content-Type" {
				want = append(want, "CONTENT_TYPE")
			} else {
				want = append(want, "HTTP_"+strings.ToUpper(strings.ReplaceAll(n, "-", "_")))
			}
		}
		raw += "Cookie: again\r\n\r\n" // a repeated name counts where it first came
		for range 3 {
			env, _ := wcEnviron(t, s, raw)
			keys, _ := env["keys"].([]any)
			var got []string
			for _, k := range keys {
				if k, _ := k.(string); k == "CONTENT_TYPE" || strings.HasPrefix(k, "HTTP_") && k != "HTTP_HOST" {
					got = append(got, k)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("the environ's header variables come in the order %q, want %q", got, want)
			}
		}
	})

	t.Run("path", func(t *testing.T) {
		tests := []struct{ uri, pathInfo, query string }{
			{"/app/env", "/env", ""},
			{"/app/env/caf%C3%A9", "/env/cafÃ©", ""},
			{"/app/env/%FF", "/env/ÿ", ""},
			{"/app/env/a%20b%2Fc%3Fd", "/env/a b/c?d", ""},
			{"/app/env/x?%FF=%C3%A9", "/env/x", "%FF=%C3%A9"},
			{"/app/env/plain?", "/env/plain", ""},
		}
		for _, tt := range tests {
			env, _ := wcEnviron(t, s, "GET "+tt.uri+" HTTP/1.1\r\nHost: h\r\n\r\n")
			if env["SCRIPT_NAME"] != "/app" || env["PATH_INFO"] != tt.pathInfo ||
				env["QUERY_STRING"] != tt.query || env["RAW_URI"] != tt.uri {
				t.Errorf("GET %s: SCRIPT_NAME %#v PATH_INFO %#v QUERY_STRING %#v RAW_URI %#v, want /app %#v %#v %#v",
					tt.uri, env["SCRIPT_NAME"], env["PATH_INFO"], env["QUERY_STRING"], env["RAW_URI"],
					tt.pathInfo, tt.query, tt.uri)
			}
		}
		// Outside SCRIPT_NAME there is no app to route to: gorn answers
		// 404 itself. /application is not under /app: its PATH_INFO
		// would be "lication", which PEP 3333 does not allow.
		for _, uri := range []string{"/elsewhere/env", "/application/env", "/ap", "/"} {
			if code, body := s.get(uri); code != 404 || !strings.Contains(body, "<title>Not Found</title>") {
				t.Errorf("GET %s = %d %q, want gorn's 404 page", uri, code, body)
			}
		}
	})

	t.Run("method", func(t *testing.T) {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"} {
			env, _ := wcEnviron(t, s, m+" /app/env HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
			if env["REQUEST_METHOD"] != m {
				t.Errorf("%s: REQUEST_METHOD = %#v", m, env["REQUEST_METHOD"])
			}
			if _, ok := env["CONTENT_TYPE"]; ok {
				t.Errorf("%s: CONTENT_TYPE present without a Content-Type header", m)
			}
		}
	})

	t.Run("server name and port from the listener", func(t *testing.T) {
		tests := []struct{ req, proto, host string }{
			{"GET /app/env HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "HTTP/1.1", "example.com:8080"},
			{"GET /app/env HTTP/1.1\r\nHost: example.org\r\n\r\n", "HTTP/1.1", "example.org"},
			{"GET /app/env HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n", "HTTP/1.1", "[::1]:9000"},
			{"GET /app/env HTTP/1.0\r\n\r\n", "HTTP/1.0", ""},
			{"GET /app/env HTTP/1.0\r\nHost: old.example:81\r\n\r\n", "HTTP/1.0", "old.example:81"},
		}
		for _, tt := range tests {
			env, _ := wcEnviron(t, s, tt.req)
			host, hasHost := env["HTTP_HOST"]
			if env["SERVER_PROTOCOL"] != tt.proto || env["SERVER_NAME"] != "127.0.0.1" || env["SERVER_PORT"] != port ||
				hasHost != (tt.host != "") || (hasHost && host != tt.host) {
				t.Errorf("%q: SERVER_PROTOCOL %#v SERVER_NAME %#v SERVER_PORT %#v HTTP_HOST %#v, want %s 127.0.0.1 %s %q",
					tt.req, env["SERVER_PROTOCOL"], env["SERVER_NAME"], env["SERVER_PORT"], host, tt.proto, port, tt.host)
			}
		}
	})

	t.Run("chunked body", func(t *testing.T) {
		env, _ := wcEnviron(t, s, "POST /app/env HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
		if env["body_len"] != float64(7) {
			t.Errorf("body_len = %#v, want 7", env["body_len"])
		}
		if _, ok := env["CONTENT_LENGTH"]; ok {
			t.Errorf("CONTENT_LENGTH = %#v for a chunked body", env["CONTENT_LENGTH"])
		}
		if env["wsgi.input_terminated"] != true {
			t.Errorf("wsgi.input_terminated = %#v", env["wsgi.input_terminated"])
		}
	})
}

// TestRuntimeDescriptors checks that the runtime's pipes to the worker are
// open in the app's process but that nothing the app execs inherits them
// (nor any other descriptor gorn gave the runtime).
func TestRuntimeDescriptors(t *testing.T) {
	s := start(t, python(t), "conform:app")
	s.ready("/hello")
	status, body := s.get("/fds")
	if status != 200 {
		t.Fatalf("GET /fds: %d\n%s", status, body)
	}
	var got struct{ Open, Inheritable []string }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	pipes := 0
	for _, target := range got.Open {
		if strings.HasPrefix(target, "pipe:") {
			pipes++
		}
	}
	if pipes < 2 {
		t.Errorf("the runtime has %d pipes open, want its two to the worker: %q", pipes, got.Open)
	}
	// Descriptors this test process was started with reach gorn, and
	// everything gorn starts, as they reach gunicorn: not gorn's to close.
	ours := map[string]bool{}
	if entries, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, e := range entries {
			if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
				ours[target] = true
			}
		}
	}
	for _, target := range got.Inheritable {
		if !ours[target] {
			t.Errorf("an exec'd child of the app would inherit %q (inheritable: %q, open: %q)", target, got.Inheritable, got.Open)
		}
	}
}

// TestWSGIEnvironUnixSocket checks SERVER_NAME and SERVER_PORT on a unix
// socket, which has no port: they come from Host, as in gunicorn.
func TestWSGIEnvironUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "gorn.sock")
	s := start(t, python(t), "-b", "unix:"+sock, "conform:app")
	s.waitLog(`Booting worker with pid`, 30*time.Second)
	tests := []struct{ req, name, port string }{
		{"GET /env HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "example.com", "8080"},
		{"GET /env HTTP/1.1\r\nHost: example.org\r\n\r\n", "example.org", "80"},
		// nginx ending TLS in front, over the socket: the https port, as gunicorn's
		{"GET /env HTTP/1.1\r\nHost: example.org\r\nX-Forwarded-Proto: https\r\n\r\n", "example.org", "443"},
	}
	for _, tt := range tests {
		var c net.Conn
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if c, err = net.Dial("unix", sock); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dialing %s: %v", sock, err)
			}
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		resp, body, err := wcExchange(t, c, bufio.NewReader(c), "GET", tt.req)
		c.Close()
		var env map[string]any
		if err != nil || resp.StatusCode != 200 || json.Unmarshal(body, &env) != nil {
			t.Fatalf("%q: %d %s %v", tt.req, resp.StatusCode, body, err)
		}
		if env["SERVER_NAME"] != tt.name || env["SERVER_PORT"] != tt.port || env["PATH_INFO"] != "/env" {
			t.Errorf("%q: SERVER_NAME %#v SERVER_PORT %#v PATH_INFO %#v, want %s %s /env",
				tt.req, env["SERVER_NAME"], env["SERVER_PORT"], env["PATH_INFO"], tt.name, tt.port)
		}
	}
}

// TestWSGIScriptName checks SCRIPT_NAME from gorn's environment, set
// with -e or inherited, and that PATH_INFO loses it.
func TestWSGIScriptName(t *testing.T) {
	tests := []struct {
		name, env             string
		args                  []string
		uri, script, pathInfo string
	}{
		{"flag with a trailing slash", "", []string{"-e", "SCRIPT_NAME=/app/"}, "/app/env/x", "/app", "/env/x"},
		{"process environment", "/mount/deep", nil, "/mount/deep/env", "/mount/deep", "/env"},
		{"flag over the process environment", "/mount", []string{"-e", "SCRIPT_NAME=/flag"}, "/flag/env", "/flag", "/env"},
		{"empty", "", []string{"-e", "SCRIPT_NAME="}, "/env/y", "", "/env/y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SCRIPT_NAME", tt.env)
			s := start(t, python(t), append(tt.args, "conform:app")...)
			s.ready(tt.uri)
			env, _ := wcEnviron(t, s, "GET "+tt.uri+" HTTP/1.1\r\nHost: h\r\n\r\n")
			if env["SCRIPT_NAME"] != tt.script || env["PATH_INFO"] != tt.pathInfo {
				t.Errorf("GET %s: SCRIPT_NAME %#v PATH_INFO %#v, want %#v %#v", tt.uri, env["SCRIPT_NAME"], env["PATH_INFO"], tt.script, tt.pathInfo)
			}
		})
	}
}

// TestWSGIOutsideScriptName: a path outside SCRIPT_NAME gets gorn's 404,
// and its access line has the whole path as %(U)s (the app saw nothing).
func TestWSGIOutsideScriptName(t *testing.T) {
	s := start(t, python(t), "-e", "SCRIPT_NAME=/app", "--access-logfile", "-",
		"--access-logformat", `%(s)s U=%(U)s r=%(r)s`, "conform:app")
	s.ready("/app/env")
	if code, _ := s.get("/application"); code != 404 {
		t.Fatalf("GET /application under SCRIPT_NAME=/app: %d, want 404", code)
	}
	s.waitLog(`404 U=/application r=GET /application HTTP/1\.1`, 10*time.Second)
}

// TestWSGIEnvironConcurrency checks wsgi.multithread and wsgi.multiprocess
// against --threads and -w.
func TestWSGIEnvironConcurrency(t *testing.T) {
	tests := []struct {
		args                      []string
		multithread, multiprocess bool
	}{
		{nil, false, false},
		{[]string{"--threads", "2"}, true, false},
		{[]string{"-w", "2"}, false, true},
		{[]string{"-w", "2", "--threads", "3"}, true, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{"args"}, tt.args...), " "), func(t *testing.T) {
			s := start(t, python(t), append(tt.args, "conform:app")...)
			s.ready("/env")
			env, _ := wcEnviron(t, s, "GET /env HTTP/1.1\r\nHost: h\r\n\r\n")
			if env["wsgi.multithread"] != tt.multithread || env["wsgi.multiprocess"] != tt.multiprocess ||
				env["wsgi.run_once"] != false || env["SCRIPT_NAME"] != "" || env["PATH_INFO"] != "/env" {
				t.Errorf("multithread %#v multiprocess %#v run_once %#v SCRIPT_NAME %#v PATH_INFO %#v, want %v %v false \"\" /env",
					env["wsgi.multithread"], env["wsgi.multiprocess"], env["wsgi.run_once"],
					env["SCRIPT_NAME"], env["PATH_INFO"], tt.multithread, tt.multiprocess)
			}
		})
	}
}

// TestWSGIResponseRules checks what gorn does with the app's response:
// bodiless responses, hop-by-hop headers, Connection: close, invalid
// headers, errors before and after the headers, and start_response's
// exc_info.
func TestWSGIResponseRules(t *testing.T) {
	s := start(t, python(t), "conform:app")
	s.ready("/path")

	t.Run("bodiless responses keep the connection usable", func(t *testing.T) {
		tests := []struct {
			method, path string
			status       int
			wantLen      int64
		}{
			{"HEAD", "/head", 200, 29},
			{"HEAD", "/head-stream", 200, -1},
			{"HEAD", "/cl?size=1000000", 200, 1000000},
			{"GET", "/status?code=204", 204, -1},
			{"GET", "/status?code=304", 304, -1},
			{"HEAD", "/status?code=304", 304, -1},
		}
		c, br := s.rawConn()
		for _, tt := range tests {
			resp, body, err := wcExchange(t, c, br, tt.method, tt.method+" "+tt.path+" HTTP/1.1\r\nHost: h\r\n\r\n")
			if err != nil || resp.StatusCode != tt.status || len(body) != 0 {
				t.Errorf("%s %s = %d %q %v, want %d and no body", tt.method, tt.path, resp.StatusCode, body, err, tt.status)
			}
			if tt.wantLen >= 0 && resp.ContentLength != tt.wantLen {
				t.Errorf("%s %s: Content-Length %d, want the app's %d", tt.method, tt.path, resp.ContentLength, tt.wantLen)
			}
			if tt.status != 200 && resp.Header.Get("X-Status") != strconv.Itoa(tt.status) {
				t.Errorf("%s %s: the app's headers are missing: %v", tt.method, tt.path, resp.Header)
			}
			// Any stray body byte would garble this next response.
			resp, body, err = wcExchange(t, c, br, "GET", "GET /path?after HTTP/1.1\r\nHost: h\r\n\r\n")
			if err != nil || resp.StatusCode != 200 || string(body) != "/path?after" {
				t.Fatalf("the request after %s %s = %d %q %v", tt.method, tt.path, resp.StatusCode, body, err)
			}
		}
	})

	t.Run("Server and Date", func(t *testing.T) {
		// gorn names no Server; the app's own Server and Date go out as
		// it set them (gunicorn replaces both with its own).
		c, br := s.rawConn()
		resp, _, err := wcExchange(t, c, br, "GET", "GET /path HTTP/1.1\r\nHost: h\r\n\r\n")
		if err != nil || resp.Header.Values("Server") != nil || resp.Header.Get("Date") == "" {
			t.Errorf("a response of gorn's: Server %q, Date %q, %v", resp.Header.Values("Server"), resp.Header.Get("Date"), err)
		}
		resp, _, err = wcExchange(t, c, br, "GET", "GET /server-date HTTP/1.1\r\nHost: h\r\n\r\n")
		if err != nil || strings.Join(resp.Header.Values("Server"), ",") != "app/1.0" ||
			strings.Join(resp.Header.Values("Date"), ",") != "Thu, 01 Jan 1970 00:00:00 GMT" {
			t.Errorf("the app's Server %q and Date %q, %v", resp.Header.Values("Server"), resp.Header.Values("Date"), err)
		}
	})

	t.Run("the same Content-Length twice", func(t *testing.T) {
		c, _ := s.rawConn()
		if _, err := io.WriteString(c, "GET /cl?size=10&dup=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		raw, _ := io.ReadAll(c)
		if !bytes.HasPrefix(raw, []byte("HTTP/1.1 200 ")) || bytes.Count(bytes.ToLower(raw), []byte("\r\ncontent-length: 10\r\n")) != 1 ||
			!bytes.HasSuffix(raw, []byte("\r\n\r\naaabbbcccc")) {
			t.Errorf("want a 200 with one Content-Length and the body:\n%s", raw)
		}
	})

	t.Run("header names as the app spelled them", func(t *testing.T) {
		c, _ := s.rawConn()
		if _, err := io.WriteString(c, "GET /server-date HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		raw, _ := io.ReadAll(c)
		for _, field := range []string{"\r\nETag: \"v1\"\r\n", "\r\nWWW-Authenticate: Basic\r\n", "\r\nContent-Length: 2\r\n"} {
			if !bytes.Contains(raw, []byte(field)) {
				t.Errorf("no %q in the response:\n%s", field, raw)
			}
		}
		// In the app's order, as gunicorn writes them (net/http sorts).
		inOrder := "\r\nServer: app/1.0\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nETag: \"v1\"\r\nWWW-Authenticate: Basic\r\nContent-Length: 2\r\n"
		if !bytes.Contains(raw, []byte(inOrder)) {
			t.Errorf("the app's fields are not in its order %q:\n%s", inOrder, raw)
		}
	})

	t.Run("the app's status line", func(t *testing.T) {
		// As gunicorn: the app's reason phrase, whatever the code, and a
		// bare code gets the standard one.
		c, br := s.rawConn()
		for _, tt := range []struct{ status, want string }{
			{"299 Custom Thing", "299 Custom Thing"},
			{"200 Tr\u00e8s bien", "200 Tr\xe8s bien"},
			{"404 Not Found", "404 Not Found"},
			{"200", "200 OK"},
			{"201 ", "201 Created"},
		} {
			target := "/reason?status=" + url.QueryEscape(tt.status)
			resp, body, err := wcExchange(t, c, br, "GET", "GET "+target+" HTTP/1.1\r\nHost: h\r\n\r\n")
			if err != nil || resp.Status != tt.want || string(body) != "ok" {
				t.Errorf("status %q: the client got %q %q %v, want %q", tt.status, resp.Status, body, err, tt.want)
			}
		}
	})

	t.Run("hop-by-hop headers dropped", func(t *testing.T) {
		c, br := s.rawConn()
		resp, body, err := wcExchange(t, c, br, "GET", "GET /hop HTTP/1.1\r\nHost: h\r\n\r\n")
		if err != nil || resp.StatusCode != 200 || string(body) != "hop-by-hop headers dropped\n" {
			t.Fatalf("GET /hop = %d %q %v", resp.StatusCode, body, err)
		}
		for _, h := range []string{"Keep-Alive", "Transfer-Encoding", "Upgrade"} {
			if v, ok := resp.Header[h]; ok {
				t.Errorf("%s: %v reached the client", h, v)
			}
		}
		if len(resp.TransferEncoding) != 0 || resp.ContentLength != int64(len(body)) || resp.Header.Get("X-Kept") != "yes" {
			t.Errorf("Transfer-Encoding %v Content-Length %d X-Kept %q", resp.TransferEncoding, resp.ContentLength, resp.Header.Get("X-Kept"))
		}
		if resp.Close {
			t.Errorf("the connection was closed after /hop")
		}
	})

	t.Run("no Content-Type added", func(t *testing.T) {
		// As gunicorn: a response the app sends without a Content-Type
		// goes out without one (net/http would sniff one, text/html here).
		c, br := s.rawConn()
		resp, body, err := wcExchange(t, c, br, "GET", "GET /untyped HTTP/1.1\r\nHost: h\r\n\r\n")
		if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), "no Content-Type") {
			t.Fatalf("GET /untyped = %d %q %v", resp.StatusCode, body, err)
		}
		if v, ok := resp.Header["Content-Type"]; ok {
			t.Errorf("Content-Type %q was added", v)
		}
	})

	t.Run("Connection close from the app", func(t *testing.T) {
		c, br := s.rawConn()
		resp, body, err := wcExchange(t, c, br, "GET", "GET /close HTTP/1.1\r\nHost: h\r\n\r\n")
		if err != nil || resp.StatusCode != 200 || string(body) != "the app asked to close\n" {
			t.Fatalf("GET /close = %d %q %v", resp.StatusCode, body, err)
		}
		if !resp.Close {
			t.Errorf("no Connection: close in the response to /close")
		}
		if rest := wcReadUntilClosed(t, c, br, 10*time.Second); len(rest) != 0 {
			t.Errorf("bytes after the response: %q", rest)
		}
	})

	t.Run("CR LF in a header value", func(t *testing.T) {
		c, br := s.rawConn()
		c.Write([]byte("GET /crlf HTTP/1.1\r\nHost: h\r\n\r\n"))
		head, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(head.Body)
		if head.StatusCode != 500 || head.Header.Get("X-Injected") != "" || head.Header.Get("X-Split") != "" ||
			strings.Contains(string(body), "must not be sent") {
			t.Errorf("GET /crlf = %d %v %q, want a plain 500", head.StatusCode, head.Header, body)
		}
		s.waitLog(`Error handling request /crlf(.|\n)*ValueError: invalid value for header 'X-Split'`, 10*time.Second)
	})

	t.Run("invalid response heads", func(t *testing.T) {
		tests := []struct{ kind, logged string }{
			{"status-crlf", `Error handling request /badhead\?kind=status-crlf\n(.|\n)*invalid status`},
			{"name-space", `invalid response head.*/badhead\?kind=name-space.*invalid header name`},
			{"value-lf", `Error handling request /badhead\?kind=value-lf\n(.|\n)*ValueError`},
			{"value-nul", `Error handling request /badhead\?kind=value-nul\n(.|\n)*ValueError`},
			{"not-latin1", `Error handling request /badhead\?kind=not-latin1\n(.|\n)*latin-1`},
			{"content-length", `invalid Content-Length.*/badhead\?kind=content-length`},
		}
		for _, tt := range tests {
			c, br := s.rawConn()
			c.Write([]byte("GET /badhead?kind=" + tt.kind + " HTTP/1.1\r\nHost: h\r\n\r\n"))
			resp, body, err := wcRead(t, br, "GET")
			if err != nil || resp.StatusCode != 500 || strings.Contains(string(body), "must not be sent") {
				t.Errorf("%s: %d %q %v, want a plain 500", tt.kind, resp.StatusCode, body, err)
			}
			for k := range resp.Header {
				if k != "Content-Type" && k != "Content-Length" && k != "Date" && k != "Connection" {
					t.Errorf("%s: header %s: %q reached the client", tt.kind, k, resp.Header[k])
				}
			}
			s.waitLog(tt.logged, 10*time.Second)
			// The connection and the runtime are still good.
			resp, body, err = wcExchange(t, c, br, "GET", "GET /path?after HTTP/1.1\r\nHost: h\r\n\r\n")
			if err != nil || string(body) != "/path?after" {
				t.Errorf("%s: the next request: %d %q %v", tt.kind, resp.StatusCode, body, err)
			}
		}
	})

	t.Run("raise before start_response", func(t *testing.T) {
		code, body := s.get("/raise-before")
		if code != 500 || !strings.Contains(body, "Internal Server Error") || strings.Contains(body, "marker-before") {
			t.Errorf("GET /raise-before = %d %q, want a 500 page without the error", code, body)
		}
		s.waitLog(`Error handling request /raise-before\n(.|\n)*Traceback(.|\n)*RuntimeError: raised before start_response: marker-before`, 10*time.Second)
	})

	t.Run("raise after the headers", func(t *testing.T) {
		rec := filepath.Join(t.TempDir(), "rec")
		c, br := s.rawConn()
		resp, body, err := wcExchange(t, c, br, "GET", "GET /raise-mid?rec="+rec+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || string(body) != "first chunk before the error\n" || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("GET /raise-mid = %d %q %v, want 200, the first chunk, then an unterminated chunked body", resp.StatusCode, body, err)
		}
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
		}
		s.waitLog(`Error handling request /raise-mid\S*\n(.|\n)*Traceback(.|\n)*RuntimeError: raised mid-stream: marker-mid`, 10*time.Second)
		wcWaitFile(t, rec, "raised RuntimeError\nclose\n")
	})

	t.Run("exc_info before the headers replaces them", func(t *testing.T) {
		c, br := s.rawConn()
		resp, body, err := wcExchange(t, c, br, "GET", "GET /excinfo-before HTTP/1.1\r\nHost: h\r\n\r\n")
		if err != nil || resp.StatusCode != 503 || resp.Header.Get("X-Replaced") != "yes" || string(body) != "recovered with exc_info\n" {
			t.Errorf("GET /excinfo-before = %d %v %q %v, want the 503 the app chose", resp.StatusCode, resp.Header, body, err)
		}
	})

	t.Run("exc_info after the headers re-raises", func(t *testing.T) {
		rec := filepath.Join(t.TempDir(), "rec")
		c, br := s.rawConn()
		resp, body, err := wcExchange(t, c, br, "GET", "GET /excinfo-after?rec="+rec+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || string(body) != "headers are out\n" || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("GET /excinfo-after = %d %q %v, want 200, the first chunk, then a cut", resp.StatusCode, body, err)
		}
		s.waitLog(`Error handling request /excinfo-after\S*\n(.|\n)*ValueError: exc_info after headers: marker-excinfo`, 10*time.Second)
		wcWaitFile(t, rec, "raised ValueError\nclose\n")
	})

	t.Run("start_response twice without exc_info", func(t *testing.T) {
		code, body := s.get("/twice")
		if code != 500 || strings.Contains(body, "never") {
			t.Errorf("GET /twice = %d %q, want 500", code, body)
		}
		s.waitLog(`Error handling request /twice\n(.|\n)*AssertionError`, 10*time.Second)
	})

	// Every error above was the app's: the server itself stays up and
	// serves.
	if code, body := s.get("/path?still"); code != 200 || body != "/path?still" {
		t.Errorf("after the errors: %d %q", code, body)
	}
}

// wcWaitFile waits up to 15 s for the file at path to hold exactly want.
func wcWaitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var got []byte
	for {
		got, _ = os.ReadFile(path)
		if string(got) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %q", path, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
