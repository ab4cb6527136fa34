package http1

import (
	"bufio"
	"io"
	"reflect"
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
			want, err := readRequest(bufio.NewReaderSize(&oneByte{s: tt.raw}, 16), "peer", nil, nil)
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
