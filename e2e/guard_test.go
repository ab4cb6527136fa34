package e2e

import (
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestGuardRejection checks what a refused request gets, as gunicorn sends
// it: the status, a page with the reason, Connection: close; that the
// access log shows the refusal with the request line the client sent; and
// that the app never saw it (its next request on a fresh connection is
// served normally).
func TestGuardRejection(t *testing.T) {
	py := python(t)
	s := start(t, py, "--access-logfile", "-", "guard_app:app")
	s.ready("/")
	tests := []struct {
		raw, status, reason, logged string
	}{
		{"GET /v HTTP/2.0\r\nHost: x\r\n\r\n", "400 Bad Request", "Invalid HTTP Version &#39;Invalid HTTP Version: &#39;HTTP/2.0&#39;&#39;", `"GET /v HTTP/2.0" 400 `},
		{"GET /fold HTTP/1.1\r\nHost: x\r\nX-A: <b>\r\n b\r\n\r\n", "400 Bad Request", "Obsolete line folding is unacceptable: &#39;X-A&#39;", `"GET /fold HTTP/1.1" 400 `},
		{"GET /many HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 100) + "\r\n", "431 Request Header Fields Too Large", "Error parsing headers: &#39;limit request headers fields&#39;", `"GET /many HTTP/1.1" 431 `},
		{"POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "501 Not Implemented", "Unsupported transfer coding: &#39;gzip&#39;", `"POST /te HTTP/1.1" 501 `},
		{"POST /expect HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", "417 Expectation Failed", "Unsupported expectation: &#39;200-ok&#39;", `"POST /expect HTTP/1.1" 417 `},
		{"GET /ctl\x01\"q\" HTTP/1.1\r\nHost: x\r\n\r\n", "400 Bad Request", "Invalid Request Line", `"GET /ctl\x01\"q\" HTTP/1.1" 400 `},
	}
	for _, tt := range tests {
		c, br := s.rawConn()
		if _, err := io.WriteString(c, tt.raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", tt.raw, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.Status != tt.status || !resp.Close || resp.Header.Get("Content-Type") != "text/html" {
			t.Errorf("%q: %s, close %v, %q", tt.raw, resp.Status, resp.Close, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(string(body), "<h1><p>"+http.StatusText(resp.StatusCode)+"</p></h1>") || !strings.Contains(string(body), tt.reason) {
			t.Errorf("%q: body %q, want it to hold %q", tt.raw, body, tt.reason)
		}
	}
	for _, tt := range tests {
		s.waitLog(regexp.QuoteMeta(tt.logged), 10*time.Second)
	}
	if strings.Contains(s.log.String(), `"GET / HTTP/1.1" 4`) {
		t.Errorf("a refusal logged as the guard's stand-in request:\n%s", s.log.String())
	}
	if code, _ := s.get("/after"); code != 200 {
		t.Fatalf("a normal request after the refusals got %d", code)
	}
}

// TestGuardChunkedBodyError checks a chunked body that turns malformed
// after the app started reading it: the app's read fails, the client gets
// 400 and the connection closes; the worker goes on serving.
func TestGuardChunkedBodyError(t *testing.T) {
	py := python(t)
	s := start(t, py, "guard_app:app")
	s.ready("/")
	c, br := s.rawConn()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
	time.Sleep(200 * time.Millisecond) // the app is reading by now
	io.WriteString(c, "zz\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("got %s, close %v; want 400 and close", resp.Status, resp.Close)
	}
	if code, _ := s.get("/"); code != 200 {
		t.Fatalf("the next request got %d", code)
	}
}

// TestGuardSlowHead checks that a head sent a few bytes at a time is
// assembled by the guard and served.
func TestGuardSlowHead(t *testing.T) {
	py := python(t)
	s := start(t, py, "guard_app:app")
	s.ready("/")
	c, br := s.rawConn()
	raw := "POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	for i := 0; i < len(raw); i += 7 {
		io.WriteString(c, raw[i:min(i+7, len(raw))])
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"body": "abc"`) {
		t.Fatalf("got %s %s", resp.Status, body)
	}
}

// TestGuardResponseSplitting is the response side of CVE-2018-1000164: an
// app that copies request data with CR LF into a response header must not
// let it start a header of its own.
func TestGuardResponseSplitting(t *testing.T) {
	py := python(t)
	s := start(t, py, "guard_app:app")
	s.ready("/")
	c, br := s.rawConn()
	io.WriteString(c, "GET /split?a%0d%0aX-Injected:%20yes HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if v := resp.Header.Get("X-Injected"); v != "" {
		t.Fatalf("the app's CR LF split the response: X-Injected: %q", v)
	}
	if resp.StatusCode != 500 {
		t.Fatalf("got %s, want 500 for a header value with CR LF", resp.Status)
	}
}

// TestGuardFlags checks the limit and header-map flags are refused when
// invalid, before anything starts.
func TestGuardFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--header-map", "allow"}, `--header-map must be one of "drop","refuse","dangerous"`},
		{[]string{"--limit-request-line=-1"}, "must not be negative"},
		{[]string{"--limit-request-body", "x"}, "--limit-request-body"},
	}
	for _, tt := range tests {
		cmd := exec.Command(gornBin, append(tt.args, "guard_app:app")...)
		cmd.Dir = appsDir(t)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), tt.want) {
			t.Errorf("%v: %v\n%s", tt.args, err, out)
		}
	}
}
