package httpguard

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorn-project/gorn/httpguard/corpus"
)

// fakeConn is a net.Conn that reads from r in reads of at most step bytes
// (0: any), so tests cover requests split across reads.
type fakeConn struct {
	r    io.Reader
	step int
	alpn string
}

func (c *fakeConn) Read(b []byte) (int, error) {
	if c.step > 0 && len(b) > c.step {
		b = b[:c.step]
	}
	return c.r.Read(b)
}
func (c *fakeConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// tlsConn reports an ALPN protocol, as gorn's tlsconf.Conn does.
type tlsConn struct{ fakeConn }

func (c *tlsConn) NegotiatedProtocol() string { return c.alpn }

// outcome is what a request became after the guard and net/http.
type outcome struct {
	status int    // 200: net/http read it and its body; else the guard's status
	msg    string // the guard's message
	line   string // the refused request's line (RejectedLine)
	path   string
	body   string
	header http.Header
}

// replay runs raw through a guarded conn and reads the output back with
// http.ReadRequest, as net/http's server does.
func replay(t *testing.T, cfg *Config, raw []byte, step int) []outcome {
	t.Helper()
	g := Wrap(&fakeConn{r: bytes.NewReader(raw), step: step}, cfg)
	br := bufio.NewReader(g)
	var outs []outcome
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return outs
			}
			t.Fatalf("net/http refused what the guard passed: %v (after %d requests)", err, len(outs))
		}
		if status, msg, ok := Rejected(req.Header); ok {
			line, ok := RejectedLine(req.Header)
			if !ok {
				t.Fatalf("a rejection without its line: %v", req.Header)
			}
			outs = append(outs, outcome{status: status, msg: msg, line: line})
			if _, err := br.Peek(1); err != io.EOF {
				t.Fatalf("bytes after a rejection: %v", err)
			}
			return outs
		}
		body, err := io.ReadAll(req.Body)
		var be *BodyError
		if errors.As(err, &be) {
			return append(outs, outcome{status: be.Status, msg: be.Msg, path: req.URL.Path})
		}
		if err != nil {
			t.Fatalf("reading a body: %v", err)
		}
		outs = append(outs, outcome{status: 200, path: req.URL.Path, body: string(body), header: req.Header})
	}
}

func cfgWith(f func(*Config)) *Config {
	c := Defaults()
	if f != nil {
		f(&c)
	}
	return &c
}

func TestGuard(t *testing.T) {
	const host = "Host: h\r\n"
	tests := []struct {
		name   string
		cfg    func(*Config)
		raw    string
		status []int
		msg    string // a substring of the last outcome's message
	}{
		{"get", nil, "GET / HTTP/1.1\r\n" + host + "\r\n", []int{200}, ""},
		{"post", nil, "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\n\r\nabc", []int{200}, ""},
		{"chunked", nil, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", []int{200}, ""},
		{"pipelined", nil, "GET /a HTTP/1.1\r\n" + host + "\r\nGET /b HTTP/1.1\r\n" + host + "\r\n", []int{200, 200}, ""},
		{"bad version", nil, "GET / HTTP/1.2\r\n" + host + "\r\n", []int{400}, "Invalid HTTP Version 'Invalid HTTP Version: 'HTTP/1.2''"},
		{"bad method", nil, "get / HTTP/1.1\r\n" + host + "\r\n", []int{400}, "Invalid Method 'Invalid HTTP method: 'get''"},
		{"bad line", nil, "GET  / HTTP/1.1\r\n" + host + "\r\n", []int{400}, "Invalid Request Line"},
		{"line limit", func(c *Config) { c.RequestLine = 10 }, "GET /abcdefg HTTP/1.1\r\n" + host + "\r\n", []int{400}, "Request Line is too large"},
		{"line limit clamped", func(c *Config) { c.RequestLine = 100000 }, "GET /" + strings.Repeat("a", 8200) + " HTTP/1.1\r\n" + host + "\r\n", []int{400}, "> 8190"},
		{"line unlimited", func(c *Config) { c.RequestLine = 0 }, "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\n" + host + "\r\n", []int{200}, ""},
		{"fields", func(c *Config) { c.Fields = 1 }, "GET / HTTP/1.1\r\n" + host + "A: b\r\n\r\n", []int{431}, "limit request headers fields"},
		{"field size", func(c *Config) { c.FieldSize = 8 }, "GET / HTTP/1.1\r\n" + host + "A: bcdefgh\r\n\r\n", []int{431}, "fields size"},
		{"field size with fold", func(c *Config) { c.FieldSize = 12; c.PermitObsFold = true }, "GET / HTTP/1.1\r\nHost: h\r\nA: b\r\n cdefgh\r\n\r\n", []int{431}, "fields size"},
		{"fold permitted", func(c *Config) { c.PermitObsFold = true }, "GET / HTTP/1.1\r\n" + host + "A: b\r\n c\r\n\r\n", []int{200}, ""},
		{"fold refused", nil, "GET / HTTP/1.1\r\n" + host + "A: b\r\n c\r\n\r\n", []int{400}, "Obsolete line folding is unacceptable: 'A'"},
		{"fold of a TE", func(c *Config) { c.PermitObsFold = true }, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked,\r\n identity\r\n\r\n0\r\n\r\n", []int{400}, "TRANSFER-ENCODING"},
		{"underscore drop", nil, "GET / HTTP/1.1\r\n" + host + "X_A: b\r\n\r\n", []int{200}, ""},
		{"underscore refuse", func(c *Config) { c.HeaderMap = HeaderMapRefuse }, "GET / HTTP/1.1\r\n" + host + "X_A: b\r\n\r\n", []int{400}, "Invalid HTTP header name: 'X_A'"},
		{"underscore refuse, forwarder header", func(c *Config) {
			c.HeaderMap = HeaderMapRefuse
			c.Forwarder = func(n string) bool { return strings.EqualFold(n, "SCRIPT_NAME") }
		}, "GET / HTTP/1.1\r\n" + host + "Script_Name: /a\r\n\r\n", []int{200}, ""},
		{"underscore refuse, other header", func(c *Config) {
			c.HeaderMap = HeaderMapRefuse
			c.Forwarder = func(n string) bool { return strings.EqualFold(n, "SCRIPT_NAME") }
		}, "GET / HTTP/1.1\r\n" + host + "Script_Name: /a\r\nX_A: b\r\n\r\n", []int{400}, "Invalid HTTP header name: 'X_A'"},
		{"underscore refuse, forwarder trailer", func(c *Config) {
			c.HeaderMap = HeaderMapRefuse
			c.Forwarder = func(n string) bool { return strings.EqualFold(n, "SCRIPT_NAME") }
		}, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\nSCRIPT_NAME: /a\r\n\r\n", []int{400}, ""},
		{"te 501", nil, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", []int{501}, "Unsupported transfer coding"},
		{"cl+te", nil, "POST / HTTP/1.1\r\n" + host + "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{400}, "CONTENT-LENGTH"},
		{"body limit cl", func(c *Config) { c.Body = 2 }, "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\n\r\nabc", []int{413}, "too large"},
		{"body limit cl at", func(c *Config) { c.Body = 3 }, "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\n\r\nabc", []int{200}, ""},
		{"body limit chunked", func(c *Config) { c.Body = 4 }, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", []int{413}, "too large"},
		{"body limit chunked at", func(c *Config) { c.Body = 5 }, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", []int{200}, ""},
		{"chunk size", nil, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nx\r\n", []int{400}, "Invalid chunk size: 'x\\r\\n'"},
		{"chunk crlf", nil, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1\r\naXY", []int{400}, "Invalid chunk terminator"},
		{"chunk ext quoted escape", nil, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1;a=\"x\\\"y\"\r\na\r\n0\r\n\r\n", []int{200}, ""},
		{"chunk ext unterminated", nil, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1;a=\"x\r\na\r\n0\r\n\r\n", []int{400}, "Invalid chunk size"},
		{"chunk ext empty", nil, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1;\r\na\r\n0\r\n\r\n", []int{400}, "Invalid chunk size"},
		{"expect", nil, "GET / HTTP/1.1\r\n" + host + "Expect: x\r\n\r\n", []int{417}, "Unsupported expectation: 'x'"},
		{"reject spoof", nil, "GET / HTTP/1.1\r\n" + host + rejectName + ": 431 x\r\n\r\n", []int{200}, ""},
		{"reject spoof lower", nil, "GET / HTTP/1.1\r\n" + host + strings.ToLower(rejectName) + ": 431 x\r\n\r\n", []int{200}, ""},
		{"reject spoof folded", func(c *Config) { c.PermitObsFold = true }, "GET / HTTP/1.1\r\n" + host + rejectName + ": 431\r\n x\r\n\r\n", []int{200}, ""},
		{"trailer stripped", nil, "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\n" + rejectName + ": 400 x\r\n\r\n", []int{200}, ""},
		{"after rejection nothing", nil, "GET /a HTTP/1.1\r\n" + host + "\r\nBAD\r\n\r\nGET /c HTTP/1.1\r\n" + host + "\r\n", []int{200, 400}, ""},
		{"head cap", func(c *Config) { c.Fields = 0; c.FieldSize = 0 }, "GET / HTTP/1.1\r\n" + host + strings.Repeat("A: "+strings.Repeat("b", 1000)+"\r\n", 1100) + "\r\n", []int{431}, "max buffer headers"},
		{"message quoting", nil, "GET / HTTP/1.1\r\n" + host + "X\x01'\\\xff: b\r\n\r\n", []int{400}, `'X\x01\'\\\xff'`},
	}
	for _, tt := range tests {
		for _, step := range []int{0, 1, 7} {
			outs := replay(t, cfgWith(tt.cfg), []byte(tt.raw), step)
			var got []int
			for _, o := range outs {
				got = append(got, o.status)
			}
			if !slices.Equal(got, tt.status) {
				t.Errorf("%s (step %d): statuses %v, want %v (%+v)", tt.name, step, got, tt.status, outs)
				continue
			}
			if tt.msg != "" && !strings.Contains(outs[len(outs)-1].msg, tt.msg) {
				t.Errorf("%s: message %q, want it to contain %q", tt.name, outs[len(outs)-1].msg, tt.msg)
			}
		}
	}
}

// TestRejectLine: a rejection carries the refused request's line, as the
// client sent it, for the access log: the line the guard refused, or the
// request line of a head refused for a field or for what the fields say;
// cut to maxLogLine bytes, whatever the reads.
func TestRejectLine(t *testing.T) {
	long := "GET /" + strings.Repeat("a", 8200) + " HTTP/1.1"
	tests := []struct {
		name, raw, line string
	}{
		{"control byte in the target", "GET /bad\x01 HTTP/1.1\r\nHost: h\r\n\r\n", "GET /bad\x01 HTTP/1.1"},
		{"bad version", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", "GET / HTTP/1.2"},
		{"not HTTP", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
		{"bare LF", "GET /lf HTTP/1.1\nHost: h\n\n", "GET /lf HTTP/1.1"},
		{"a bad field", "GET /f?q=1 HTTP/1.1\r\nHost: h\r\nA: b\r\n c\r\n\r\n", "GET /f?q=1 HTTP/1.1"},
		{"no Host", "GET /x HTTP/1.1\r\n\r\n", "GET /x HTTP/1.1"},
		{"a transfer coding", "POST /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "POST /te HTTP/1.1"},
		{"too long", long + "\r\nHost: h\r\n\r\n", long[:maxLogLine]},
		{"empty lines only", strings.Repeat("\r\n", 9) + "GET / HTTP/1.1\r\n\r\n", ""},
		{"after a good request", "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.7\r\nHost: h\r\n\r\n", "GET /b HTTP/1.7"},
		{"a bad field after a good request", "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\nA: b\r\n c\r\n\r\n", "GET /c HTTP/1.1"},
	}
	for _, tt := range tests {
		for _, step := range []int{0, 1, 7} {
			outs := replay(t, cfgWith(nil), []byte(tt.raw), step)
			if len(outs) == 0 || outs[len(outs)-1].status < 400 {
				t.Fatalf("%s (step %d): not refused: %+v", tt.name, step, outs)
			}
			if got := outs[len(outs)-1].line; got != tt.line {
				t.Errorf("%s (step %d): line %q, want %q", tt.name, step, got, tt.line)
			}
		}
	}
	// A client cannot send a line of its own choosing.
	outs := replay(t, cfgWith(nil), []byte("GET / HTTP/1.1\r\nHost: h\r\n"+rejectLineName+": \"GET /x HTTP/1.1\"\r\n\r\n"), 0)
	if len(outs) != 1 || outs[0].status != 200 {
		t.Fatalf("a request with the line's header: %+v", outs)
	}
	if line, ok := RejectedLine(outs[0].header); ok {
		t.Errorf("the client's %s header reached the app as %q", rejectLineName, line)
	}
}

// TestStrip checks that the guard passes a valid head unchanged but for
// the stripped fields.
func TestStrip(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: h\r\nX-Gorn-Reject-1: a\r\nX-A: b\r\n\r\n"
	g := Wrap(&fakeConn{r: strings.NewReader(raw)}, nil)
	got, err := io.ReadAll(g)
	if err != nil {
		t.Fatal(err)
	}
	if want := "GET / HTTP/1.1\r\nHost: h\r\nX-A: b\r\n\r\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestPassThrough checks the h2 pass-through, explicit and by ALPN, and
// the h2 preface refused otherwise.
func TestPassThrough(t *testing.T) {
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04"
	tests := []struct {
		name string
		conn func() net.Conn
		set  bool
		want string // "" means rejected
	}{
		{"plain", func() net.Conn { return &fakeConn{r: strings.NewReader(preface)} }, false, ""},
		{"tls http/1.1", func() net.Conn { return &tlsConn{fakeConn{r: strings.NewReader(preface), alpn: "http/1.1"}} }, false, ""},
		{"tls h2", func() net.Conn { return &tlsConn{fakeConn{r: strings.NewReader(preface), alpn: "h2", step: 5}} }, false, preface},
		{"explicit", func() net.Conn { return &fakeConn{r: strings.NewReader(preface)} }, true, preface},
	}
	for _, tt := range tests {
		g := Wrap(tt.conn(), nil)
		if tt.set {
			g.PassThrough()
		}
		got, err := io.ReadAll(g)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if tt.want == "" {
			if !bytes.Contains(got, []byte(rejectName+": 400 Invalid HTTP Version")) {
				t.Errorf("%s: preface not refused: %q", tt.name, got)
			}
		} else if string(got) != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestDrainHonoursErrors checks that after a rejection the guard never
// invents an EOF: it returns the wrapped conn's own error.
func TestDrainHonoursErrors(t *testing.T) {
	boom := errors.New("deadline")
	g := Wrap(&fakeConn{r: io.MultiReader(strings.NewReader("BAD\r\n\r\nmore bytes"), errReader{boom})}, nil)
	buf := make([]byte, 4096)
	n, err := g.Read(buf)
	if err != nil || !bytes.Contains(buf[:n], []byte(rejectName)) {
		t.Fatalf("first read: %q, %v", buf[:n], err)
	}
	if _, err := g.Read(buf); !errors.Is(err, boom) {
		t.Fatalf("after the rejection: %v, want %v", err, boom)
	}
}

// scriptConn is a net.Conn whose reads follow a script: each step
// returns its bytes, or fails with its error; past the end, io.EOF.
type scriptConn struct {
	fakeConn
	steps []step
}

type step struct {
	data string
	err  error
}

func (c *scriptConn) Read(b []byte) (int, error) {
	if len(c.steps) == 0 {
		return 0, io.EOF
	}
	s := c.steps[0]
	c.steps = c.steps[1:]
	if s.err != nil {
		return 0, s.err
	}
	if len(s.data) > len(b) {
		panic("scriptConn: a step larger than the read")
	}
	return copy(b, s.data), nil
}

// TestReadBufferGivenBack checks that a connection holds no read buffer
// after a failed read (it went back to the pool for the next
// connection), that a request, a head or a body split by a failed read
// (a deadline, as net/http sets to stop its background read) loses no
// byte, and that connections reading at once do not share a buffer.
func TestReadBufferGivenBack(t *testing.T) {
	const head = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
	const post = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"
	deadline := os.ErrDeadlineExceeded
	tests := []struct {
		name  string
		steps []step
		want  string // what the guard passes on; every row passes its input unchanged
		errs  int    // failed reads before the final io.EOF
	}{
		{"request, end", []step{{data: head}}, head, 0},
		{"deadline before the request", []step{{err: deadline}, {data: head}}, head, 1},
		{"deadline inside the head", []step{{data: head[:9]}, {err: deadline}, {data: head[9:]}}, head, 1},
		{"deadline inside the body", []step{{data: post + "01234"}, {err: deadline}, {err: deadline}, {data: "56789"}}, post + "0123456789", 2},
		{"pipelined, deadlines between", []step{{data: head + head[:3]}, {err: deadline}, {data: head[3:] + head}, {err: deadline}}, head + head + head, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wg sync.WaitGroup
			for i := range 4 { // at once, each with its own path
				path := "/x" + strconv.Itoa(i)
				steps := slices.Clone(tt.steps)
				for j := range steps {
					steps[j].data = strings.ReplaceAll(steps[j].data, "/x", path)
				}
				want := strings.ReplaceAll(tt.want, "/x", path)
				wg.Go(func() {
					g := Wrap(&scriptConn{steps: steps}, nil)
					var got []byte
					buf := make([]byte, 16)
					errs := 0
					for {
						n, err := g.Read(buf)
						got = append(got, buf[:n]...)
						if err == nil {
							continue
						}
						if cap(g.in) != 0 {
							t.Errorf("%s: the conn still holds its read buffer after %v", path, err)
						}
						if err == io.EOF {
							break
						}
						if !errors.Is(err, deadline) {
							t.Errorf("%s: %v", path, err)
							return
						}
						errs++
					}
					if string(got) != want || errs != tt.errs {
						t.Errorf("%s: passed %q after %d failed reads, want %q after %d", path, got, errs, want, tt.errs)
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestCloseGivesBufferBack checks that Close gives the read buffer back
// when no Read runs (a connection closed after its response, with no
// failed read to do it), that a Read running at Close keeps it until its
// read fails, and that the guard never reads for two callers at once.
func TestCloseGivesBufferBack(t *testing.T) {
	const head = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
	for _, tc := range []struct {
		name    string
		reading bool // a Read waits for more when Close comes
	}{
		{"closed between reads", false},
		{"closed while a Read waits", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer client.Close()
			g := Wrap(server, nil)
			go io.WriteString(client, head)
			buf := make([]byte, 256)
			if n, err := g.Read(buf); err != nil || string(buf[:n]) != head {
				t.Fatalf("Read = %q, %v; want the request", buf[:n], err)
			}
			if cap(g.in) == 0 {
				t.Fatal("no read buffer held after a read: nothing to give back")
			}
			var readErr chan error
			if tc.reading {
				readErr = make(chan error, 1)
				go func() { _, err := g.Read(buf); readErr <- err }()
				deadline := time.Now().Add(5 * time.Second)
				for g.state.Load() != reading && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if _, err := g.Read(make([]byte, 1)); err != errConcurrentRead {
					t.Errorf("a second Read at once: %v; want errConcurrentRead", err)
				}
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.reading {
				select {
				case err := <-readErr:
					if err == nil {
						t.Error("the waiting Read returned no error after Close")
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the waiting Read still runs 5 s after Close")
				}
			}
			if cap(g.in) != 0 {
				t.Error("the conn still holds its read buffer after Close")
			}
			if n, err := g.Read(buf); n != 0 || !errors.Is(err, io.ErrClosedPipe) {
				t.Errorf("Read after Close = %d, %v; want the wrapped conn's error", n, err)
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestParseHeaderMap(t *testing.T) {
	tests := []struct {
		in   string
		want HeaderMap
		ok   bool
	}{
		{"", HeaderMapDrop, true}, {"drop", HeaderMapDrop, true}, {"Refuse", HeaderMapRefuse, true},
		{"dangerous", HeaderMapDangerous, true}, {"allow", "", false},
	}
	for _, tt := range tests {
		got, err := ParseHeaderMap(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseHeaderMap(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func TestRejected(t *testing.T) {
	tests := []struct {
		value  string
		status int
		msg    string
	}{
		{"431 Error parsing headers", 431, "Error parsing headers"},
		{"501", 501, ""},
		{"200 ok", 400, "ok"}, // never a success
		{"x y", 400, "y"},
	}
	for _, tt := range tests {
		h := http.Header{rejectName: {tt.value}}
		status, msg, ok := Rejected(h)
		if !ok || status != tt.status || msg != tt.msg {
			t.Errorf("Rejected(%q) = %d, %q, %v", tt.value, status, msg, ok)
		}
	}
	if _, _, ok := Rejected(http.Header{"X-Gorn-Reject-0": {"400"}}); ok {
		t.Error("a header with another token counts as a rejection")
	}
}

// TestCorpus replays testdata/requests through the guard.
func TestCorpus(t *testing.T) {
	cases, err := corpus.Load("../testdata/requests")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 50 {
		t.Fatalf("only %d corpus cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			cfg, err := configFromFlags(c.Flags)
			if err != nil {
				t.Fatal(err)
			}
			outs := replay(t, cfg, c.Raw, 0)
			var got []int
			for _, o := range outs {
				got = append(got, o.status)
			}
			if !slices.Equal(got, c.Statuses) {
				t.Fatalf("statuses %v, want %v (%+v)", got, c.Statuses, outs)
			}
			if c.Body != nil && outs[0].body != *c.Body {
				t.Errorf("body %q, want %q", outs[0].body, *c.Body)
			}
			// The same bytes split in every read must give the same.
			again := replay(t, cfg, c.Raw, 1)
			if len(again) != len(outs) || again[len(again)-1].status != outs[len(outs)-1].status {
				t.Errorf("byte-at-a-time: %+v, want %+v", again, outs)
			}
		})
	}
}

// configFromFlags maps a corpus case's gorn flags to a Config.
func configFromFlags(flags []string) (*Config, error) {
	cfg := Defaults()
	for i := 0; i < len(flags); i++ {
		arg := func() (int, error) {
			i++
			if i >= len(flags) {
				return 0, errors.New("missing value")
			}
			var n int
			for _, c := range flags[i] {
				n = n*10 + int(c-'0')
			}
			return n, nil
		}
		var err error
		switch flags[i] {
		case "--limit-request-line":
			cfg.RequestLine, err = arg()
		case "--limit-request-fields":
			cfg.Fields, err = arg()
		case "--limit-request-field_size":
			cfg.FieldSize, err = arg()
		case "--limit-request-body":
			var n int
			n, err = arg()
			cfg.Body = int64(n)
		case "--permit-obsolete-folding":
			cfg.PermitObsFold = true
		case "--header-map":
			i++
			cfg.HeaderMap, err = ParseHeaderMap(flags[i])
		default:
			err = errors.New("unknown flag " + flags[i])
		}
		if err != nil {
			return nil, err
		}
	}
	return &cfg, nil
}

// TestFeedAllocatesNothing: once warm, the parser checks a request with
// framing fields (Host, Content-Length, Expect) without allocating: their
// names and values go to buffers reused from request to request.
func TestFeedAllocatesNothing(t *testing.T) {
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n",
		"POST /a?b=c HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok",
	} {
		var p parser
		cfg := Defaults()
		p.init(cfg.limits())
		in := []byte(raw)
		var out []byte
		feed := func() {
			n, o, err := p.feed(in, out[:0])
			if err != nil || n != len(raw) || string(o) != raw {
				t.Fatalf("feed: %d %q %v", n, o, err)
			}
			out = o
		}
		feed() // the buffers grow once
		if n := testing.AllocsPerRun(100, feed); n != 0 {
			t.Errorf("%q: %.1f allocations per request, want 0", raw, n)
		}
	}
}

// A connection after a closed one finds the parser's buffers grown: the
// whole life of a Connection: close connection, Wrap to Close, allocates
// only the Conn itself.
func TestNewConnReusesBuffers(t *testing.T) {
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\nConnection: close\r\n\r\n",
		"POST /a?b=c HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok",
	} {
		cfg := Defaults()
		src := strings.NewReader(raw)
		fc := &fakeConn{r: src}
		buf := make([]byte, 512)
		serve := func() {
			src.Reset(raw)
			g := Wrap(fc, &cfg)
			n := 0
			for n < len(raw) {
				m, err := g.Read(buf[n:])
				if err != nil {
					t.Fatalf("Read: %v after %q", err, buf[:n])
				}
				n += m
			}
			g.Close()
			if g.bufs != nil || g.p.head != nil || g.out != nil || cap(g.in) != 0 {
				t.Fatal("Close kept the connection's buffers")
			}
		}
		serve() // the buffers grow once
		if raceEnabled {
			continue // sync.Pool drops a share of its buffers on purpose
		}
		if n := testing.AllocsPerRun(100, serve); n > 1 {
			t.Errorf("%q: %.1f allocations per connection, want 1 (the Conn)", raw, n)
		}
	}
}
