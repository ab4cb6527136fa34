package master

import (
	"net"
	"strings"
	"testing"
)

// FuzzParseBind: any --bind value either fails or gives a network gorn
// can listen on and an address of the matching form; it never panics.
func FuzzParseBind(f *testing.F) {
	for _, seed := range []string{
		"127.0.0.1:8000", "localhost", "[::1]:80", "[::]", "unix:/run/x.sock", "unix:///x",
		"fd://3", "tcp://h:1", ":8000", "::1:8000", "[::1", "h:99999", "fd://-1", "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, bind string) {
		network, addr, err := ParseBind(bind)
		if err != nil {
			return
		}
		switch network {
		case "unix":
			if addr == "" {
				t.Fatalf("ParseBind(%q): empty unix path", bind)
			}
		case "fd":
			if strings.TrimLeft(addr, "0123456789") != "" || addr == "" {
				t.Fatalf("ParseBind(%q): fd %q is not a number", bind, addr)
			}
		case "tcp", "tcp4", "tcp6":
			if _, _, err := net.SplitHostPort(addr); err != nil {
				t.Fatalf("ParseBind(%q) = %q, which is not host:port: %v", bind, addr, err)
			}
		default:
			t.Fatalf("ParseBind(%q): unknown network %q", bind, network)
		}
	})
}
