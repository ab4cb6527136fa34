package tlsconf

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/internal/testpki"
)

func TestCipherMapping(t *testing.T) {
	ecdheGCM := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	}
	tests := []struct {
		spec    string
		want    []uint16 // nil: only check wantErr / contains
		has     []uint16
		hasNot  []uint16
		ignored []string
		wantErr string
	}{
		{spec: "ECDHE-RSA-AES128-GCM-SHA256", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
		{spec: "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
		{spec: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}},
		{spec: "AES128-SHA", want: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}},
		{spec: "DES-CBC3-SHA, AES256-SHA", want: []uint16{tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}},
		{spec: "ECDHE+AESGCM", want: ecdheGCM},
		{spec: "EECDH+AESGCM:!aNULL", want: ecdheGCM},
		{spec: "ECDHE+AESGCM:-aECDSA", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}},
		{spec: "!kRSA:ALL", has: []uint16{tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA}, hasNot: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}},
		{spec: "ALL:!3DES:!SHA1:!kRSA", hasNot: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}, has: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
		{spec: "HIGH:!aNULL:!MD5", hasNot: []uint16{tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256}, has: ecdheGCM},
		{spec: "HIGH:kRSA", has: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
		{spec: "DEFAULT", has: ecdheGCM, hasNot: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}},
		{spec: "ECDHE:!aNULL:!eNULL:!LOW:!3DES:!MD5:!EXP:!PSK:!SRP:!DSS:!RC4:!SHA", has: ecdheGCM, hasNot: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}},
		{spec: "CHACHA20:@STRENGTH", want: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}},
		{spec: "ECDHE-RSA-AES128-GCM-SHA256:+AES256:@SECLEVEL=2", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
		// Real OpenSSL suites Go lacks, and TLS 1.3 suites: ignored.
		{spec: "DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CAMELLIA128-SHA256:ECDHE-RSA-AES128-GCM-SHA256", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, ignored: []string{"DHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CAMELLIA128-SHA256"}},
		{spec: "TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES256-GCM-SHA384", want: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, ignored: []string{"TLS_AES_128_GCM_SHA256"}},
		{spec: "RC4-SHA:AES128-SHA", want: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}, ignored: []string{"RC4-SHA"}},
		// Errors: typos, wrong case, nothing left.
		{spec: "ECDHE-RSA-AES128-GCM-SHA265", wantErr: `unknown cipher "ECDHE-RSA-AES128-GCM-SHA265"`},
		{spec: "ECDHE-RSA-AES128-GCM-SHA256:BOGUS", wantErr: `unknown cipher "BOGUS"`},
		{spec: "ecdhe+aesgcm", wantErr: `unknown cipher "ecdhe+aesgcm"`},
		{spec: "ECDHE+NOPE", wantErr: `unknown cipher "ECDHE+NOPE"`},
		{spec: "@FOO", wantErr: `unknown cipher "@FOO"`},
		{spec: "!", wantErr: "empty entry"},
		{spec: "DHE-RSA-AES256-SHA", wantErr: "selects no TLS 1.2 cipher suite"},
		{spec: "ALL:!ALL", wantErr: "selects no TLS 1.2 cipher suite"},
		{spec: "!ECDHE:ECDHE-RSA-AES128-GCM-SHA256", wantErr: "selects no TLS 1.2 cipher suite"},
		{spec: "aNULL", wantErr: "selects no TLS 1.2 cipher suite"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			ids, ignored, err := ParseCiphers(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil && !sameSet(ids, tt.want) {
				t.Errorf("ids = %v, want %v", names(ids), names(tt.want))
			}
			for _, id := range tt.has {
				if !slices.Contains(ids, id) {
					t.Errorf("%s missing from %v", tls.CipherSuiteName(id), names(ids))
				}
			}
			for _, id := range tt.hasNot {
				if slices.Contains(ids, id) {
					t.Errorf("%s in %v", tls.CipherSuiteName(id), names(ids))
				}
			}
			if !slices.Equal(ignored, tt.ignored) {
				t.Errorf("ignored = %v, want %v", ignored, tt.ignored)
			}
		})
	}
}

// TestCipherTable checks every OpenSSL name maps to the Go suite of the
// same IANA meaning and that the table covers every non-RC4 TLS 1.2 suite
// Go implements.
func TestCipherTable(t *testing.T) {
	seen := map[uint16]bool{}
	for _, s := range suites {
		name := tls.CipherSuiteName(s.id)
		if seen[s.id] {
			t.Errorf("%s listed twice", name)
		}
		seen[s.id] = true
		// The IANA name spells the same parts: TLS_<kx>_<auth>_WITH_<enc>_<mac>.
		want := map[string]string{"AES128GCM": "AES_128_GCM", "AES256GCM": "AES_256_GCM", "CHACHA20": "CHACHA20_POLY1305", "AES128": "AES_128_CBC", "AES256": "AES_256_CBC", "3DES": "3DES_EDE_CBC"}[s.enc]
		if !strings.Contains(name, "_WITH_"+want+"_") || !strings.HasSuffix(name, "_"+strings.TrimSuffix(s.mac, "1")) {
			t.Errorf("%s: enc %s mac %s do not match %s", s.openssl, s.enc, s.mac, name)
		}
		if !strings.HasPrefix(name, "TLS_"+s.kx+"_") || (s.kx == "ECDHE" && !strings.HasPrefix(name, "TLS_ECDHE_"+s.auth+"_")) {
			t.Errorf("%s: kx %s auth %s do not match %s", s.openssl, s.kx, s.auth, name)
		}
		secure := slices.ContainsFunc(tls.CipherSuites(), func(c *tls.CipherSuite) bool { return c.ID == s.id })
		if secure != s.secure {
			t.Errorf("%s: secure = %v, Go says %v", s.openssl, s.secure, secure)
		}
	}
	for _, c := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if !slices.Contains(c.SupportedVersions, tls.VersionTLS12) || strings.Contains(c.Name, "RC4") {
			continue
		}
		if !seen[c.ID] {
			t.Errorf("%s has no OpenSSL name in the table", c.Name)
		}
	}
}

func sameSet(a, b []uint16) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func names(ids []uint16) []string {
	var out []string
	for _, id := range ids {
		out = append(out, tls.CipherSuiteName(id))
	}
	return out
}

func TestClientAuth(t *testing.T) {
	tests := []struct {
		reqs    int
		want    tls.ClientAuthType
		wantErr bool
	}{
		{0, tls.NoClientCert, false},
		{1, tls.VerifyClientCertIfGiven, false},
		{2, tls.RequireAndVerifyClientCert, false},
		{3, 0, true},
		{-1, 0, true},
	}
	for _, tt := range tests {
		got, err := ClientAuth(tt.reqs)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ClientAuth(%d) = %v, %v; want %v, err %v", tt.reqs, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNew(t *testing.T) {
	p := testpki.New(t)
	garbage := filepath.Join(p.Dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cfg        config.Config
		wantErr    string
		wantOff    bool
		clientAuth tls.ClientAuthType
		ciphers    int // len(CipherSuites)
		warnings   int
	}{
		{name: "off", cfg: config.Config{}, wantOff: true},
		{name: "cert and key", cfg: config.Config{CertFile: p.Cert, KeyFile: p.Key}},
		{name: "key in the cert file", cfg: config.Config{CertFile: p.Combo}},
		{name: "client certs optional", cfg: config.Config{CertFile: p.Cert, KeyFile: p.Key, CACerts: p.CA, CertReqs: 1}, clientAuth: tls.VerifyClientCertIfGiven},
		{name: "client certs required", cfg: config.Config{CertFile: p.Cert, KeyFile: p.Key, CACerts: p.CA, CertReqs: 2}, clientAuth: tls.RequireAndVerifyClientCert},
		{name: "ciphers", cfg: config.Config{CertFile: p.Cert, KeyFile: p.Key, Ciphers: "ECDHE+AESGCM:DHE-RSA-AES128-GCM-SHA256"}, ciphers: 4, warnings: 1},
		{name: "missing cert", cfg: config.Config{CertFile: filepath.Join(p.Dir, "nope.pem"), KeyFile: p.Key}, wantErr: "--certfile " + filepath.Join(p.Dir, "nope.pem") + ": no such file or directory"},
		{name: "missing key", cfg: config.Config{CertFile: p.Cert, KeyFile: filepath.Join(p.Dir, "nope.pem")}, wantErr: "--keyfile " + filepath.Join(p.Dir, "nope.pem") + ": no such file or directory"},
		{name: "unreadable cert", cfg: config.Config{CertFile: p.Dir, KeyFile: p.Key}, wantErr: "--certfile " + p.Dir + ": is a directory"},
		{name: "no key in the cert file", cfg: config.Config{CertFile: p.Cert}, wantErr: "the private key must be in the certificate file"},
		{name: "mismatched key", cfg: config.Config{CertFile: p.Cert, KeyFile: p.OtherKey}, wantErr: "private key does not match public key"},
		{name: "garbage cert", cfg: config.Config{CertFile: garbage, KeyFile: p.Key}, wantErr: "--certfile " + garbage},
		{name: "keyfile alone", cfg: config.Config{KeyFile: p.Key}, wantErr: "--keyfile needs --certfile"},
		{name: "ca-certs without tls", cfg: config.Config{CACerts: p.CA}, wantErr: "need --certfile"},
		{name: "missing ca", cfg: config.Config{CertFile: p.Cert, KeyFile: p.Key, CACerts: filepath.Join(p.Dir, "nope.pem"), CertReqs: 2}, wantErr: "--ca-certs"},
		{name: "garbage ca", cfg: config.Config{CertFile: p.Cert, KeyFile: p.Key, CACerts: garbage, CertReqs: 2}, wantErr: "no PEM certificate found"},
		{name: "required without ca", cfg: config.Config{CertFile: p.Cert, KeyFile: p.Key, CertReqs: 2}, wantErr: "--cert-reqs 2 needs --ca-certs"},
		{name: "bad cert-reqs", cfg: config.Config{CertFile: p.Cert, KeyFile: p.Key, CertReqs: 5}, wantErr: "--cert-reqs must be"},
		{name: "bad ciphers", cfg: config.Config{CertFile: p.Cert, KeyFile: p.Key, Ciphers: "NOPE"}, wantErr: `unknown cipher "NOPE"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			warnings, err := Check(&tt.cfg)
			tc, err2 := New(&tt.cfg)
			if (err == nil) != (err2 == nil) {
				t.Fatalf("Check and New disagree: %v / %v", err, err2)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.ContainsAny(err.Error(), "\r\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantOff {
				if tc != nil || Enabled(&tt.cfg) || tt.cfg.URLScheme() != "http" {
					t.Fatalf("TLS on for %+v", tt.cfg)
				}
				return
			}
			if tt.cfg.URLScheme() != "https" {
				t.Errorf("URLScheme = %q", tt.cfg.URLScheme())
			}
			if tc.MinVersion != tls.VersionTLS12 || len(tc.Certificates) != 1 || !slices.Equal(tc.NextProtos, []string{"h2", "http/1.1"}) {
				t.Errorf("config: min %x, %d certs, ALPN %v", tc.MinVersion, len(tc.Certificates), tc.NextProtos)
			}
			if tc.ClientAuth != tt.clientAuth {
				t.Errorf("ClientAuth = %v, want %v", tc.ClientAuth, tt.clientAuth)
			}
			if (tt.cfg.CACerts != "") != (tc.ClientCAs != nil) {
				t.Errorf("ClientCAs = %v with --ca-certs %q", tc.ClientCAs, tt.cfg.CACerts)
			}
			if len(tc.CipherSuites) != tt.ciphers || len(warnings) != tt.warnings {
				t.Errorf("%d suites, warnings %q; want %d, %d", len(tc.CipherSuites), warnings, tt.ciphers, tt.warnings)
			}
		})
	}
}

func TestProtocols(t *testing.T) {
	on, off := Protocols(true), Protocols(false)
	if !on.HTTP1() || !on.UnencryptedHTTP2() || on.HTTP2() {
		t.Errorf("TLS on: %v", on)
	}
	if !off.HTTP1() || off.UnencryptedHTTP2() || off.HTTP2() {
		t.Errorf("TLS off: %v", off)
	}
}

// TestConn runs the wrapper over a real loopback socket: ALPN, lazy
// handshake, client certificates, and the plain-HTTP answer.
func TestConn(t *testing.T) {
	p := testpki.New(t)
	tests := []struct {
		name       string
		certReqs   int
		clientCert bool
		alpn       []string
		plain      bool
		wantProto  string
		wantFail   bool
	}{
		{name: "h2", alpn: []string{"h2", "http/1.1"}, wantProto: "h2"},
		{name: "http/1.1", alpn: []string{"http/1.1"}, wantProto: "http/1.1"},
		{name: "no ALPN", wantProto: ""},
		{name: "client cert required and sent", certReqs: 2, clientCert: true, alpn: []string{"h2"}, wantProto: "h2"},
		{name: "client cert required, none sent", certReqs: 2, wantFail: true},
		{name: "client cert optional, none sent", certReqs: 1, alpn: []string{"http/1.1"}, wantProto: "http/1.1"},
		{name: "plain HTTP", plain: true, wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Config{CertFile: p.Cert, KeyFile: p.Key, CertReqs: tt.certReqs}
			if tt.certReqs > 0 {
				cfg.CACerts = p.CA
			}
			sc, err := New(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := NewListener(raw, sc, nil)
			defer ln.Close()
			type result struct {
				proto string
				state tls.ConnectionState
				line  string
				err   error
			}
			done := make(chan result, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- result{err: err}
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := c.(*Conn)
				var r result
				r.proto = tc.NegotiatedProtocol()
				r.state, r.err = tc.TLSConnectionState()
				if r.err == nil {
					r.line, r.err = bufio.NewReader(c).ReadString('\n')
					io.WriteString(c, "pong\n")
				}
				done <- r
			}()
			d := net.Dialer{Timeout: 10 * time.Second}
			if tt.plain {
				c, err := d.Dial("tcp", raw.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				b, _ := io.ReadAll(c)
				if !strings.HasPrefix(string(b), "HTTP/1.0 400 Bad Request\r\n") || !strings.Contains(string(b), "HTTPS") {
					t.Errorf("plain HTTP got %q", b)
				}
				if r := <-done; r.err == nil || r.proto != "" {
					t.Errorf("server side: proto %q, err %v", r.proto, r.err)
				}
				return
			}
			ccfg := &tls.Config{RootCAs: p.Pool, ServerName: "localhost", NextProtos: tt.alpn}
			if tt.clientCert {
				ccfg.Certificates = []tls.Certificate{p.ClientCert}
			}
			c, err := tls.DialWithDialer(&d, "tcp", raw.Addr().String(), ccfg)
			if err != nil {
				t.Fatal(err) // TLS 1.3: a missing client cert shows on the first read
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "ping\n")
			reply, rerr := bufio.NewReader(c).ReadString('\n')
			r := <-done
			if tt.wantFail {
				if rerr == nil || r.err == nil {
					t.Fatalf("handshake succeeded: client %q %v, server %v", reply, rerr, r.err)
				}
				return
			}
			if rerr != nil || reply != "pong\n" || r.err != nil || r.line != "ping\n" {
				t.Fatalf("exchange: client %q %v, server %q %v", reply, rerr, r.line, r.err)
			}
			if r.proto != tt.wantProto || c.ConnectionState().NegotiatedProtocol != tt.wantProto {
				t.Errorf("protocol: server %q, client %q, want %q", r.proto, c.ConnectionState().NegotiatedProtocol, tt.wantProto)
			}
			if tt.clientCert && (len(r.state.PeerCertificates) != 1 || r.state.PeerCertificates[0].Subject.CommonName != "client") {
				t.Errorf("client certificate not seen: %v", r.state.PeerCertificates)
			}
			if r.state.Version < tls.VersionTLS12 {
				t.Errorf("version %x", r.state.Version)
			}
		})
	}
}

// TestConnMinVersion checks a TLS 1.1 client is refused.
func TestConnMinVersion(t *testing.T) {
	p := testpki.New(t)
	sc, err := New(&config.Config{CertFile: p.Cert, KeyFile: p.Key})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(raw, sc, nil)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Read(make([]byte, 1))
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(&d, "tcp", raw.Addr().String(), &tls.Config{RootCAs: p.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 client was accepted")
	}
}
