package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorn-project/gorn/internal/testpki"
)

// testPKI is a CA, a server certificate for 127.0.0.1 and localhost, and a
// client certificate, generated for one test; nothing is committed.
type testPKI struct{ *testpki.PKI }

func newTestPKI(t *testing.T) *testPKI { return &testPKI{testpki.New(t)} }

// client is an HTTPS client trusting the test CA; h2 offers HTTP/2 by
// ALPN, else only HTTP/1.1.
func (p *testPKI) client(h2 bool, withCert bool) *http.Client {
	tc := &tls.Config{RootCAs: p.Pool, ServerName: "127.0.0.1"}
	if withCert {
		tc.Certificates = []tls.Certificate{p.ClientCert}
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: h2}
	if !h2 {
		tc.NextProtos = []string{"http/1.1"}
	}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return c
}

// startTLS runs tls_app with the test certificate and waits until it
// answers over HTTPS.
func startTLS(t *testing.T, p *testPKI, args ...string) (*server, string) {
	t.Helper()
	py := python(t)
	full := append([]string{"--certfile", p.Cert, "--keyfile", p.Key}, args...)
	full = append(full, "tls_app:app")
	s := start(t, py, full...)
	base := "https://" + s.Addr
	tc := &tls.Config{RootCAs: p.Pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{p.ClientCert}}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(base + "/pid")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			break
		}
		select {
		case <-s.done:
			t.Fatalf("gorn exited before serving: %v\n%s", s.err, s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gorn did not serve HTTPS within 30s: %v\n%s", err, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.CloseIdleConnections()
	return s, base
}

// getEnviron fetches /environ and decodes it; it returns the response too.
func getEnviron(t *testing.T, c *http.Client, url string) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := c.Get(url + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("decoding /environ: %v", err)
	}
	return resp, env
}

func TestTLSHTTPS(t *testing.T) {
	p := newTestPKI(t)
	s, base := startTLS(t, p)
	resp, env := getEnviron(t, p.client(false, false), base)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" || resp.TLS == nil {
		t.Fatalf("status %d proto %s tls %v", resp.StatusCode, resp.Proto, resp.TLS != nil)
	}
	if resp.TLS.Version < tls.VersionTLS12 || resp.TLS.NegotiatedProtocol != "http/1.1" {
		t.Errorf("TLS version %x, ALPN %q", resp.TLS.Version, resp.TLS.NegotiatedProtocol)
	}
	if env["wsgi.url_scheme"] != "https" || env["SERVER_PROTOCOL"] != "HTTP/1.1" {
		t.Errorf("url_scheme %v, SERVER_PROTOCOL %v", env["wsgi.url_scheme"], env["SERVER_PROTOCOL"])
	}
	if _, ok := env["HTTPS"]; ok {
		t.Errorf("HTTPS in the environ (gunicorn sets none): %v", env["HTTPS"])
	}
	// OPTIONS * goes to the app (basic's 404 for an unknown path), as on
	// plain connections and in gunicorn; net/http would answer it itself.
	oc, err := tls.Dial("tcp", s.Addr, &tls.Config{RootCAs: p.Pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close()
	oc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(oc, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
	oresp, err := http.ReadResponse(bufio.NewReader(oc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(oresp.Body); oresp.StatusCode != 404 || string(body) != "not found\n" {
		t.Errorf("OPTIONS *: %d %q, want the app's 404", oresp.StatusCode, body)
	}
	// A client that refuses anything below TLS 1.3 is served too.
	c13 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}}}
	resp, _ = getEnviron(t, c13, base)
	if resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("TLS 1.3 client got version %x", resp.TLS.Version)
	}
	// And one limited to TLS 1.1 is not.
	c11 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11}}}
	if resp, err := c11.Get(base + "/pid"); err == nil {
		resp.Body.Close()
		t.Error("a TLS 1.1 client was served")
	}
}

func TestTLSHTTP2(t *testing.T) {
	p := newTestPKI(t)
	s, base := startTLS(t, p, "--threads", "4")
	c := p.client(true, false)

	t.Run("environ", func(t *testing.T) {
		resp, env := getEnviron(t, c, base)
		if resp.Proto != "HTTP/2.0" || resp.TLS.NegotiatedProtocol != "h2" {
			t.Fatalf("proto %s, ALPN %q", resp.Proto, resp.TLS.NegotiatedProtocol)
		}
		// As gunicorn 25: SERVER_PROTOCOL "HTTP/%s" % ".".join(version), version (2, 0).
		if env["SERVER_PROTOCOL"] != "HTTP/2.0" || env["wsgi.url_scheme"] != "https" {
			t.Errorf("SERVER_PROTOCOL %v, url_scheme %v", env["SERVER_PROTOCOL"], env["wsgi.url_scheme"])
		}
		if env["HTTP_HOST"] != s.Addr {
			t.Errorf("HTTP_HOST %v (from :authority), want %s", env["HTTP_HOST"], s.Addr)
		}
	})

	t.Run("connection-specific headers dropped", func(t *testing.T) {
		resp, err := c.Get(base + "/hop")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(b) != "ok" || resp.Proto != "HTTP/2.0" {
			t.Fatalf("%s %d %q %v", resp.Proto, resp.StatusCode, b, err)
		}
		for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection"} {
			if v, ok := resp.Header[k]; ok {
				t.Errorf("the HTTP/2 response has %s: %q", k, v)
			}
		}
	})

	t.Run("stream", func(t *testing.T) {
		resp, err := c.Get(base + "/stream?n=200&size=1000")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.Proto != "HTTP/2.0" || len(b) != 200000 || strings.Trim(string(b), "x") != "" {
			t.Fatalf("proto %s, %d bytes, err %v", resp.Proto, len(b), err)
		}
		// Large chunks come from shared memory: every byte in its place.
		resp2, err := c.Get(base + "/chunks?n=40&size=65536")
		if err != nil {
			t.Fatal(err)
		}
		defer resp2.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp2.Body)
		if err != nil || resp2.Proto != "HTTP/2.0" || n != 40*65536+39*40/2 || hex.EncodeToString(h.Sum(nil)) != resp2.Header.Get("X-Sha256") {
			t.Fatalf("chunks: proto %s, %d bytes, err %v, digest %x, want %s", resp2.Proto, n, err, h.Sum(nil), resp2.Header.Get("X-Sha256"))
		}
	})

	t.Run("close", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "closed")
		resp, err := c.Get(base + "/closing?" + marker)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(b) != 20000 || resp.Proto != "HTTP/2.0" {
			t.Fatalf("proto %s, %d bytes, err %v", resp.Proto, len(b), err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if got, _ := os.ReadFile(marker); string(got) == "closed" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the app's close() was not called for an HTTP/2 response")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("post", func(t *testing.T) {
		body := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB: pulled in Read frames
		for _, known := range []bool{true, false} {
			var r io.Reader = bytes.NewReader(body)
			if !known {
				r = io.MultiReader(r) // no length: an h2 body without content-length
			}
			resp, err := c.Post(base+"/echo", "application/octet-stream", r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || !bytes.Equal(got, body) {
				t.Fatalf("known length %v: status %d proto %s, %d bytes back, err %v", known, resp.StatusCode, resp.Proto, len(got), err)
			}
		}
	})

	t.Run("concurrent streams", func(t *testing.T) {
		// Four requests that each return only once all four are in the app
		// at once: they pass only if one HTTP/2 connection carries four
		// concurrent streams into four --threads slots.
		c := p.client(true, false)
		var mu sync.Mutex
		conns := map[net.Conn]bool{}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
					mu.Lock()
					conns[ci.Conn] = true
					mu.Unlock()
				}}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(testContext(t, 30*time.Second), trace), "GET", base+"/barrier", nil)
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "HTTP/2.0" || resp.Header.Get("Connection") != "" {
					errs <- fmt.Errorf("status %d body %q, Connection %q", resp.StatusCode, b, resp.Header.Get("Connection"))
				}
			}()
			if i == 0 {
				// Let the first request open the connection the others share.
				time.Sleep(200 * time.Millisecond)
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if len(conns) != 1 {
			t.Errorf("%d connections used, want 1", len(conns))
		}
	})
}

func TestTLSClientCertRequired(t *testing.T) {
	p := newTestPKI(t)
	_, base := startTLS(t, p, "--cert-reqs", "2", "--ca-certs", p.CA)
	for _, h2 := range []bool{false, true} {
		if resp, err := p.client(h2, false).Get(base + "/pid"); err == nil {
			resp.Body.Close()
			t.Errorf("h2 %v: a client without a certificate got %d", h2, resp.StatusCode)
		}
		resp, env := getEnviron(t, p.client(h2, true), base)
		if resp.StatusCode != 200 || env["wsgi.url_scheme"] != "https" {
			t.Errorf("h2 %v: with a certificate: %d %v", h2, resp.StatusCode, env["wsgi.url_scheme"])
		}
	}
}

func TestTLSPlainHTTPToTLSPort(t *testing.T) {
	p := newTestPKI(t)
	s, base := startTLS(t, p)
	c, r := s.rawConn()
	io.WriteString(c, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
	line, err := r.ReadString('\n')
	if err != nil || line != "HTTP/1.0 400 Bad Request\r\n" {
		t.Fatalf("status line %q, %v", line, err)
	}
	rest, _ := io.ReadAll(r) // the server closes the connection
	if !strings.Contains(string(rest), "HTTPS") {
		t.Errorf("response %q", rest)
	}
	// The worker serves on.
	resp, env := getEnviron(t, p.client(false, false), base)
	if resp.StatusCode != 200 || env["wsgi.url_scheme"] != "https" {
		t.Errorf("after plain HTTP: %d", resp.StatusCode)
	}
}

// TestTLSOffNoH2C checks that without TLS an HTTP/2 preface is not
// answered with HTTP/2: plain TCP never speaks h2c.
func TestTLSOffNoH2C(t *testing.T) {
	s := start(t, python(t), "tls_app:app")
	s.ready("/pid")
	c, r := s.rawConn()
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	line, err := r.ReadString('\n')
	if err != nil && line == "" {
		return // closed without an answer: no HTTP/2 either
	}
	if !strings.HasPrefix(line, "HTTP/1.") {
		t.Fatalf("a plain-TCP HTTP/2 preface got %q (%v): h2c is on", line, err)
	}
}

func TestTLSBadFiles(t *testing.T) {
	p := newTestPKI(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing certfile", []string{"--certfile", filepath.Join(p.Dir, "nope.pem"), "--keyfile", p.Key}, "--certfile " + filepath.Join(p.Dir, "nope.pem") + ": no such file or directory"},
		{"mismatched key", []string{"--certfile", p.Cert, "--keyfile", p.OtherKey}, "private key does not match"},
		{"unknown cipher", []string{"--certfile", p.Cert, "--keyfile", p.Key, "--ciphers", "ECDHE+AESGCM:NOPE"}, `unknown cipher "NOPE"`},
		{"bad cert-reqs", []string{"--certfile", p.Cert, "--keyfile", p.Key, "--cert-reqs", "3"}, "--cert-reqs must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, "", append(tt.args, "tls_app:app")...)
			if code := s.wait(10 * time.Second); code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, s.log.String())
			}
			out := strings.TrimRight(s.log.String(), "\n")
			if strings.Contains(out, "\n") || !strings.HasPrefix(out, "gorn: error: ") || !strings.Contains(out, tt.want) {
				t.Errorf("output %q, want one line with %q", out, tt.want)
			}
		})
	}
}

// TestTLSCiphers restricts TLS 1.2 to one suite and checks a TLS 1.2
// client gets it.
func TestTLSCiphers(t *testing.T) {
	p := newTestPKI(t)
	s, base := startTLS(t, p, "--ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256")
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12}}}
	resp, err := c.Get(base + "/pid")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("cipher suite %s", tls.CipherSuiteName(resp.TLS.CipherSuite))
	}
	if !strings.Contains(s.log.String(), "ignoring DHE-RSA-AES128-GCM-SHA256") {
		t.Errorf("no warning about the ignored suite:\n%s", s.log.String())
	}
	// A TLS 1.2 client offering only other suites is refused.
	c2 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}}}
	if resp, err := c2.Get(base + "/pid"); err == nil {
		resp.Body.Close()
		t.Error("a client without the configured suite was served over TLS 1.2")
	}
}
