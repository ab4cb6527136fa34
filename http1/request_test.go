package http1

import (
	"bufio"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestReadBufferedHead checks which heads the buffered fast path takes
// and that it reads them as the textproto path does.
func TestReadBufferedHead(t *testing.T) {
	many := "GET / HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X-A: 1\r\n", maxFastFields) + "\r\n"
	tests := []struct {
		name string
		raw  string
		fast bool
	}{
		{"host only", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"no fields", "GET / HTTP/1.0\r\n\r\n", true},
		{"names as sent and canonical", "POST /p?q=1 HTTP/1.1\r\nhost: h\r\ncontent-LENGTH: 3\r\nX_Under: u\r\nAccept: a\r\n\r\nabc", true},
		{"repeated names", "GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nAccept: x\r\ncookie: b=2\r\n\r\n", true},
		{"space and tab around values", "GET / HTTP/1.1\r\nHost:h\r\nX-A: \t v w \t\r\nX-B:\r\n\r\n", true},
		{"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"connection close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n", true},
		{"absolute form", "GET http://h:8/x HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"pipelined: the first head only", "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"obsolete folding", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", false},
		{"empty line first", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"head not whole", "GET / HTTP/1.1\r\nHost: h\r\n", false},
		{"too many fields", many, false},
		{"just enough fields", strings.Replace(many, "X-A: 1\r\n", "", 1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Built where a request with other fields was, as on a
			// connection: nothing of it may show.
			into := new(reqBuf)
			prev := bufio.NewReader(strings.NewReader("POST /junk?j HTTP/1.1\r\nHost: j\r\nX-Junk: 1\r\nCookie: c\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			prev.Peek(1)
			if _, ok, err := readBufferedHead(prev, "old", nil, into); !ok || err != nil {
				t.Fatalf("the earlier request: %v %v", ok, err)
			}
			br := bufio.NewReader(strings.NewReader(tt.raw))
			br.Peek(1)
			got, ok, err := readBufferedHead(br, "peer", nil, into)
			if ok != tt.fast {
				t.Fatalf("fast path taken: %v, want %v", ok, tt.fast)
			}
			if !ok {
				if br.Buffered() != len(tt.raw) {
					t.Fatalf("the slow path's head was consumed: %d bytes left of %d", br.Buffered(), len(tt.raw))
				}
				return
			}
			if err != nil {
				t.Fatalf("readBufferedHead: %v", err)
			}
			// The textproto path, on the same bytes, with the fast path
			// out of the way (a reader that hands over a byte at a time
			// never holds the whole head).
			wantIn := new(reqBuf)
			want, err := readRequest(bufio.NewReaderSize(&oneByte{s: tt.raw}, 16), "peer", nil, wantIn)
			if err != nil {
				t.Fatalf("readRequest (textproto): %v", err)
			}
			for _, f := range []struct {
				name      string
				got, want any
			}{
				{"method", got.Method, want.Method},
				{"remote", got.RemoteAddr, want.RemoteAddr},
				{"URL", got.URL, want.URL},
				{"request URI", got.RequestURI, want.RequestURI},
				{"proto", [3]any{got.Proto, got.ProtoMajor, got.ProtoMinor}, [3]any{want.Proto, want.ProtoMajor, want.ProtoMinor}},
				{"header", got.Header, want.Header},
				{"host", got.Host, want.Host},
				{"length", got.ContentLength, want.ContentLength},
				{"transfer encoding", got.TransferEncoding, want.TransferEncoding},
				{"close", got.Close, want.Close},
			} {
				if !reflect.DeepEqual(f.got, f.want) {
					t.Errorf("%s: %#v, textproto %#v", f.name, f.got, f.want)
				}
			}
			if got.Header == nil {
				t.Error("nil Header")
			}
			if !slices.Equal(into.order, wantIn.order) {
				t.Errorf("field order: %q, textproto path %q", into.order, wantIn.order)
			}
			// The head, and only the head, was read.
			rest, _ := br.Peek(br.Buffered())
			if !strings.HasSuffix(tt.raw, string(rest)) || !strings.HasSuffix(tt.raw[:len(tt.raw)-len(rest)], "\r\n\r\n") {
				t.Errorf("left %q unread", rest)
			}
		})
	}
}

// oneByte reads s a byte at a time.
type oneByte struct{ s string }

func (r *oneByte) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

// TestFieldOrder checks the field order readRequest records, on the
// buffered fast path and on the textproto path alike.
func TestFieldOrder(t *testing.T) {
	many := "GET / HTTP/1.1\r\n"
	var manyOrder []string
	for i := range maxFastFields + 3 {
		name := "X-" + strings.Repeat("a", i+1)
		many += name + ": 1\r\n"
		manyOrder = append(manyOrder, textproto.CanonicalMIMEHeaderKey(name))
	}
	many += "Host: h\r\n\r\n"
	manyOrder = append(manyOrder, "Host")
	tests := []struct {
		name string
		raw  string
		want []string
	}{
		{"no fields", "GET / HTTP/1.0\r\n\r\n", nil},
		{"as sent, canonical", "GET / HTTP/1.1\r\nuser-agent: u\r\nHost: h\r\nX-B: 1\r\nx-a: 2\r\nAccept: a\r\n\r\n",
			[]string{"User-Agent", "Host", "X-B", "X-A", "Accept"}},
		{"a repeated name counts where it first came", "GET / HTTP/1.1\r\nCookie: a=1\r\nHost: h\r\nX-A: 1\r\ncookie: b=2\r\nX-A: 2\r\n\r\n",
			[]string{"Cookie", "Host", "X-A"}},
		{"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: h\r\nContent-Type: t\r\n\r\n0\r\n\r\n",
			[]string{"Transfer-Encoding", "Host", "Content-Type"}},
		{"obsolete folding", "GET / HTTP/1.1\r\nX-Z: 1\r\n 2\r\nHost: h\r\nX-Y: 3\r\n\r\n", []string{"X-Z", "Host", "X-Y"}},
		{"more fields than the fast path takes", many, manyOrder},
	}
	for _, tt := range tests {
		for _, path := range []struct {
			name string
			br   func() *bufio.Reader
		}{
			{"buffered", func() *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(tt.raw), 4<<10) }},
			{"a byte at a time", func() *bufio.Reader { return bufio.NewReaderSize(&oneByte{s: tt.raw}, 16) }},
		} {
			t.Run(tt.name+"/"+path.name, func(t *testing.T) {
				into := new(reqBuf)
				// An earlier request on the connection leaves nothing behind.
				if _, err := readRequest(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: j\r\nX-Old: 1\r\n\r\n")), "p", nil, into); err != nil {
					t.Fatal(err)
				}
				r, err := readRequest(path.br(), "peer", nil, into)
				if err != nil {
					t.Fatalf("readRequest: %v", err)
				}
				if !slices.Equal(into.order, tt.want) {
					t.Errorf("order %q, want %q", into.order, tt.want)
				}
				for k := range r.Header {
					if !slices.Contains(into.order, k) {
						t.Errorf("Header key %q is not in the order", k)
					}
				}
			})
		}
	}
}

// TestHeaderOrder checks the order appendHeader writes fields in: those
// SetHeaderOrder names first, in its order, then the rest sorted.
func TestHeaderOrder(t *testing.T) {
	hdr := http.Header{
		"X-Zeta": {"z"}, "Content-Type": {"text/plain"}, "X-Alpha": {"a"},
		"Set-Cookie": {"a=1", "b=2"}, "Connection": {"close"}, "Cache-Control": {"no-cache"},
		"Content-Length": nil, // a key without values writes nothing
	}
	tests := []struct {
		name  string
		order []string
		want  string
	}{
		{"none: sorted", nil,
			"Cache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Alpha: a\r\nX-Zeta: z\r\n"},
		{"the app's, then the rest sorted", []string{"X-Zeta", "Set-Cookie", "Content-Type", "X-Alpha", "Content-Length"},
			"X-Zeta: z\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Type: text/plain\r\nX-Alpha: a\r\nCache-Control: no-cache\r\nConnection: close\r\n"},
		{"a name the header lacks", []string{"X-Gone", "X-Alpha"},
			"X-Alpha: a\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Zeta: z\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &response{hdr: hdr}
			w.SetHeaderOrder(tt.order)
			if got := string(w.appendHeader(nil)); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
