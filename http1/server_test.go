package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// start serves srv on a fresh loopback port until the test ends, and
// returns the address.
func start(t *testing.T, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-done:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return l.Addr().String()
}

// dial opens a connection with a 10 s deadline, closed when the test ends.
func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// closedByServer reports whether the server closed c (EOF on a read
// that waits up to wait).
func closedByServer(c net.Conn, br *bufio.Reader, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := br.ReadByte()
	return err == io.EOF
}

func TestResponses(t *testing.T) {
	big := strings.Repeat("x", 3000)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		req     string
		status  string            // the status line, without CRLF
		header  map[string]string // fields that must be there ("" means absent)
		body    string
		open    bool // the connection stays open
	}{
		{"small body gets a Content-Length",
			func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "Hello, World!") },
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK",
			map[string]string{"Content-Length": "13", "Content-Type": "text/plain; charset=utf-8", "Transfer-Encoding": ""},
			"Hello, World!", true},
		{"the handler's Content-Length and type",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "2")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(201)
				io.WriteString(w, "{}")
			},
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 201 Created",
			map[string]string{"Content-Length": "2", "Content-Type": "application/json"}, "{}", true},
		{"a large body is chunked",
			func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) },
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK",
			map[string]string{"Transfer-Encoding": "chunked", "Content-Length": ""}, big, true},
		{"a flushed body is chunked",
			func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "a")
				w.(http.Flusher).Flush()
				io.WriteString(w, "b")
			},
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK",
			map[string]string{"Transfer-Encoding": "chunked"}, "ab", true},
		{"HTTP/1.0 with no length ends at close",
			func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) },
			"GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK",
			map[string]string{"Transfer-Encoding": "", "Connection": ""}, big, false},
		{"HTTP/1.0 keep-alive with a length",
			func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") },
			"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.0 200 OK",
			map[string]string{"Connection": "keep-alive", "Content-Length": "2"}, "hi", true},
		{"HTTP/1.0 without keep-alive closes",
			func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") },
			"GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK",
			map[string]string{"Connection": "", "Content-Length": "2"}, "hi", false},
		{"Connection: close from the client",
			func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") },
			"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 OK",
			map[string]string{"Connection": "close"}, "hi", false},
		{"Connection: close from the handler",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				io.WriteString(w, "hi")
			},
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK",
			map[string]string{"Connection": "close"}, "hi", false},
		{"HEAD keeps the length, sends no body",
			func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "Hello") },
			"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK",
			map[string]string{"Content-Length": "5"}, "", true},
		{"204 has no body and no length",
			func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(204)
				if _, err := io.WriteString(w, "x"); err != http.ErrBodyNotAllowed {
					panic("a body for 204 was not refused")
				}
			},
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 204 No Content",
			map[string]string{"Content-Length": "", "Transfer-Encoding": ""}, "", true},
		{"a short body closes the connection",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "5")
				io.WriteString(w, "abc")
				w.(http.Flusher).Flush()
			},
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK",
			map[string]string{"Content-Length": "5"}, "abc", false},
		{"CR and LF in a value become spaces; bad names are dropped",
			func(w http.ResponseWriter, r *http.Request) {
				w.Header()["X-A"] = []string{"1\r\nSet-Cookie: x"}
				w.Header()["Bad Name"] = []string{"v"}
			},
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK",
			map[string]string{"X-A": "1  Set-Cookie: x", "Set-Cookie": "", "Bad Name": "", "Content-Length": "0"}, "", true},
		{"a Content-Length body echoed",
			func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) },
			"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", "HTTP/1.1 200 OK",
			map[string]string{"Content-Length": "5"}, "hello", true},
		{"a chunked body with a trailer echoed",
			func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) },
			"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-T: 1\r\n\r\n", "HTTP/1.1 200 OK",
			map[string]string{"Content-Length": "5"}, "abcde", true},
		{"an unread body closes the connection",
			func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "no") },
			"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 200 OK",
			map[string]string{"Connection": "close"}, "no", false},
		{"an unknown status",
			func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) },
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 299 status code 299",
			nil, "", true},
		{"the handler's reason phrase",
			func(w http.ResponseWriter, r *http.Request) { w.(*response).WriteHeaderReason(299, "Custom Thing") },
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 299 Custom Thing",
			nil, "", true},
		{"the handler's reason phrase to HTTP/1.0, with a tab and latin-1",
			func(w http.ResponseWriter, r *http.Request) { w.(*response).WriteHeaderReason(200, "Tr\xe8s\tbien") },
			"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.0 200 Tr\xe8s\tbien",
			nil, "", true},
		{"no reason phrase: the standard one",
			func(w http.ResponseWriter, r *http.Request) { w.(*response).WriteHeaderReason(404, "") },
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 404 Not Found",
			nil, "", true},
		{"a reason phrase with CR LF: the standard one",
			func(w http.ResponseWriter, r *http.Request) {
				w.(*response).WriteHeaderReason(200, "OK\r\nSet-Cookie: x")
			},
			"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK",
			map[string]string{"Set-Cookie": ""}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := start(t, &Server{Handler: tt.handler})
			c, br := dial(t, addr)
			io.WriteString(c, tt.req)
			line, err := br.ReadString('\n')
			if err != nil || strings.TrimRight(line, "\r\n") != tt.status {
				t.Fatalf("status line %q, %v; want %q", line, err, tt.status)
			}
			// Put the line back for net/http's response parser.
			br = bufio.NewReader(io.MultiReader(strings.NewReader(line), br))
			method, _, _ := strings.Cut(tt.req, " ")
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			if errors.Is(err, io.ErrUnexpectedEOF) && !tt.open {
				err = nil // a body cut short by the close
			}
			if err != nil || string(got) != tt.body {
				t.Errorf("body %q (%v), want %q", got, err, tt.body)
			}
			for k, want := range tt.header {
				v := strings.Join(resp.Header[k], ",")
				switch {
				case k == "Transfer-Encoding":
					v = strings.Join(resp.TransferEncoding, ",")
				case k == "Connection" && resp.Close && resp.ProtoMinor == 1:
					v = "close" // ReadResponse takes it out of the header
				}
				if v != want {
					t.Errorf("%s: %q, want %q (header %v)", k, v, want, resp.Header)
				}
			}
			if resp.Header.Get("Date") == "" {
				t.Error("no Date")
			}
			wait := 5 * time.Second // the close is expected at once
			if tt.open {
				wait = 200 * time.Millisecond // long enough to see one
			}
			if closed := closedByServer(c, br, wait); closed == tt.open {
				t.Errorf("connection closed: %v, want %v", closed, !tt.open)
			}
		})
	}
}

// TestKeepAliveAndPipelining: requests on one connection, some sent
// together, are answered in order; each sees its own method and path.
func TestKeepAliveAndPipelining(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" "+r.Host)
	})})
	c, br := dial(t, addr)
	io.WriteString(c, "GET /a?x=1 HTTP/1.1\r\nHost: one\r\n\r\nPOST /b HTTP/1.1\r\nHost: two\r\nContent-Length: 0\r\n\r\n")
	io.WriteString(c, "\r\nGET http://three/c%20d HTTP/1.1\r\nHost: ignored\r\n\r\n")
	for _, want := range []string{"GET /a?x=1 one", "POST /b? two", "GET /c d? three"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		if string(got) != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// TestExpectContinue: 100 Continue goes out when the handler first reads
// the body, and not at all if it never does (the connection then closes).
func TestExpectContinue(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			io.Copy(w, r.Body)
			return
		}
		io.WriteString(w, "refused")
	})})
	c, br := dial(t, addr)
	io.WriteString(c, "POST /read HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("%q %v", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, "abc")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(resp.Body); string(got) != "abc" {
		t.Errorf("echo %q", got)
	}

	io.WriteString(c, "POST /no HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(resp.Body); string(got) != "refused" || !resp.Close {
		t.Errorf("%q, Connection: close %v", got, resp.Close)
	}
	if !closedByServer(c, br, 5*time.Second) {
		t.Error("the connection stayed open with the body unread")
	}
}

// waitCancelled waits up to 5 s for ctx to end; an error if it does not.
func waitCancelled(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("the context was not cancelled")
	}
}

// TestHangUpCancels: a client that hangs up while its request runs
// cancels the request's context (once the request has run WatchAfter).
func TestHangUpCancels(t *testing.T) {
	cancelled := make(chan error, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancelled <- waitCancelled(r.Context())
	})})
	c, _ := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(2 * WatchAfter)
	c.Close()
	if err := <-cancelled; err != nil {
		t.Fatal(err)
	}
}

// TestWatchKeepsPipelinedBytes: the byte the watcher reads from a client
// that sends its next request early belongs to that request, and a long
// request is not cancelled by it.
func TestWatchKeepsPipelinedBytes(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
				io.WriteString(w, "cancelled")
				return
			case <-time.After(10 * WatchAfter):
			}
		}
		io.WriteString(w, r.URL.Path)
	})})
	c, br := dial(t, addr)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(3 * WatchAfter)
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
	for _, want := range []string{"/slow", "/next"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := io.ReadAll(resp.Body); string(got) != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// TestTimeouts: a head that does not end within ReadHeaderTimeout, and a
// keep-alive connection idle past IdleTimeout, are closed.
func TestTimeouts(t *testing.T) {
	addr := start(t, &Server{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})})
	c, br := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost:")
	if !closedByServer(c, br, 5*time.Second) {
		t.Error("an unfinished head was not timed out")
	}
	c, br = dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !closedByServer(c, br, 5*time.Second) {
		t.Error("an idle keep-alive connection was not closed")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}
}

// TestConnStateAndAbort: ConnState sees New, Active, Idle and Closed; a
// handler that panics with http.ErrAbortHandler cuts the connection.
func TestConnStateAndAbort(t *testing.T) {
	var mu sync.Mutex
	var states []http.ConnState
	type key struct{}
	srv := &Server{
		ConnState: func(_ net.Conn, s http.ConnState) { mu.Lock(); states = append(states, s); mu.Unlock() },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, key{}, "conn")
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Context().Value(key{}) != "conn" {
				panic("no ConnContext value")
			}
			if r.URL.Path == "/abort" {
				io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
		}),
	}
	addr := start(t, srv)
	c, br := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /abort HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("aborted response read: %v, want a cut", err)
	}
	want := []http.ConnState{http.StateNew, http.StateActive, http.StateIdle, http.StateActive, http.StateClosed}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		got := append([]http.ConnState(nil), states...)
		mu.Unlock()
		if len(got) == len(want) || time.Now().After(deadline) {
			for i := range want {
				if i >= len(got) || got[i] != want[i] {
					t.Fatalf("states %v, want %v", got, want)
				}
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBadHead: what the server cannot parse gets net/http's 400.
func TestBadHead(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})})
	c, br := dial(t, addr)
	io.WriteString(c, "NONSENSE\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("%v %v", resp, err)
	}
}

// tempErr is an accept error that passes (as EMFILE does).
type tempErr struct{}

func (tempErr) Error() string   { return "too many open files" }
func (tempErr) Temporary() bool { return true }
func (tempErr) Timeout() bool   { return false }

// flakyListener fails its first Accept with a temporary error.
type flakyListener struct {
	net.Listener
	failed bool
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if !l.failed {
		l.failed = true
		return nil, tempErr{}
	}
	return l.Listener.Accept()
}

// TestTemporaryAcceptError: Serve waits out a temporary accept error, and
// logs it (out of descriptors is an operator's problem to see).
func TestTemporaryAcceptError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logged syncBuf
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		Log: slog.New(slog.NewTextHandler(&logged, nil))}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(&flakyListener{Listener: l}) }()
	defer func() {
		srv.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	}()
	c, br := dial(t, l.Addr().String())
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if got := logged.String(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, "Accept error: too many open files; retrying in 5ms") {
		t.Errorf("log = %q, want the accept error", got)
	}
}

// syncBuf is a bytes.Buffer safe for a logger's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAppendDate: the cached Date value is the second's, in HTTP format.
func TestAppendDate(t *testing.T) {
	base := time.Date(2026, 11, 25, 1, 2, 3, 0, time.UTC)
	for _, now := range []time.Time{base, base.Add(300 * time.Millisecond), base.Add(time.Second), base.Add(-time.Hour).In(time.FixedZone("X", 3600))} {
		if got, want := string(appendDate(nil, now)), now.UTC().Format(http.TimeFormat); got != want {
			t.Errorf("%v: %q, want %q", now, got, want)
		}
	}
}

// addrString formats an address as its String method does, in one
// allocation for a TCP address.
func TestAddrString(t *testing.T) {
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 42938},
		&net.TCPAddr{IP: net.IP{10, 1, 2, 3}, Port: 80},
		&net.TCPAddr{IP: net.ParseIP("::1"), Port: 65535},
		&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 1},
		&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 8000, Zone: "eth0"},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::8:800:200c:417a"), Port: 0},
		&net.TCPAddr{IP: nil, Port: 8000},
		&net.TCPAddr{IP: net.IP{1, 2, 3}, Port: 8000}, // not an IP: net's "?1020103"
		&net.UnixAddr{Name: "/run/gorn.sock", Net: "unix"},
	} {
		if got, want := addrString(a), a.String(); got != want {
			t.Errorf("addrString(%#v) = %q, want %q", a, got, want)
		}
	}
	a := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 42938}
	if n := testing.AllocsPerRun(20, func() { addrString(a) }); n > 1 {
		t.Errorf("addrString of a TCP address: %.0f allocations, want 1", n)
	}
}

// TestLongRequestNotCancelled: a request that runs past the head's
// deadlines (header and idle timeouts) is not taken for a hung-up client.
func TestLongRequestNotCancelled(t *testing.T) {
	addr := start(t, &Server{ReadHeaderTimeout: 50 * time.Millisecond, IdleTimeout: 50 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
				io.WriteString(w, "cancelled")
			case <-time.After(300 * time.Millisecond):
				io.WriteString(w, "done")
			}
		})})
	c, br := dial(t, addr)
	for i := 0; i < 2; i++ { // the first request, then a keep-alive one
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := io.ReadAll(resp.Body); string(got) != "done" {
			t.Fatalf("request %d: %q", i+1, got)
		}
	}
}

// TestBodyReadFailureCancels: a client that goes away in the middle of
// its body fails the body read and cancels the request's context, as in
// net/http (gorn's handler then logs 499, not 400).
func TestBodyReadFailureCancels(t *testing.T) {
	result := make(chan string, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		result <- fmt.Sprintf("%v, context: %v", err, r.Context().Err())
	})})
	c, _ := dial(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case got := <-result:
		if want := "unexpected EOF, context: context canceled"; got != want {
			t.Errorf("%s, want %s", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the body read did not fail")
	}
}

// TestResetDropsLargeScratch: a connection does not keep a head buffer
// grown by one huge response head; an ordinary one is kept for reuse.
func TestResetDropsLargeScratch(t *testing.T) {
	for _, tt := range []struct {
		capacity int
		kept     bool
	}{{4 << 10, true}, {maxScratch, true}, {maxScratch + 1, false}, {1 << 20, false}} {
		w := &response{scratch: make([]byte, 10, tt.capacity)}
		w.reset(&conn{}, &http.Request{Method: "GET", Body: http.NoBody})
		if kept := cap(w.scratch) == tt.capacity; kept != tt.kept || len(w.scratch) != 0 {
			t.Errorf("capacity %d: kept %v (len %d), want %v", tt.capacity, kept, len(w.scratch), tt.kept)
		}
	}
}

// TestIdleTimeoutBoundsOnlyTheWait: without a header timeout, the idle
// timeout bounds the wait for a request's first byte, not the time its
// head takes after that.
func TestIdleTimeoutBoundsOnlyTheWait(t *testing.T) {
	addr := start(t, &Server{IdleTimeout: 200 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })})
	c, br := dial(t, addr)
	for i, path := range []string{"/first", "/second"} {
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\n")
		time.Sleep(400 * time.Millisecond)
		io.WriteString(c, "Host: h\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if got, _ := io.ReadAll(resp.Body); string(got) != path {
			t.Errorf("request %d: %q", i+1, got)
		}
	}
}

// TestBuffersCarryNothingOver: a connection that closes with a request
// still in its read buffer (pipelined after Connection: close) hands its
// pooled buffers on empty: the next connections see only their own bytes.
func TestBuffersCarryNothingOver(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	})})
	for i := 0; i < 20; i++ {
		c, br := dial(t, addr)
		io.WriteString(c, "GET /closing HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /left-over HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || !resp.Close {
			t.Fatalf("round %d: %v %v", i, resp, err)
		}
		if got, _ := io.ReadAll(resp.Body); string(got) != "/closing" {
			t.Fatalf("round %d: got %q", i, got)
		}
		if !closedByServer(c, br, 5*time.Second) {
			t.Fatal("the connection stayed open after Connection: close")
		}
		c2, br2 := dial(t, addr)
		io.WriteString(c2, "GET /mine HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err = http.ReadResponse(br2, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := io.ReadAll(resp.Body); string(got) != "/mine" {
			t.Fatalf("round %d: got %q", i, got)
		}
		c2.Close()
	}
}

// TestHangUpAfterSlowBodyCancels: a request whose body took longer than
// WatchAfter to arrive is still watched once the body is read.
func TestHangUpAfterSlowBodyCancels(t *testing.T) {
	cancelled := make(chan error, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, err := io.ReadAll(r.Body); err != nil || string(b) != "abc" {
			cancelled <- fmt.Errorf("body %q, %v", b, err)
			return
		}
		cancelled <- waitCancelled(r.Context())
	})})
	c, _ := dial(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n")
	time.Sleep(4 * WatchAfter) // past the first WatchAfter, with the body unread
	io.WriteString(c, "abc")
	time.Sleep(4 * WatchAfter)
	c.Close()
	if err := <-cancelled; err != nil {
		t.Fatal(err)
	}
}

// TestConnsCarryNothingOver: a connection is served in the conn of a
// closed one (connPool), and sees none of it: not its request's header
// fields or address, not its response's header, not its cancelled context.
func TestConnsCarryNothingOver(t *testing.T) {
	type seen struct {
		header http.Header
		remote string
		ctxErr error
	}
	got := make(chan seen, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Clone(), r.RemoteAddr, r.Context().Err()}
		w.Header().Set("X-Set"+r.URL.Path[1:], "1")
		io.WriteString(w, r.URL.Path)
	})})
	for i := range 20 {
		c, br := dial(t, addr)
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: h\r\nX-Round%d: %d\r\nConnection: close\r\n\r\n", i, i, i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		s := <-got
		want := http.Header{fmt.Sprintf("X-Round%d", i): {strconv.Itoa(i)}, "Connection": {"close"}}
		if !reflect.DeepEqual(s.header, want) || s.remote != c.LocalAddr().String() || s.ctxErr != nil {
			t.Errorf("round %d: the handler saw header %v, remote %s, context %v; want %v, %s, nil",
				i, s.header, s.remote, s.ctxErr, want, c.LocalAddr())
		}
		for k := range resp.Header {
			if strings.HasPrefix(k, "X-Set") && k != fmt.Sprintf("X-Set%d", i) {
				t.Errorf("round %d: response has %s, an earlier connection's", i, k)
			}
		}
		if string(body) != fmt.Sprintf("/%d", i) {
			t.Errorf("round %d: body %q", i, body)
		}
		if !closedByServer(c, br, 5*time.Second) {
			t.Fatalf("round %d: the connection stayed open after Connection: close", i)
		}
		c.Close()
	}
}

// TestHangUpLeavesNoTrace: the conn of a connection whose client hung up
// mid-request serves the next connection's keep-alive requests as any
// other.
func TestHangUpLeavesNoTrace(t *testing.T) {
	closed := make(chan struct{}, 1)
	addr := start(t, &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				waitCancelled(r.Context())
				return
			}
			io.WriteString(w, r.URL.Path)
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				select {
				case closed <- struct{}{}:
				default:
				}
			}
		},
	})
	for i := range 8 { // several rounds: under -race, sync.Pool drops some conns
		c, _ := dial(t, addr)
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
		time.Sleep(4 * WatchAfter)
		c.Close()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the hung-up connection did not close", i)
		}
		c2, br := dial(t, addr)
		for _, path := range []string{"/a", "/b"} {
			io.WriteString(c2, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("round %d, %s on a kept-alive connection: %v", i, path, err)
			}
			if body, _ := io.ReadAll(resp.Body); string(body) != path || resp.Close {
				t.Fatalf("round %d, %s: body %q, close %v", i, path, body, resp.Close)
			}
		}
		c2.Close()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the second connection did not close", i)
		}
	}
}
