// Package tlsconf builds gorn's server *tls.Config from gunicorn's TLS flags
// (--certfile, --keyfile, --ca-certs, --cert-reqs, --ciphers) and wraps
// accepted connections in server-side TLS.
//
// The master calls Check at startup (and on reload) so a missing,
// unreadable or mismatched file stops gorn with one line and exit 1; each
// worker calls New once at boot and shares the result between all its
// connections.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/gorn-project/gorn/config"
)

// Values of --cert-reqs, as Python's ssl module numbers them.
const (
	CertNone     = 0 // ssl.CERT_NONE: no client certificate is asked for
	CertOptional = 1 // ssl.CERT_OPTIONAL: verified if the client sends one
	CertRequired = 2 // ssl.CERT_REQUIRED: the client must send a valid one
)

// ALPN protocol IDs offered, in order of preference.
var nextProtos = []string{"h2", "http/1.1"}

// Enabled reports whether cfg turns TLS on: gunicorn serves TLS as soon as
// a certificate or a key file is given, on every bind.
func Enabled(cfg *config.Config) bool { return cfg.CertFile != "" || cfg.KeyFile != "" }

// ClientAuth maps --cert-reqs to Go's client authentication policy.
func ClientAuth(certReqs int) (tls.ClientAuthType, error) {
	switch certReqs {
	case CertNone:
		return tls.NoClientCert, nil
	case CertOptional:
		return tls.VerifyClientCertIfGiven, nil
	case CertRequired:
		return tls.RequireAndVerifyClientCert, nil
	}
	return 0, fmt.Errorf("--cert-reqs must be 0 (none), 1 (optional) or 2 (required), not %d", certReqs)
}

// New builds the worker's TLS configuration from cfg; nil (and no error)
// when TLS is off. Errors are one line, naming the flag at fault.
func New(cfg *config.Config) (*tls.Config, error) {
	tc, _, err := build(cfg)
	return tc, err
}

// Check validates the TLS flags as New would and returns warnings about
// what is accepted but has no effect (cipher names Go does not implement).
func Check(cfg *config.Config) ([]string, error) {
	_, warnings, err := build(cfg)
	return warnings, err
}

func build(cfg *config.Config) (*tls.Config, []string, error) {
	if !Enabled(cfg) {
		if cfg.CACerts != "" || cfg.CertReqs != CertNone || cfg.Ciphers != "" {
			return nil, nil, errors.New("--ca-certs, --cert-reqs and --ciphers need --certfile")
		}
		return nil, nil, nil
	}
	if cfg.CertFile == "" {
		return nil, nil, errors.New("--keyfile needs --certfile")
	}
	certPEM, err := readFile("--certfile", cfg.CertFile)
	if err != nil {
		return nil, nil, err
	}
	keyPEM := certPEM // the key may follow the certificate in one file
	if cfg.KeyFile != "" {
		if keyPEM, err = readFile("--keyfile", cfg.KeyFile); err != nil {
			return nil, nil, err
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if cfg.KeyFile == "" {
			return nil, nil, fmt.Errorf("--certfile %s: %v (without --keyfile the private key must be in the certificate file)", cfg.CertFile, oneLine(err))
		}
		return nil, nil, fmt.Errorf("--certfile %s and --keyfile %s: %v", cfg.CertFile, cfg.KeyFile, oneLine(err))
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   nextProtos,
	}
	if tc.ClientAuth, err = ClientAuth(cfg.CertReqs); err != nil {
		return nil, nil, err
	}
	if cfg.CACerts != "" {
		caPEM, err := readFile("--ca-certs", cfg.CACerts)
		if err != nil {
			return nil, nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, nil, fmt.Errorf("--ca-certs %s: no PEM certificate found", cfg.CACerts)
		}
		tc.ClientCAs = pool
	} else if cfg.CertReqs != CertNone {
		// Go would verify client certificates against the system roots,
		// accepting any publicly issued certificate: never what is meant.
		return nil, nil, fmt.Errorf("--cert-reqs %d needs --ca-certs, the CAs that sign client certificates", cfg.CertReqs)
	}
	var warnings []string
	if cfg.Ciphers != "" {
		ids, ignored, err := ParseCiphers(cfg.Ciphers)
		if err != nil {
			return nil, nil, err
		}
		tc.CipherSuites = ids
		if len(ignored) > 0 {
			warnings = append(warnings, fmt.Sprintf("--ciphers: ignoring %s: not implemented by Go's TLS 1.2, or a TLS 1.3 suite (TLS 1.3 suites are not configurable)", strings.Join(ignored, ", ")))
		}
	}
	return tc, warnings, nil
}

// Protocols is the http.Server protocol set for a worker. With TLS on, the
// worker terminates TLS itself, so net/http sees a plain stream: HTTP/2
// negotiated by ALPN then reaches net/http as "unencrypted" HTTP/2. With
// TLS off, only HTTP/1 is served: no h2c on plain TCP.
func Protocols(tlsOn bool) *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	if tlsOn {
		p.SetUnencryptedHTTP2(true)
	}
	return p
}

func readFile(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s %s: %v", flag, path, err)
	}
	return b, nil
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
