package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestHTTPServerSentEvents checks that a streamed response reaches the
// client chunk by chunk: the app yields its second event only after the
// test, having read the first, creates a flag file.
func TestHTTPServerSentEvents(t *testing.T) {
	for _, args := range wcRuntimeModes {
		t.Run(wcModeName(args), func(t *testing.T) { testHTTPServerSentEvents(t, args) })
	}
}

func testHTTPServerSentEvents(t *testing.T, args []string) {
	s := start(t, python(t), append(args, "conform:app")...)
	s.ready("/path")
	dir := t.TempDir()
	flag, rec := filepath.Join(dir, "flag"), filepath.Join(dir, "rec")

	c, br := s.rawConn()
	fmt.Fprintf(c, "GET /sse?flag=%s&rec=%s HTTP/1.1\r\nHost: h\r\n\r\n", flag, rec)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /sse = %d %v", resp.StatusCode, resp.Header)
	}
	events := bufio.NewReader(resp.Body)
	readEvent := func() string {
		t.Helper()
		var ev strings.Builder
		for {
			line, err := events.ReadString('\n')
			if err != nil {
				t.Fatalf("reading an event after %q: %v", ev.String(), err)
			}
			if line == "\n" {
				return ev.String()
			}
			ev.WriteString(line)
		}
	}
	if ev := readEvent(); ev != "data: first\n" {
		t.Fatalf("first event %q", ev)
	}
	// The app is now blocked until the flag exists: had gorn held the
	// first event back, the app would have timed out and sent "timeout".
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if ev := readEvent(); ev != "data: second\n" {
		t.Fatalf("second event %q, want data: second", ev)
	}
	if ev := readEvent(); ev != "data: last\n" {
		t.Fatalf("last event %q", ev)
	}
	if rest, err := io.ReadAll(events); err != nil || len(rest) != 0 {
		t.Fatalf("after the last event: %q %v", rest, err)
	}
	wcWaitFile(t, rec, "exhausted\nclose\n")
}

// xCounter counts bytes written to it and how many of them were not 'x'.
type xCounter struct{ n, bad int64 }

func (w *xCounter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	w.bad += int64(len(p) - bytes.Count(p, []byte{'x'}))
	return len(p), nil
}

// TestHTTPLargeDownload streams 64 MiB from a generator.
func TestHTTPLargeDownload(t *testing.T) {
	s := start(t, python(t), "basic:app")
	s.ready("/pid")
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Get(s.URL + "/stream?n=1024&size=65536")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var w xCounter
	_, err = io.Copy(&w, resp.Body)
	if err != nil || resp.StatusCode != 200 || w.n != 64<<20 || w.bad != 0 {
		t.Fatalf("GET /stream: %d, %d bytes (%d not x), %v; want 64 MiB of x", resp.StatusCode, w.n, w.bad, err)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
	}
}

// TestHTTPLargeSingleBody: an app that returns its whole response as one
// bytes object larger than the stream's credit and than the shared slots
// (the upload echoed back). The runtime sends the frames of one write
// together, so it must send what it holds before it waits for credit; and
// with several threads competing for the slots, bytes go through the
// socket too, in order. Each client gets its body back intact.
func TestHTTPLargeSingleBody(t *testing.T) {
	const size = 3<<20 + 12345 // 3 MiB and a partial slot
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i*13 + i/65536)
	}
	for _, threads := range []string{"1", "4"} {
		t.Run("threads "+threads, func(t *testing.T) {
			s := start(t, python(t), "--threads", threads, "basic:app")
			s.ready("/pid")
			client := &http.Client{Timeout: 60 * time.Second}
			n, _ := strconv.Atoi(threads)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := client.Post(s.URL+"/echo", "application/octet-stream", bytes.NewReader(body))
					if err != nil {
						t.Errorf("client %d: %v", i, err)
						return
					}
					got, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
						t.Errorf("client %d: status %d, %d bytes back (want %d), equal %v, %v",
							i, resp.StatusCode, len(got), size, bytes.Equal(got, body), err)
					}
				}()
			}
			wg.Wait()
		})
	}
}

// TestHTTPResponseFraming checks chunked encoding, Content-Length and
// keep-alive on HTTP/1.1 and HTTP/1.0.
func TestHTTPResponseFraming(t *testing.T) {
	s := start(t, python(t), "conform:app")
	s.ready("/path")
	streamed := "streamed 0\nstreamed 1\nstreamed 2\n"
	sized := strings.Repeat("a", 33333) + strings.Repeat("b", 33333) + strings.Repeat("c", 33334)
	tests := []struct {
		name, req, proto, body string
		chunked                bool
		contentLength          int64
		keptAlive              bool
	}{
		{"1.1 without Content-Length is chunked", "GET /head-stream HTTP/1.1\r\nHost: h\r\n\r\n",
			"HTTP/1.1", streamed, true, -1, true},
		{"1.1 with the app's Content-Length", "GET /cl?size=100000 HTTP/1.1\r\nHost: h\r\n\r\n",
			"HTTP/1.1", sized, false, 100000, true},
		{"1.1 Connection close", "GET /cl?size=100000 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
			"HTTP/1.1", sized, false, 100000, false},
		{"1.0 without Content-Length ends at close", "GET /head-stream HTTP/1.0\r\n\r\n",
			"HTTP/1.0", streamed, false, -1, false},
		{"1.0 with Content-Length", "GET /cl?size=100000 HTTP/1.0\r\n\r\n",
			"HTTP/1.0", sized, false, 100000, false},
		{"1.0 keep-alive with Content-Length", "GET /cl?size=100000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			"HTTP/1.0", sized, false, 100000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, br := s.rawConn()
			resp, body, err := wcExchange(t, c, br, "GET", tt.req)
			if err != nil || resp.StatusCode != 200 || string(body) != tt.body {
				t.Fatalf("%d, %d bytes, %v", resp.StatusCode, len(body), err)
			}
			if resp.Proto != tt.proto {
				t.Errorf("status line %s, want %s", resp.Proto, tt.proto)
			}
			chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
			if chunked != tt.chunked || resp.ContentLength != tt.contentLength {
				t.Errorf("Transfer-Encoding %v Content-Length %d, want chunked %v, %d",
					resp.TransferEncoding, resp.ContentLength, tt.chunked, tt.contentLength)
			}
			if !tt.keptAlive {
				if rest := wcReadUntilClosed(t, c, br, 10*time.Second); len(rest) != 0 {
					t.Errorf("bytes after the response: %q", rest)
				}
				return
			}
			if resp.Close {
				t.Errorf("the response says Connection: close")
			}
			next := "GET /path?next HTTP/1.1\r\nHost: h\r\n\r\n"
			if tt.proto == "HTTP/1.0" {
				next = "GET /path?next HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
			}
			resp, body, err = wcExchange(t, c, br, "GET", next)
			if err != nil || resp.StatusCode != 200 || string(body) != "/path?next" {
				t.Errorf("the next request on the connection: %d %q %v", resp.StatusCode, body, err)
			}
		})
	}
}

// vmHWM is a process's peak resident set size in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading the status of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("parsing %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM for %d", pid)
	return 0
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// uploadSize is the body TestHTTPLargeUpload streams through /count.
const uploadSize = 256 << 20

// TestHTTPLargeUpload streams a large body, with a Content-Length and
// chunked, through the app while the worker's and the runtime's peak
// memory stay bounded.
func TestHTTPLargeUpload(t *testing.T) {
	s := start(t, python(t), "basic:app")
	s.ready("/pid")
	client := &http.Client{Timeout: 120 * time.Second}
	upload := func(size int64, chunked bool) {
		t.Helper()
		var body io.Reader = io.LimitReader(zeros{}, size)
		req, err := http.NewRequest("POST", s.URL+"/count", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		if chunked {
			req.ContentLength = -1
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("uploading %d bytes: %v", size, err)
		}
		defer resp.Body.Close()
		var got struct{ Bytes int64 }
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 || got.Bytes != size {
			t.Fatalf("uploading %d bytes (chunked %v): %d, counted %d, %v", size, chunked, resp.StatusCode, got.Bytes, err)
		}
	}
	// Warm up both paths, then take the baseline.
	upload(1<<20, false)
	upload(1<<20, true)
	workers, runtimes := s.workerPids(), s.runtimePids()
	if len(workers) != 1 || len(runtimes) != 1 {
		t.Fatalf("workers %v runtimes %v, want one each", workers, runtimes)
	}
	pids := map[string]int{"worker": workers[0], "runtime": runtimes[0]}
	base := map[string]int64{}
	for name, pid := range pids {
		base[name] = vmHWM(t, pid)
	}
	upload(uploadSize, false)
	upload(uploadSize, true)
	const maxGrowth, maxPeak = 32 << 20, 100 << 20
	for name, pid := range pids {
		peak := vmHWM(t, pid)
		t.Logf("%s: VmHWM %d MiB after boot, %d MiB after 2 x %d MiB uploads", name, base[name]>>20, peak>>20, uploadSize>>20)
		if peak-base[name] > maxGrowth {
			t.Errorf("%s peak RSS grew by %d MiB streaming uploads, want at most %d MiB", name, (peak-base[name])>>20, maxGrowth>>20)
		}
		if !raceEnabled && peak > maxPeak {
			t.Errorf("%s peak RSS %d MiB, want under %d MiB", name, peak>>20, maxPeak>>20)
		}
	}
}

// TestHTTPChunkedRequestBody sends a chunked body in awkward chunks and
// reads it in the app with read(), read(n), readline() and iteration.
func TestHTTPChunkedRequestBody(t *testing.T) {
	for _, args := range wcRuntimeModes {
		t.Run(wcModeName(args), func(t *testing.T) { testHTTPChunkedRequestBody(t, args) })
	}
}

func testHTTPChunkedRequestBody(t *testing.T, args []string) {
	s := start(t, python(t), append(args, "conform:app")...)
	s.ready("/path")

	// Lines short and long (one longer than the runtime's 64 KiB reads),
	// an empty line, and a last line without a newline.
	var body bytes.Buffer
	lines := 0
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&body, "line %d %s\n", i, strings.Repeat("y", i%300))
		lines++
	}
	body.WriteString("\n")
	lines++
	body.WriteString(strings.Repeat("L", 200000) + "\n")
	lines++
	body.WriteString("no newline at the end")
	lines++
	sum := sha256.Sum256(body.Bytes())
	want := hex.EncodeToString(sum[:])

	// Chunks of 1 byte, odd sizes, and big ones, with an extension and a
	// trailer.
	var raw bytes.Buffer
	data := body.Bytes()
	sizes := []int{1, 1, 7, 4093, 65536, 100003, 1, 300000}
	for i := 0; len(data) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(data))
		if i == 2 {
			fmt.Fprintf(&raw, "%x;ext=1\r\n", n)
		} else {
			fmt.Fprintf(&raw, "%X\r\n", n)
		}
		raw.Write(data[:n])
		raw.WriteString("\r\n")
		data = data[n:]
	}
	raw.WriteString("0\r\nX-Trailer: yes\r\n\r\n")

	for _, mode := range []string{"read", "readsize", "readline", "iter"} {
		t.Run(mode, func(t *testing.T) {
			c, br := s.rawConn()
			head := "POST /body?mode=" + mode + " HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
			go func() { c.Write(append([]byte(head), raw.Bytes()...)) }()
			resp, got, err := wcRead(t, br, "POST")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %s %v", resp.StatusCode, got, err)
			}
			var r struct {
				Bytes, Lines int
				Sha256       string
			}
			if err := json.Unmarshal(got, &r); err != nil {
				t.Fatal(err)
			}
			wantLines := lines
			if mode == "read" || mode == "readsize" {
				wantLines = lines - 1 // newlines counted
			}
			if r.Bytes != body.Len() || r.Sha256 != want || r.Lines != wantLines {
				t.Errorf("the app read %d bytes, %d lines, sha256 %s; want %d, %d, %s", r.Bytes, r.Lines, r.Sha256, body.Len(), wantLines, want)
			}
			// The connection is still good after a chunked body.
			resp, got, err = wcExchange(t, c, br, "GET", "GET /path?after HTTP/1.1\r\nHost: h\r\n\r\n")
			if err != nil || string(got) != "/path?after" {
				t.Errorf("after the chunked body: %d %q %v", resp.StatusCode, got, err)
			}
		})
	}
}

// TestHTTPExpectContinue checks that gorn answers 100 Continue before the
// client sends its body.
func TestHTTPExpectContinue(t *testing.T) {
	s := start(t, python(t), "conform:app")
	s.ready("/path")
	for _, size := range []int{11, 1000000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			c, br := s.rawConn()
			fmt.Fprintf(c, "POST /body?mode=read HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", size)
			c.SetReadDeadline(time.Now().Add(15 * time.Second))
			status, err := br.ReadString('\n')
			if err != nil || status != "HTTP/1.1 100 Continue\r\n" {
				t.Fatalf("before the body: %q %v, want HTTP/1.1 100 Continue", status, err)
			}
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if line == "\r\n" {
					break
				}
			}
			if br.Buffered() != 0 {
				t.Fatalf("the final response came before the body was sent")
			}
			body := bytes.Repeat([]byte("e"), size)
			go c.Write(body)
			resp, got, err := wcRead(t, br, "POST")
			sum := sha256.Sum256(body)
			if err != nil || resp.StatusCode != 200 || !strings.Contains(string(got), hex.EncodeToString(sum[:])) {
				t.Fatalf("%d %s %v", resp.StatusCode, got, err)
			}
		})
	}
}

// TestHTTPExpectContinueUnread checks that an app that answers without
// reading the body sends its response, and no 100 Continue, to a client
// that waits for one before sending a large body: the worker reads no body
// ahead of the app then (it does for other large bodies).
func TestHTTPExpectContinueUnread(t *testing.T) {
	s := start(t, python(t), "conform:app")
	s.ready("/path")
	c, br := s.rawConn()
	fmt.Fprintf(c, "POST /path HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200 ") {
		t.Fatalf("got %q %v; want the app's 200 without sending the body", status, err)
	}
}

// TestHTTPKeepAlive checks several requests on one connection and the
// --keep-alive idle timeout.
func TestHTTPKeepAlive(t *testing.T) {
	t.Run("several requests", func(t *testing.T) {
		s := start(t, python(t), "conform:app")
		s.ready("/path")
		c, br := s.rawConn()
		for i := 0; i < 5; i++ {
			req := fmt.Sprintf("GET /path?%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
			switch i {
			case 1:
				req = fmt.Sprintf("POST /path?%d HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", i)
			case 3:
				// A body the app never reads, larger than the one sent
				// with the request frame.
				req = fmt.Sprintf("POST /path?%d HTTP/1.1\r\nHost: h\r\nContent-Length: 200000\r\n\r\n%s", i, strings.Repeat("i", 200000))
			}
			resp, body, err := wcExchange(t, c, br, "GET", req)
			if err != nil || resp.StatusCode != 200 || string(body) != fmt.Sprintf("/path?%d", i) || resp.Close {
				t.Fatalf("request %d: %d %q %v close %v", i, resp.StatusCode, body, err, resp.Close)
			}
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		s := start(t, python(t), "--keep-alive", "1", "conform:app")
		s.ready("/path")
		c, br := s.rawConn()
		resp, body, err := wcExchange(t, c, br, "GET", "GET /path?one HTTP/1.1\r\nHost: h\r\n\r\n")
		if err != nil || string(body) != "/path?one" || resp.Close {
			t.Fatalf("%d %q %v close %v", resp.StatusCode, body, err, resp.Close)
		}
		// Idle past --keep-alive: the server hangs up on its own.
		if rest := wcReadUntilClosed(t, c, br, 15*time.Second); len(rest) != 0 {
			t.Errorf("bytes on the idle connection: %q", rest)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		s := start(t, python(t), "--keep-alive", "0", "conform:app")
		s.ready("/path")
		c, br := s.rawConn()
		resp, body, err := wcExchange(t, c, br, "GET", "GET /path?one HTTP/1.1\r\nHost: h\r\n\r\n")
		if err != nil || string(body) != "/path?one" || !resp.Close {
			t.Fatalf("%d %q %v: want the body and Connection: close", resp.StatusCode, body, err)
		}
		if rest := wcReadUntilClosed(t, c, br, 10*time.Second); len(rest) != 0 {
			t.Errorf("bytes after the response: %q", rest)
		}
	})
}

// TestHTTPPipelining writes three requests at once and reads three
// responses in order.
func TestHTTPPipelining(t *testing.T) {
	s := start(t, python(t), "conform:app")
	s.ready("/path")
	c, br := s.rawConn()
	reqs := "GET /path?1 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"POST /body?mode=read HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nab\ncd\n" +
		"GET /path?3 HTTP/1.1\r\nHost: h\r\n\r\n"
	if _, err := io.WriteString(c, reqs); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("ab\ncd\n"))
	wants := []string{"/path?1", `"sha256": "` + hex.EncodeToString(sum[:]) + `"`, "/path?3"}
	for i, want := range wants {
		resp, body, err := wcRead(t, br, "GET")
		if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("response %d: %d %q %v, want %q", i+1, resp.StatusCode, body, err, want)
		}
	}
}

// TestHTTPCloseCalled checks that close() on the app's iterable is called
// after a complete response, a HEAD, an iteration that raised, and a
// client that went away mid-stream.
func TestHTTPCloseCalled(t *testing.T) {
	for _, args := range wcRuntimeModes {
		t.Run(wcModeName(args), func(t *testing.T) { testHTTPCloseCalled(t, args) })
	}
}

func testHTTPCloseCalled(t *testing.T, args []string) {
	s := start(t, python(t), append(args, "conform:app")...)
	s.ready("/path")
	tests := []struct{ name, method, mode, want string }{
		{"complete", "GET", "ok", "called\nexhausted\nclose\n"},
		{"head", "HEAD", "ok", "called\nexhausted\nclose\n"},
		{"iteration raised", "GET", "raise", "called\nraised RuntimeError\nclose\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := filepath.Join(t.TempDir(), "rec")
			c, br := s.rawConn()
			resp, body, err := wcExchange(t, c, br, tt.method, tt.method+" /record?mode="+tt.mode+"&rec="+rec+" HTTP/1.1\r\nHost: h\r\n\r\n")
			if resp.StatusCode != 200 {
				t.Fatalf("%d %q %v", resp.StatusCode, body, err)
			}
			switch {
			case tt.method == "HEAD":
				if err != nil || len(body) != 0 {
					t.Errorf("HEAD: %q %v", body, err)
				}
			case tt.mode == "raise":
				if !errors.Is(err, io.ErrUnexpectedEOF) || string(body) != "part 0\n" {
					t.Errorf("raising iteration: %q %v, want part 0 and a cut", body, err)
				}
			default:
				if err != nil || string(body) != "part 0\npart 1\npart 2\n" {
					t.Errorf("%q %v", body, err)
				}
			}
			wcWaitFile(t, rec, tt.want)
		})
	}
	t.Run("client disconnected", func(t *testing.T) {
		rec := filepath.Join(t.TempDir(), "rec")
		c, br := s.rawConn()
		fmt.Fprintf(c, "GET /record?mode=forever&rec=%s HTTP/1.1\r\nHost: h\r\n\r\n", rec)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 300000)); err != nil {
			t.Fatal(err)
		}
		c.Close()
		// The generator would run for 30 s; close() comes first, and
		// without "exhausted".
		wcWaitFile(t, rec, "called\nclose\n")
		// The worker and its runtime are free again.
		if code, body := s.get("/path?after"); code != 200 || body != "/path?after" {
			t.Errorf("after the disconnect: %d %q", code, body)
		}
	})
}

// TestHTTPSharedBodies: large response chunks travel from the runtime to
// the worker through shared memory slots, which the worker frees once the
// client has the bytes. Under pressure (slow clients holding every slot)
// the bytes go through the socket instead, in order; clients that go away
// mid-response give their slots back: afterwards a response finds free
// slots again.
func TestHTTPSharedBodies(t *testing.T) {
	s := start(t, python(t), "--threads", "8", "--log-level", "debug", "basic:app")
	s.ready("/pid")
	const path = "/chunks?n=160&size=65536" // 10 MiB: more than loopback buffers hold
	const fallback = "No free shared memory slot"

	// A client that reads nothing for a while: its response waits in the
	// worker, and its runtime thread holds slots up to its credit.
	slow := func() (net.Conn, *bufio.Reader) {
		d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
			c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
			return nil
		}}
		c, err := d.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second))
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", path)
		return c, bufio.NewReader(c)
	}
	check := func(name string, br *bufio.Reader) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if want := int64(160*65536 + 159*160/2); err != nil || n != want || hex.EncodeToString(h.Sum(nil)) != resp.Header.Get("X-Sha256") {
			t.Errorf("%s: %d bytes, %v, digest %x; want %d bytes with digest %s", name, n, err, h.Sum(nil), want, resp.Header.Get("X-Sha256"))
		}
	}

	var readers, leavers []*bufio.Reader
	var leaverConns []net.Conn
	for range 3 {
		_, br := slow()
		readers = append(readers, br)
		c, br := slow()
		leaverConns = append(leaverConns, c)
		leavers = append(leavers, br)
	}
	s.waitLog(fallback, 30*time.Second) // every slot is held
	for i, c := range leaverConns {     // these go away mid-response
		if _, err := http.ReadResponse(leavers[i], nil); err != nil {
			t.Fatalf("leaver %d: %v", i, err)
		}
		c.Close()
	}
	for i, br := range readers { // these read it all, in order, at last
		check(fmt.Sprintf("slow reader %d", i), br)
	}

	// Every slot is free again: a response finds them.
	if code, _ := s.get("/pid"); code != 200 {
		t.Fatalf("GET /pid after the slow clients: %d", code)
	}
	mark := len(s.log.String())
	c, br := s.rawConn()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", path)
	check("a client after them", br)
	if strings.Contains(s.log.String()[mark:], fallback) {
		t.Errorf("a lone response found no free slot: slots were not given back\n%s", s.log.String()[mark:])
	}
}

// TestHTTPSharedRequestBodies: request bodies travel from the worker to
// the runtime through shared memory slots, one per stream reading its
// body; with every slot in use the bytes go through the socket, in order;
// and each slot is given back once its stream asks for more or ends.
func TestHTTPSharedRequestBodies(t *testing.T) {
	s := start(t, python(t), "--threads", "12", "--log-level", "debug", "basic:app")
	s.ready("/pid")
	const fallback = "No free shared body slot"
	upload := func(name string, size int, pause string) {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(i*7 + i/65536)
		}
		sum := sha256.Sum256(body)
		client := &http.Client{Timeout: 60 * time.Second}
		resp, err := client.Post(s.URL+"/slowdigest?pause="+pause, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(got) != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: %d %q %v; want the body's digest %x", name, resp.StatusCode, got, err, sum)
		}
	}

	// More streams read their bodies at once than there are slots.
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			upload(fmt.Sprintf("concurrent upload %d", i), 1<<20, "0.05")
		}()
	}
	wg.Wait()
	if !strings.Contains(s.log.String(), fallback) {
		t.Errorf("12 slow uploads at once never ran out of body slots; the test does not test the fallback")
	}

	// Every slot is free again: uploads one after the other find one.
	mark := len(s.log.String())
	for i := range 3 {
		upload(fmt.Sprintf("upload %d after them", i), 1<<20+12345, "0")
	}
	if strings.Contains(s.log.String()[mark:], fallback) {
		t.Errorf("a lone upload found no free body slot: slots were not given back\n%s", s.log.String()[mark:])
	}
}
