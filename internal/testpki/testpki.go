// Package testpki generates a throwaway certificate authority, a server
// certificate and a client certificate for tests, as PEM files in the
// test's temporary directory: nothing is committed and nothing outlives the
// test. It is shared by the tlsconf unit tests and the end-to-end TLS tests.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a test CA and the certificates it signed. The paths name PEM
// files; certificates are valid from an hour ago to an hour from now.
type PKI struct {
	Dir string
	// CA is the CA certificate bundle.
	CA string
	// Cert and Key are the server certificate (for localhost and
	// 127.0.0.1) and its PKCS #8 key; Combo holds both in one file.
	Cert, Key, Combo string
	// OtherKey is a key that does not match Cert.
	OtherKey string
	// Pool trusts the CA.
	Pool *x509.CertPool
	// ClientCert is a client certificate (for client authentication)
	// signed by the CA.
	ClientCert tls.Certificate
}

// New generates a PKI in t.TempDir(); any failure fails t.
func New(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{Dir: t.TempDir()}
	caKey := genKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gorn test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p.Pool = x509.NewCertPool()
	p.Pool.AddCert(caCert)
	p.CA = p.write(t, "ca.pem", pemBlock("CERTIFICATE", caDER))

	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		k := genKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", kder)
	}
	certPEM, keyPEM := leaf(2, "localhost", x509.ExtKeyUsageServerAuth)
	p.Cert = p.write(t, "cert.pem", certPEM)
	p.Key = p.write(t, "key.pem", keyPEM)
	p.Combo = p.write(t, "combo.pem", append(append([]byte{}, certPEM...), keyPEM...))
	_, otherPEM := leaf(3, "other", x509.ExtKeyUsageServerAuth)
	p.OtherKey = p.write(t, "other-key.pem", otherPEM)
	ccPEM, ckPEM := leaf(4, "client", x509.ExtKeyUsageClientAuth)
	if p.ClientCert, err = tls.X509KeyPair(ccPEM, ckPEM); err != nil {
		t.Fatal(err)
	}
	return p
}

func genKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func (p *PKI) write(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
