package tlsconf

import (
	"crypto/tls"
	"testing"
)

// FuzzParseCiphers: any --ciphers string either fails or yields only
// cipher suites Go implements, without duplicates, and never panics.
func FuzzParseCiphers(f *testing.F) {
	for _, seed := range []string{
		"", "ECDHE+AESGCM:!aNULL", "HIGH:!MD5:@STRENGTH", "DEFAULT", "ALL:-RSA",
		"ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"DHE-RSA-AES256-SHA", "nonsense", "+", "!", ":::", "ECDHE+CHACHA20:+AES",
	} {
		f.Add(seed)
	}
	known := map[uint16]bool{}
	for _, s := range tls.CipherSuites() {
		known[s.ID] = true
	}
	for _, s := range tls.InsecureCipherSuites() {
		known[s.ID] = true
	}
	f.Fuzz(func(t *testing.T, spec string) {
		ids, _, err := ParseCiphers(spec)
		if err != nil {
			return
		}
		seen := map[uint16]bool{}
		for _, id := range ids {
			if !known[id] {
				t.Fatalf("ParseCiphers(%q) gave suite 0x%04x, which Go does not implement", spec, id)
			}
			if seen[id] {
				t.Fatalf("ParseCiphers(%q) gave suite 0x%04x twice", spec, id)
			}
			seen[id] = true
		}
	})
}
