package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/gorn-project/gorn/httpguard"
	"github.com/gorn-project/gorn/httpguard/corpus"
)

// readConn is a connection that only reads, step bytes at a time.
type readConn struct {
	net.Conn
	r    io.Reader
	step int
}

func (c *readConn) Read(b []byte) (int, error) {
	if c.step > 0 && len(b) > c.step {
		b = b[:c.step]
	}
	return c.r.Read(b)
}

// differential passes raw through the guard, then parses what it let
// through (obs-fold permitted if fold) with net/http's http.ReadRequest and with readRequest: every
// request must come out the same, body included.
func differential(t *testing.T, raw []byte, step int, fold bool) {
	cfg := httpguard.Defaults()
	cfg.PermitObsFold = fold
	cfg.Body = 1 << 20
	out, _ := io.ReadAll(httpguard.Wrap(&readConn{r: bytes.NewReader(raw), step: step}, &cfg))
	netBR := bufio.NewReader(bytes.NewReader(out))
	ourBR := bufio.NewReader(bytes.NewReader(out))
	reuse := new(reqBuf) // as a connection: each request built where the previous one was
	c := &conn{srv: &Server{}, br: ourBR, bw: bufio.NewWriter(io.Discard)}
	for {
		want, wantErr := http.ReadRequest(netBR)
		got, err := readRequest(ourBR, "peer", nil, reuse)
		if wantErr != nil || err != nil {
			if (wantErr == nil) != (err == nil) && !(wantErr == io.EOF && errors.Is(err, errNoRequest)) {
				t.Fatalf("net/http: %v, readRequest: %v\ninput %q", wantErr, err, out)
			}
			return
		}
		if want.Header.Get("Pragma") == "no-cache" && got.Header.Get("Cache-Control") == "" {
			delete(want.Header, "Cache-Control") // net/http adds it; gorn passes headers as sent
		}
		for _, f := range []struct {
			name      string
			got, want any
		}{
			{"method", got.Method, want.Method},
			{"request URI", got.RequestURI, want.RequestURI},
			{"proto", got.Proto, want.Proto},
			{"version", [2]int{got.ProtoMajor, got.ProtoMinor}, [2]int{want.ProtoMajor, want.ProtoMinor}},
			{"path", got.URL.Path, want.URL.Path},
			{"query", got.URL.RawQuery, want.URL.RawQuery},
			{"URL host", got.URL.Host, want.URL.Host},
			{"scheme", got.URL.Scheme, want.URL.Scheme},
			{"host", got.Host, want.Host},
			{"header", got.Header, want.Header},
			{"content length", got.ContentLength, want.ContentLength},
			{"transfer encoding", got.TransferEncoding, want.TransferEncoding},
			{"close", got.Close, want.Close},
		} {
			if !reflect.DeepEqual(f.got, f.want) {
				t.Fatalf("%s: %#v, net/http %#v\ninput %q", f.name, f.got, f.want, out)
			}
		}
		checkOrder(t, reuse.order, got.Header, out)
		wantBody, wantErr := io.ReadAll(want.Body)
		var gotBody []byte
		if b := newBody(c, got); b != nil {
			gotBody, err = io.ReadAll(b)
		}
		if !bytes.Equal(gotBody, wantBody) || (wantErr == nil) != (err == nil) {
			t.Fatalf("body %q (%v), net/http %q (%v)\ninput %q", gotBody, err, wantBody, wantErr, out)
		}
		if err != nil {
			return
		}
	}
}

// checkOrder checks a request's field order against its Header: each
// key once, and nothing else but the fields newRequest takes out.
func checkOrder(t *testing.T, order []string, hdr http.Header, input []byte) {
	t.Helper()
	seen := make(map[string]bool, len(order))
	for _, k := range order {
		if seen[k] {
			t.Fatalf("field order %q names %q twice\ninput %q", order, k, input)
		}
		seen[k] = true
		if _, ok := hdr[k]; !ok && k != "Host" && k != "Transfer-Encoding" && k != "Content-Length" {
			t.Fatalf("field order %q names %q, not in the header %v\ninput %q", order, k, hdr, input)
		}
	}
	for k := range hdr {
		if !seen[k] {
			t.Fatalf("field order %q lacks %q\ninput %q", order, k, input)
		}
	}
}

// FuzzReadRequest checks readRequest against net/http on whatever the
// guard lets through; the request corpus seeds it.
func FuzzReadRequest(f *testing.F) {
	cases, err := corpus.Load("../testdata/requests")
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		f.Add(c.Raw, uint8(0), false)
	}
	f.Add([]byte("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /n HTTP/1.1\r\nHost: h\r\n\r\n"), uint8(3), false)
	f.Add([]byte("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), uint8(0), false)
	f.Add([]byte("GET //a/%2Fb?%20 HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n"), uint8(0), false)
	f.Add([]byte("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  2\r\n\r\n"), uint8(0), true)
	// Heads the buffered fast path leaves to the textproto one: larger
	// than the reader's buffer, and more fields than it takes.
	f.Add([]byte("GET / HTTP/1.1\r\nHost: h\r\nCookie: "+strings.Repeat("c", 5000)+"\r\nX-A: 1\r\ncookie: d\r\n\r\n"), uint8(0), false)
	f.Add([]byte("GET / HTTP/1.1\r\n"+strings.Repeat("X-B: 2\r\nX-A: 1\r\n", 20)+"Host: h\r\n\r\n"), uint8(7), false)
	f.Fuzz(func(t *testing.T, raw []byte, step uint8, fold bool) {
		differential(t, raw, int(step%16), fold)
	})
}
