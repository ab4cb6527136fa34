package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorn-project/gorn/proxyproto"
)

// proxyConn dials s from the loopback address local ("127.0.0.1" or
// another 127/8 address: a peer that is not 127.0.0.1).
func proxyConn(t *testing.T, s *server, local string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatalf("dialing from %s: %v", local, err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// proxyEnviron writes prefix and a GET /environ with extra header lines
// on c and returns the response and, for a 200, the environ.
func proxyEnviron(t *testing.T, c net.Conn, br *bufio.Reader, prefix []byte, headers ...string) (*http.Response, map[string]any, error) {
	t.Helper()
	return proxyGet(t, c, br, prefix, "/environ", headers...)
}

// proxyGet is proxyEnviron for a GET of path, which must reach basic:app's
// /environ for a 200. For any other status the map holds the page, as
// "page".
func proxyGet(t *testing.T, c net.Conn, br *bufio.Reader, prefix []byte, path string, headers ...string) (*http.Response, map[string]any, error) {
	t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: example.com\r\n" + strings.Join(append(headers, ""), "\r\n") + "\r\n"
	if _, err := c.Write(append(append([]byte{}, prefix...), req...)); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp, nil, err
	}
	if resp.StatusCode != 200 {
		return resp, map[string]any{"page": string(body)}, nil
	}
	var env map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return resp, env, nil
}

// wantEnv checks environ entries.
func wantEnv(t *testing.T, what string, env map[string]any, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got, ok := env[k]
		if v == "" {
			if ok {
				t.Errorf("%s: environ[%q] = %#v, want it absent", what, k, got)
			}
			continue
		}
		if got != v {
			t.Errorf("%s: environ[%q] = %#v, want %q", what, k, got, v)
		}
	}
}

// closedWithout checks that the server closed c without a response.
func closedWithout(t *testing.T, what string, br *bufio.Reader) {
	t.Helper()
	b, err := br.ReadByte()
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("%s: got a response %q, want the connection closed", what, append([]byte{b}, rest...))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the connection stayed open", what)
	}
}

func TestProxyProtocol(t *testing.T) {
	py := python(t)
	// The bare flag means auto, as in gunicorn; the default
	// --proxy-allow-from is 127.0.0.1,::1.
	s := start(t, py, "--proxy-protocol", "--access-logfile", "-", "--log-level", "debug",
		"--access-logformat", `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" proxy=%({proxy_addr}e)s:%({proxy_port}e)s`, "basic:app")
	s.ready("/environ")

	src4 := netip.MustParseAddrPort("192.0.2.1:12345")
	dst4 := netip.MustParseAddrPort("198.51.100.7:443")
	src6 := netip.MustParseAddrPort("[2001:db8::1]:54321")
	dst6 := netip.MustParseAddrPort("[2001:db8::2]:443")
	tlvs := []byte{0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x03, 0, 0, 0} // ALPN, NOOP
	v2src := netip.MustParseAddrPort("203.0.113.9:4000")
	tests := []struct {
		name       string
		prefix     []byte
		addr, port string // REMOTE_ADDR and REMOTE_PORT; "" for the real peer, 127.0.0.1
		proxy      string // PROXY_PROTOCOL, PROXY_ADDR and PROXY_PORT; "" for none
	}{
		{"v1 TCP4", (&proxyproto.Header{Source: src4, Destination: dst4}).AppendV1(nil), "192.0.2.1", "12345", "TCP4 198.51.100.7 443"},
		{"v1 TCP6", (&proxyproto.Header{Source: src6, Destination: dst6}).AppendV1(nil), "2001:db8::1", "54321", "TCP6 2001:db8::2 443"},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "", "", ""},
		{"v2 TCP4 with TLVs", (&proxyproto.Header{Source: v2src, Destination: dst4}).AppendV2(nil, tlvs), "203.0.113.9", "4000", "TCP4 198.51.100.7 443"},
		{"v2 TCP6", (&proxyproto.Header{Source: src6, Destination: dst6}).AppendV2(nil, nil), "2001:db8::1", "54321", "TCP6 2001:db8::2 443"},
		{"v2 LOCAL", (&proxyproto.Header{Protocol: "LOCAL"}).AppendV2(nil, nil), "", "", ""},
		{"no header", nil, "", "", ""},
	}
	for _, tt := range tests {
		c, br := proxyConn(t, s, "127.0.0.1")
		addr, port := tt.addr, tt.port
		if addr == "" {
			addr = "127.0.0.1"
			port = strings.TrimPrefix(c.LocalAddr().String(), "127.0.0.1:")
		}
		// Twice on one connection: the header holds for the connection.
		for i := 0; i < 2; i++ {
			prefix := tt.prefix
			if i > 0 {
				prefix = nil
			}
			resp, env, err := proxyEnviron(t, c, br, prefix)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %v %v\n%s", tt.name, resp, err, s.log.String())
			}
			want := map[string]string{"REMOTE_ADDR": addr, "REMOTE_PORT": port, "wsgi.url_scheme": "http"}
			want["PROXY_PROTOCOL"], want["PROXY_ADDR"], want["PROXY_PORT"] = "", "", ""
			if f := strings.Fields(tt.proxy); len(f) == 3 {
				want["PROXY_PROTOCOL"], want["PROXY_ADDR"], want["PROXY_PORT"] = f[0], f[1], f[2]
			}
			wantEnv(t, tt.name, env, want)
		}
	}
	// The access log names the client the header gave.
	s.waitLog(`(?m)^192\.0\.2\.1 - - \[.*"GET /environ HTTP/1\.1" 200`, 10*time.Second)
	s.waitLog(`(?m)^203\.0\.113\.9 - - \[`, 10*time.Second)
	s.waitLog(`(?m)^192\.0\.2\.1 - - \[.*" proxy=198\.51\.100\.7:443$`, 10*time.Second)
	s.waitLog(`(?m)^127\.0\.0\.1 - - \[.*" proxy=-:-$`, 10*time.Second)

	// A malformed header, or one cut short, closes the connection
	// without an answer, and is logged at debug.
	for _, bad := range []string{
		"PROXY TCP4 192.0.2.1 198.51.100.7 99999 443\r\n",
		"PROXY TCP4 192.0.2.1 " + strings.Repeat("9", 120) + "\r\n",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x41\x00\x0c" + strings.Repeat("\x01", 12), // bad family
	} {
		c, br := proxyConn(t, s, "127.0.0.1")
		if _, err := io.WriteString(c, bad+"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		closedWithout(t, bad, br)
	}
	s.waitLog(`invalid PROXY protocol header`, 10*time.Second)
	c, br := proxyConn(t, s, "127.0.0.1")
	io.WriteString(c, "PROXY TCP4 192.0.2.1")
	c.(*net.TCPConn).CloseWrite()
	closedWithout(t, "a truncated header", br)

	// From a peer not in --proxy-allow-from the header is not honoured:
	// it is not parsed, so it is a malformed HTTP request: 400.
	c, br = proxyConn(t, s, "127.0.0.2")
	resp, env, err := proxyEnviron(t, c, br, (&proxyproto.Header{Source: src4, Destination: dst4}).AppendV1(nil))
	if err != nil || resp.StatusCode != http.StatusBadRequest || env["page"] == nil {
		t.Fatalf("PROXY v1 from a disallowed peer: %v %v %v, want 400", resp, env, err)
	}
	c, br = proxyConn(t, s, "127.0.0.2")
	resp, env, err = proxyEnviron(t, c, br, (&proxyproto.Header{Source: src4, Destination: dst4}).AppendV2(nil, nil))
	if err != nil || resp.StatusCode != http.StatusBadRequest || env["page"] == nil {
		t.Fatalf("PROXY v2 from a disallowed peer: %v %v %v, want 400", resp, env, err)
	}
	// ... and its plain requests are served with its own address.
	c, br = proxyConn(t, s, "127.0.0.2")
	resp, env, err = proxyEnviron(t, c, br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("plain request from a disallowed peer: %v %v", resp, err)
	}
	wantEnv(t, "disallowed peer", env, map[string]string{"REMOTE_ADDR": "127.0.0.2"})
}

func TestProxyForwardedProto(t *testing.T) {
	py := python(t)
	s := start(t, py, "basic:app") // the default --forwarded-allow-ips: 127.0.0.1,::1
	s.ready("/environ")
	tests := []struct {
		name    string
		local   string
		headers []string
		status  int
		scheme  string
	}{
		{"no headers", "127.0.0.1", nil, 200, "http"},
		{"X-Forwarded-Proto https", "127.0.0.1", []string{"X-Forwarded-Proto: https"}, 200, "https"},
		{"X-Forwarded-Ssl on", "127.0.0.1", []string{"X-Forwarded-Ssl: on"}, 200, "https"},
		{"X-Forwarded-Protocol ssl", "127.0.0.1", []string{"X-Forwarded-Protocol: ssl"}, 200, "https"},
		{"all three agree", "127.0.0.1", []string{"X-Forwarded-Protocol: ssl", "X-Forwarded-Proto: https", "X-Forwarded-Ssl: on"}, 200, "https"},
		{"X-Forwarded-Proto http", "127.0.0.1", []string{"X-Forwarded-Proto: http"}, 200, "http"},
		{"conflicting", "127.0.0.1", []string{"X-Forwarded-Proto: https", "X-Forwarded-Ssl: off"}, 400, ""},
		{"repeated and conflicting", "127.0.0.1", []string{"X-Forwarded-Proto: https", "X-Forwarded-Proto: http"}, 400, ""},
		{"untrusted peer", "127.0.0.2", []string{"X-Forwarded-Proto: https"}, 200, "http"},
		{"untrusted peer, conflicting", "127.0.0.2", []string{"X-Forwarded-Proto: https", "X-Forwarded-Ssl: off"}, 200, "http"},
	}
	for _, tt := range tests {
		c, br := proxyConn(t, s, tt.local)
		resp, env, err := proxyEnviron(t, c, br, nil, tt.headers...)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if resp.StatusCode != tt.status {
			t.Fatalf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.status)
		}
		if tt.status != 200 {
			if !resp.Close {
				t.Errorf("%s: the %d response does not close the connection", tt.name, tt.status)
			}
			if page, _ := env["page"].(string); !strings.Contains(page, "Contradictory scheme headers") {
				t.Errorf("%s: the page does not say why, as gunicorn's does:\n%s", tt.name, page)
			}
			continue
		}
		wantEnv(t, tt.name, env, map[string]string{"wsgi.url_scheme": tt.scheme, "REMOTE_ADDR": tt.local})
		// The headers themselves reach the app, trusted or not, as in
		// gunicorn.
		if len(tt.headers) > 0 {
			name, value, _ := strings.Cut(tt.headers[0], ": ")
			key := "HTTP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
			if got, _ := env[key].(string); !strings.HasPrefix(got, value) {
				t.Errorf("%s: environ[%q] = %q, want %q", tt.name, key, got, value)
			}
		}
	}
}

// TestProxySecureSchemeHeaders: --secure-scheme-headers (gunicorn's
// secure_scheme_headers) replaces the default headers.
func TestProxySecureSchemeHeaders(t *testing.T) {
	py := python(t)
	s := start(t, py, "--secure-scheme-headers", `{"X-Scheme": "https", "CLOUDFRONT-FORWARDED-PROTO": "https"}`, "basic:app")
	s.ready("/environ")
	tests := []struct {
		local   string
		headers []string
		status  int
		scheme  string
	}{
		{"127.0.0.1", []string{"X-Scheme: https"}, 200, "https"},
		{"127.0.0.1", []string{"CloudFront-Forwarded-Proto: https"}, 200, "https"},
		{"127.0.0.1", []string{"X-Scheme: http"}, 200, "http"},
		{"127.0.0.1", []string{"X-Forwarded-Proto: https"}, 200, "http"}, // not one of them any more
		{"127.0.0.1", []string{"X-Scheme: https", "CloudFront-Forwarded-Proto: http"}, 400, ""},
		{"127.0.0.2", []string{"X-Scheme: https"}, 200, "http"},
	}
	for _, tt := range tests {
		c, br := proxyConn(t, s, tt.local)
		resp, env, err := proxyEnviron(t, c, br, nil, tt.headers...)
		if err != nil {
			t.Fatalf("%s %q: %v", tt.local, tt.headers, err)
		}
		if resp.StatusCode != tt.status {
			t.Fatalf("%s %q: status %d, want %d", tt.local, tt.headers, resp.StatusCode, tt.status)
		}
		if tt.status == 200 {
			wantEnv(t, fmt.Sprintf("%s %q", tt.local, tt.headers), env, map[string]string{"wsgi.url_scheme": tt.scheme})
		}
	}
}

// TestProxyForwardedTrustsTheRealPeer: with the PROXY protocol on, the
// secure scheme headers are trusted by the address of the proxy that
// connected, not by the client address its PROXY header claims.
func TestProxyForwardedTrustsTheRealPeer(t *testing.T) {
	py := python(t)
	s := start(t, py, "--proxy-protocol", "v1", "--forwarded-allow-ips", "127.0.0.2", "basic:app")
	s.ready("/environ")
	claim := (&proxyproto.Header{Source: netip.MustParseAddrPort("127.0.0.2:1000"), Destination: netip.MustParseAddrPort("127.0.0.1:80")}).AppendV1(nil)

	// From 127.0.0.1 (untrusted), claiming to relay 127.0.0.2: http.
	c, br := proxyConn(t, s, "127.0.0.1")
	resp, env, err := proxyEnviron(t, c, br, claim, "X-Forwarded-Proto: https")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	wantEnv(t, "untrusted proxy", env, map[string]string{"REMOTE_ADDR": "127.0.0.2", "REMOTE_PORT": "1000", "wsgi.url_scheme": "http"})

	// From 127.0.0.2 (trusted; not allowed to send PROXY headers): https.
	c, br = proxyConn(t, s, "127.0.0.2")
	resp, env, err = proxyEnviron(t, c, br, nil, "X-Forwarded-Proto: https")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	wantEnv(t, "trusted peer", env, map[string]string{"REMOTE_ADDR": "127.0.0.2", "wsgi.url_scheme": "https"})
}

// TestProxyForwarderHeaders: a trusted front end's SCRIPT_NAME header
// mounts the app under a prefix (nginx: proxy_set_header SCRIPT_NAME /app),
// as in gunicorn 22 and later; from another peer it is dropped, or with
// --header-map refuse answered with 400; --forwarder-headers sets which
// names a trusted peer may send.
func TestProxyForwarderHeaders(t *testing.T) {
	py := python(t)
	tests := []struct {
		name          string
		local, path   string
		headers       []string
		status        int
		script, info  string
		present, gone []string // environ keys
	}{
		{name: "trusted SCRIPT_NAME", local: "127.0.0.1", path: "/app/environ", headers: []string{"SCRIPT_NAME: /app"},
			status: 200, script: "/app", info: "/environ", present: []string{"HTTP_SCRIPT_NAME"}},
		{name: "trusted SCRIPT_NAME, path outside it", local: "127.0.0.1", path: "/other/environ", headers: []string{"SCRIPT_NAME: /app"}, status: 404},
		{name: "untrusted SCRIPT_NAME", local: "127.0.0.2", path: "/environ", headers: []string{"SCRIPT_NAME: /app"},
			status: 200, script: "", info: "/environ", gone: []string{"HTTP_SCRIPT_NAME"}},
		{name: "trusted, a name not in the list", local: "127.0.0.1", path: "/environ", headers: []string{"Remote_User: bob", "PATH_INFO: /p"},
			status: 200, script: "", info: "/environ", present: []string{"HTTP_PATH_INFO"}, gone: []string{"HTTP_REMOTE_USER"}},
	}
	refuse := []struct {
		name        string
		local, path string
		headers     []string
		status      int
	}{
		{"trusted, in the list", "127.0.0.1", "/app/environ", []string{"SCRIPT_NAME: /app", "Remote_User: bob"}, 200},
		{"untrusted, in the list", "127.0.0.2", "/app/environ", []string{"SCRIPT_NAME: /app"}, 400},
		{"trusted, not in the list", "127.0.0.1", "/environ", []string{"PATH_INFO: /p"}, 400},
	}

	s := start(t, py, "--access-logfile", "-", "--access-logformat", "mounted %({script_name}e)s %({path_info}e)s", "basic:app")
	s.ready("/environ")
	// get sends a GET of path from local with the header lines and checks
	// the status.
	get := func(s *server, name, local, path string, headers []string, status int) (*http.Response, map[string]any) {
		t.Helper()
		c, br := proxyConn(t, s, local)
		resp, env, err := proxyGet(t, c, br, nil, path, headers...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.StatusCode != status {
			t.Fatalf("%s: status %d, want %d", name, resp.StatusCode, status)
		}
		return resp, env
	}
	for _, tt := range tests {
		_, env := get(s, tt.name, tt.local, tt.path, tt.headers, tt.status)
		if tt.status != 200 {
			continue
		}
		if env["SCRIPT_NAME"] != tt.script || env["PATH_INFO"] != tt.info {
			t.Errorf("%s: SCRIPT_NAME %#v PATH_INFO %#v, want %q %q", tt.name, env["SCRIPT_NAME"], env["PATH_INFO"], tt.script, tt.info)
		}
		for _, k := range tt.present {
			if _, ok := env[k]; !ok {
				t.Errorf("%s: no %s in the environ", tt.name, k)
			}
		}
		for _, k := range tt.gone {
			if v, ok := env[k]; ok {
				t.Errorf("%s: environ[%q] = %#v, want it absent", tt.name, k, v)
			}
		}
	}
	s.waitLog("mounted /app /environ", 10*time.Second)

	s = start(t, py, "--header-map", "refuse", "--forwarder-headers", "script_name, REMOTE_USER", "basic:app")
	s.ready("/environ")
	for _, tt := range refuse {
		resp, env := get(s, "refuse, "+tt.name, tt.local, tt.path, tt.headers, tt.status)
		if tt.status == 200 {
			wantEnv(t, "refuse, "+tt.name, env, map[string]string{"SCRIPT_NAME": "/app", "PATH_INFO": "/environ", "HTTP_REMOTE_USER": "bob"})
		} else if !resp.Close {
			t.Errorf("refuse, %s: the %d response does not close the connection", tt.name, tt.status)
		}
	}
}

// TestProxyFlagsRefused: bad proxy settings are refused at start, exit 1.
func TestProxyFlagsRefused(t *testing.T) {
	py := python(t)
	for _, args := range [][]string{
		{"--forwarded-allow-ips", "10.0.0.0/33", "basic:app"},
		{"--proxy-allow-from", "localhost", "basic:app"},
		{"--proxy-protocol=v3", "basic:app"},
		{"--forwarder-headers", "SCRIPT NAME", "basic:app"},
		{"--secure-scheme-headers", `{"X-Scheme": 1}`, "basic:app"},
	} {
		s := start(t, py, args...)
		if code := s.wait(30 * time.Second); code != 1 {
			t.Errorf("%v: exit %d, want 1\n%s", args, code, s.log.String())
		}
	}
}
