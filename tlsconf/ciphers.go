package tlsconf

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// suite is a TLS 1.2 cipher suite Go implements, with the attributes
// OpenSSL's cipher-string keywords select on.
type suite struct {
	openssl string // OpenSSL's name
	id      uint16
	kx      string // key exchange: ECDHE or RSA
	auth    string // authentication: RSA or ECDSA
	enc     string // AES128GCM, AES256GCM, CHACHA20, AES128, AES256, 3DES
	mac     string // digest in the name: SHA1, SHA256, SHA384
	secure  bool   // in tls.CipherSuites(), not tls.InsecureCipherSuites()
}

// suites are the TLS 1.2 suites --ciphers can select. RC4 is left out on
// purpose: its names are accepted and ignored.
var suites = []suite{
	{"ECDHE-ECDSA-AES128-GCM-SHA256", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ECDHE", "ECDSA", "AES128GCM", "SHA256", true},
	{"ECDHE-RSA-AES128-GCM-SHA256", tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "ECDHE", "RSA", "AES128GCM", "SHA256", true},
	{"ECDHE-ECDSA-AES256-GCM-SHA384", tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "ECDHE", "ECDSA", "AES256GCM", "SHA384", true},
	{"ECDHE-RSA-AES256-GCM-SHA384", tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "ECDHE", "RSA", "AES256GCM", "SHA384", true},
	{"ECDHE-ECDSA-CHACHA20-POLY1305", tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE", "ECDSA", "CHACHA20", "SHA256", true},
	{"ECDHE-RSA-CHACHA20-POLY1305", tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, "ECDHE", "RSA", "CHACHA20", "SHA256", true},
	{"ECDHE-ECDSA-AES128-SHA", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, "ECDHE", "ECDSA", "AES128", "SHA1", true},
	{"ECDHE-RSA-AES128-SHA", tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, "ECDHE", "RSA", "AES128", "SHA1", true},
	{"ECDHE-ECDSA-AES256-SHA", tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, "ECDHE", "ECDSA", "AES256", "SHA1", true},
	{"ECDHE-RSA-AES256-SHA", tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, "ECDHE", "RSA", "AES256", "SHA1", true},
	{"ECDHE-ECDSA-AES128-SHA256", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, "ECDHE", "ECDSA", "AES128", "SHA256", false},
	{"ECDHE-RSA-AES128-SHA256", tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, "ECDHE", "RSA", "AES128", "SHA256", false},
	{"ECDHE-RSA-DES-CBC3-SHA", tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, "ECDHE", "RSA", "3DES", "SHA1", false},
	{"AES128-GCM-SHA256", tls.TLS_RSA_WITH_AES_128_GCM_SHA256, "RSA", "RSA", "AES128GCM", "SHA256", false},
	{"AES256-GCM-SHA384", tls.TLS_RSA_WITH_AES_256_GCM_SHA384, "RSA", "RSA", "AES256GCM", "SHA384", false},
	{"AES128-SHA256", tls.TLS_RSA_WITH_AES_128_CBC_SHA256, "RSA", "RSA", "AES128", "SHA256", false},
	{"AES128-SHA", tls.TLS_RSA_WITH_AES_128_CBC_SHA, "RSA", "RSA", "AES128", "SHA1", false},
	{"AES256-SHA", tls.TLS_RSA_WITH_AES_256_CBC_SHA, "RSA", "RSA", "AES256", "SHA1", false},
	{"DES-CBC3-SHA", tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, "RSA", "RSA", "3DES", "SHA1", false},
}

// keywords are OpenSSL's cipher-string aliases, as predicates on suites.
// Those that match nothing Go implements (DHE, CAMELLIA, PSK, ...) still
// parse, so "!DHE" or "!aNULL" works as in OpenSSL.
var keywords = map[string]func(s *suite) bool{
	"ALL":     func(s *suite) bool { return true },
	"DEFAULT": func(s *suite) bool { return s.secure },
	// HIGH is Go's secure suites, as DEFAULT: OpenSSL's also has RSA key
	// exchange (no forward secrecy), which the common HIGH:!aNULL:!MD5
	// would turn on unasked; kRSA adds those suites.
	"HIGH":     func(s *suite) bool { return s.secure },
	"MEDIUM":   func(s *suite) bool { return s.enc == "3DES" },
	"TLSv1.2":  func(s *suite) bool { return true },
	"kRSA":     func(s *suite) bool { return s.kx == "RSA" },
	"RSA":      func(s *suite) bool { return s.kx == "RSA" },
	"aRSA":     func(s *suite) bool { return s.auth == "RSA" },
	"kECDHE":   func(s *suite) bool { return s.kx == "ECDHE" },
	"kEECDH":   func(s *suite) bool { return s.kx == "ECDHE" },
	"ECDHE":    func(s *suite) bool { return s.kx == "ECDHE" },
	"EECDH":    func(s *suite) bool { return s.kx == "ECDHE" },
	"aECDSA":   func(s *suite) bool { return s.auth == "ECDSA" },
	"ECDSA":    func(s *suite) bool { return s.auth == "ECDSA" },
	"AES":      func(s *suite) bool { return strings.HasPrefix(s.enc, "AES") },
	"AES128":   func(s *suite) bool { return strings.HasPrefix(s.enc, "AES128") },
	"AES256":   func(s *suite) bool { return strings.HasPrefix(s.enc, "AES256") },
	"AESGCM":   func(s *suite) bool { return strings.HasSuffix(s.enc, "GCM") },
	"CHACHA20": func(s *suite) bool { return s.enc == "CHACHA20" },
	"3DES":     func(s *suite) bool { return s.enc == "3DES" },
	"SHA1":     func(s *suite) bool { return s.mac == "SHA1" },
	"SHA":      func(s *suite) bool { return s.mac == "SHA1" },
	"SHA256":   func(s *suite) bool { return s.mac == "SHA256" },
	"SHA384":   func(s *suite) bool { return s.mac == "SHA384" },
}

// nothing are OpenSSL keywords that select no suite Go implements.
var nothing = map[string]bool{}

func init() {
	for _, k := range strings.Fields(`COMPLEMENTOFDEFAULT COMPLEMENTOFALL LOW EXP EXPORT
		eNULL NULL aNULL ADH AECDH DH DHE EDH kDHE kEDH kDHr kDHd kDH kECDH kECDHr kECDHe aDH
		aECDH ECDH aDSS DSS CAMELLIA CAMELLIA128 CAMELLIA256 ARIA ARIA128 ARIA256 ARIAGCM SEED
		IDEA RC2 RC4 DES MD5 PSK kPSK aPSK kRSAPSK kDHEPSK kECDHEPSK SRP kSRP aSRP AESCCM AESCCM8
		GOST94 GOST89MAC kGOST aGOST aGOST01 aGOST12 SSLv3 SSLv2 TLSv1 TLSv1.0
		SUITEB128 SUITEB128ONLY SUITEB192 kFZA aFZA eFZA FZA`) {
		nothing[k] = true
	}
}

// nameParts are the pieces OpenSSL suite names are made of: a name made of
// these that is not in suites is a real suite Go does not implement
// (DHE-RSA-AES128-GCM-SHA256, ECDHE-RSA-CAMELLIA128-SHA256, ...), accepted
// and ignored; anything else is a typo and an error.
var nameParts = map[string]bool{
	"ECDHE": true, "DHE": true, "EDH": true, "ECDH": true, "DH": true, "ADH": true, "AECDH": true,
	"RSA": true, "ECDSA": true, "DSS": true, "PSK": true, "SRP": true, "ANON": true, "NULL": true,
	"AES": true, "AES128": true, "AES256": true, "GCM": true, "CCM": true, "CCM8": true,
	"CHACHA20": true, "POLY1305": true, "CAMELLIA": true, "CAMELLIA128": true, "CAMELLIA256": true,
	"ARIA128": true, "ARIA256": true, "SEED": true, "IDEA": true, "DES": true, "CBC": true,
	"CBC3": true, "RC4": true, "RC2": true, "MD5": true, "SHA": true, "SHA256": true, "SHA384": true,
	"EXP": true, "EXP1024": true, "KRB5": true, "GOST94": true, "GOST89": true, "GOST2001": true,
	"GOST2012": true, "MAGMA": true, "KUZNYECHIK": true, "CBC1": true,
}

// tls13Names are the TLS 1.3 suites: OpenSSL configures them apart
// (SSL_CTX_set_ciphersuites) and Go not at all.
var tls13Names = map[string]bool{
	"TLS_AES_128_GCM_SHA256": true, "TLS_AES_256_GCM_SHA384": true,
	"TLS_CHACHA20_POLY1305_SHA256": true, "TLS_AES_128_CCM_SHA256": true,
	"TLS_AES_128_CCM_8_SHA256": true,
}

// ParseCiphers turns an OpenSSL cipher string, as gunicorn's --ciphers
// takes ("ECDHE+AESGCM:!aNULL", "ECDHE-RSA-AES128-GCM-SHA256:...") into
// Go's TLS 1.2 cipher suite IDs. Entries are separated by ':', ',' or
// spaces; an entry is a suite name (OpenSSL's or Go's), or keywords joined
// by '+' (all must match), prefixed by '!' (remove for good), '-' (remove)
// or '+' (reorder: a no-op, as Go orders suites itself). "@STRENGTH" and
// "@SECLEVEL=n" are accepted and ignored.
//
// ignored lists real suite names Go does not implement (and TLS 1.3
// suites): gunicorn accepts them, so gorn does too. An unknown name is an
// error, as is a string that selects no suite at all.
func ParseCiphers(spec string) (ids []uint16, ignored []string, err error) {
	selected := make([]bool, len(suites))
	banned := make([]bool, len(suites))
	fields := strings.FieldsFunc(spec, func(r rune) bool { return r == ':' || r == ',' || r == ' ' || r == '\t' })
	for _, f := range fields {
		op := byte(0)
		if f[0] == '!' || f[0] == '-' || f[0] == '+' {
			op, f = f[0], f[1:]
		}
		if f == "" {
			return nil, nil, fmt.Errorf("--ciphers %q: empty entry after %q", spec, string(op))
		}
		if f[0] == '@' {
			u := strings.ToUpper(f)
			if u == "@STRENGTH" || strings.HasPrefix(u, "@SECLEVEL=") {
				continue
			}
			return nil, nil, fmt.Errorf("--ciphers %q: unknown cipher %q", spec, f)
		}
		match, known := matcher(f)
		if !known {
			return nil, nil, fmt.Errorf("--ciphers %q: unknown cipher %q", spec, f)
		}
		if match == nil {
			if op == 0 && !isKeyword(f) {
				ignored = append(ignored, f)
			}
			continue
		}
		for i := range suites {
			if !match(&suites[i]) {
				continue
			}
			switch op {
			case '!':
				banned[i], selected[i] = true, false
			case '-':
				selected[i] = false
			case 0:
				if !banned[i] {
					selected[i] = true
				}
			}
		}
	}
	for i, s := range suites {
		if selected[i] {
			ids = append(ids, s.id)
		}
	}
	if len(ids) == 0 {
		return nil, ignored, fmt.Errorf("--ciphers %q selects no TLS 1.2 cipher suite that Go implements", spec)
	}
	return ids, ignored, nil
}

// matcher returns the predicate an entry selects with; nil with known true
// when it is valid but selects nothing Go implements.
func matcher(entry string) (func(*suite) bool, bool) {
	for i := range suites {
		if suites[i].openssl == entry || tls.CipherSuiteName(suites[i].id) == entry {
			id := suites[i].id
			return func(s *suite) bool { return s.id == id }, true
		}
	}
	if tls13Names[entry] || strings.HasPrefix(entry, "TLS_") && knownGoName(entry) {
		return nil, true
	}
	if strings.Contains(entry, "+") || isKeyword(entry) {
		var preds []func(*suite) bool
		for _, k := range strings.Split(entry, "+") {
			if nothing[k] {
				return nil, true
			}
			p, ok := keywords[k]
			if !ok {
				return nil, false
			}
			preds = append(preds, p)
		}
		return func(s *suite) bool {
			for _, p := range preds {
				if !p(s) {
					return false
				}
			}
			return true
		}, true
	}
	parts := strings.Split(entry, "-")
	if len(parts) < 2 {
		return nil, false
	}
	for _, p := range parts {
		if !nameParts[p] {
			return nil, false
		}
	}
	return nil, true
}

// isKeyword reports whether entry is a single OpenSSL keyword (they are
// case-sensitive, as in OpenSSL: kRSA, aECDSA, eNULL, TLSv1.2).
func isKeyword(entry string) bool {
	_, ok := keywords[entry]
	return ok || nothing[entry]
}

// knownGoName reports whether name is one of Go's own suite names.
func knownGoName(name string) bool {
	for _, s := range tls.CipherSuites() {
		if s.Name == name {
			return true
		}
	}
	for _, s := range tls.InsecureCipherSuites() {
		if s.Name == name {
			return true
		}
	}
	return false
}
