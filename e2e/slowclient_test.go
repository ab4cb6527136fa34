package e2e

import (
	"bufio"
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

// TestSlowlorisNormalClientsServed opens hundreds of connections that send
// their request head one byte at a time and checks that a one-worker,
// one-thread gorn still serves normal clients meanwhile.
func TestSlowlorisNormalClientsServed(t *testing.T) {
	s := start(t, python(t), "-w", "1", "--threads", "1", "--header-timeout", "20", "basic:app")
	s.ready("/pid")

	const slow = 300
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	opened := make(chan struct{}, slow)
	for i := 0; i < slow; i++ {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
			if err != nil {
				opened <- struct{}{}
				return
			}
			defer c.Close()
			opened <- struct{}{}
			head := "GET /pid HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 100)
			for j := 0; j < len(head); j++ {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte{head[j]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
			}
		})
	}
	for i := 0; i < slow; i++ {
		<-opened
	}

	// Normal clients, each on a new connection, are served while the slow
	// ones trickle.
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 20; i++ {
		resp, err := client.Get(s.URL + "/pid")
		if err != nil {
			t.Fatalf("normal request %d with %d slow clients: %v", i, slow, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("normal request %d: status %d", i, resp.StatusCode)
		}
	}
}

// TestSlowClientTimeouts checks --header-timeout (a head that never ends is
// cut off) and --body-timeout (a body that stalls gets 408 and the app's
// read fails instead of hanging).
func TestSlowClientTimeouts(t *testing.T) {
	s := start(t, python(t), "--header-timeout", "1", "--body-timeout", "1", "basic:app")
	s.ready("/pid")

	t.Run("header", func(t *testing.T) {
		c, r := s.rawConn()
		fmt.Fprint(c, "GET /pid HTTP/1.1\r\nHost: x\r\n")
		began := time.Now()
		// The server closes the connection (net/http may answer 408
		// first); the read ends well before the 30 s test deadline.
		if _, err := io.ReadAll(r); err != nil {
			t.Fatalf("an unfinished head was not cut off: %v", err)
		}
		if time.Since(began) > 10*time.Second {
			t.Fatalf("an unfinished head held the connection for %s", time.Since(began))
		}
	})

	t.Run("body", func(t *testing.T) {
		c, r := s.rawConn()
		fmt.Fprint(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
		c.Write(make([]byte, 1000)) // then nothing more
		resp, err := http.ReadResponse(bufio.NewReader(r), nil)
		if err != nil {
			t.Fatalf("reading the response to a stalled body: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("stalled body: status %d, want 408", resp.StatusCode)
		}
		if !resp.Close {
			t.Fatal("the 408 does not close the connection (no Connection: close)")
		}
	})

	t.Run("trickled body", func(t *testing.T) {
		// A byte every 200 ms, each well within --body-timeout 1: without
		// a minimum rate it would hold the app's thread for ever.
		c, r := s.rawConn()
		fmt.Fprint(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
		c.Write(make([]byte, 100000))
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for range 100 { // 20 s at most
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if _, err := c.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(r)
		// The app echoes what it read: its response starts at once, and
		// is cut when the body read fails.
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("the trickled upload: %v", err)
		}
		if resp.StatusCode == http.StatusRequestTimeout {
			resp.Body.Close()
			return
		}
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Fatal("a trickled body was read to its end")
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("a body trickled a byte every 200 ms still held its request after 10 s (--body-timeout 1)")
		}
	})

	// The worker serves on.
	if code, _ := s.get("/pid"); code != 200 {
		t.Fatalf("after the slow clients: status %d", code)
	}
}

// TestWorkerConnectionsBound checks that --worker-connections bounds the
// connections one worker keeps: idle keep-alive connections are closed to
// make room, and a new client is served.
func TestWorkerConnectionsBound(t *testing.T) {
	s := start(t, python(t), "-w", "1", "--worker-connections", "5", "--keep-alive", "30", "basic:app")
	s.ready("/pid")
	// Five idle keep-alive connections fill the worker.
	var idle []net.Conn
	for i := 0; i < 5; i++ {
		c, r := s.rawConn()
		fmt.Fprint(c, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("keep-alive request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		idle = append(idle, c)
	}
	// A sixth client is served: the longest-idle connection makes room.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(s.URL + "/pid")
	if err != nil {
		t.Fatalf("a client beyond --worker-connections: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The first idle connection was closed by the server.
	idle[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := idle[0].Read(make([]byte, 1)); err == nil {
		t.Fatalf("the longest-idle connection is still open (read %d bytes)", n)
	}
}

// TestClientHangsUp: a client that hangs up while its request waits
// behind a slow one is let go at once (499 in the access log), not when
// the app gets to its request; the app never runs it. One that hangs up
// in the middle of its request body is logged 499 as well.
func TestClientHangsUp(t *testing.T) {
	s := start(t, python(t), "-w", "1", "--threads", "1", "--access-logfile", "-", "basic:app")
	s.ready("/pid")
	slow, slowBR := s.rawConn()
	fmt.Fprintf(slow, "GET /sleep?3 HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(200 * time.Millisecond) // the app is in the sleep
	queued, _ := s.rawConn()
	fmt.Fprintf(queued, "GET /path?queued HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(200 * time.Millisecond)
	queued.Close()
	s.waitLog(`"GET /path\?queued HTTP/1.1" 499`, 2*time.Second)
	if strings.Contains(s.log.String(), `"GET /sleep?3 HTTP/1.1" 200`) {
		t.Fatalf("the hang-up was noticed only after the slow request ended:\n%s", s.log.String())
	}
	resp, err := http.ReadResponse(slowBR, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the slow request: %v %v", resp, err)
	}
	if code, _ := s.get("/pid"); code != 200 {
		t.Errorf("after the hang-up: %d", code)
	}

	// A client that hangs up in the middle of its body is logged 499
	// too: a client gone, not a bad request.
	upload, _ := s.rawConn()
	fmt.Fprintf(upload, "POST /echo?cut HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("x", 70000))
	time.Sleep(200 * time.Millisecond)
	upload.Close()
	s.waitLog(`"POST /echo\?cut HTTP/1.1" 499`, 5*time.Second)

	// A client that half-closes its connection after its request reads
	// as one that left (as with nginx): no response at all, rather than
	// the empty 200 both HTTP servers would send for a handler that wrote
	// nothing.
	half, halfBR := s.rawConn()
	fmt.Fprintf(half, "GET /sleep?0.5 HTTP/1.1\r\nHost: h\r\n\r\n")
	if err := half.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	half.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(halfBR); len(got) != 0 || err != nil {
		t.Errorf("a half-closed client's request got %q (%v), want the connection closed with no response", got, err)
	}
	s.waitLog(`"GET /sleep\?0.5 HTTP/1.1" 499`, 5*time.Second)
}

// TestClientLeavesStream: with one thread (the default), a slow stream
// whose client leaves ends at its next chunk (the app's generator is
// closed), not when the whole stream is done: an endless one (server-sent
// events) would otherwise hold the worker's only thread forever.
func TestClientLeavesStream(t *testing.T) {
	s := start(t, python(t), "-w", "1", "basic:app")
	s.ready("/pid")
	marker := filepath.Join(t.TempDir(), "ended")
	c, br := s.rawConn()
	fmt.Fprintf(c, "GET /ticks?n=3000&f=%s HTTP/1.1\r\nHost: h\r\n\r\n", marker) // 300 s of ticks
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the stream: %v %v", resp, err)
	}
	line, err := br.ReadString('\n') // a chunk has come
	if err != nil {
		t.Fatalf("the first tick: %q %v", line, err)
	}
	c.Close()
	waitFile(t, marker, "") // the generator was closed
	if code, _ := s.get("/pid"); code != 200 {
		t.Errorf("after the stream's client left: %d", code)
	}
}

// TestDeferredAccept checks that gorn's listening socket holds a new
// connection back until its client sends something (TCP_DEFER_ACCEPT):
// while the client is silent, the server's side of the connection is a
// SYN_RECV request in /proc/net/tcp, which no worker can accept; once the
// client writes, it is established and served. A client that stays silent
// past the deferral (about a second), then sends its request, is served
// too, and other clients are served meanwhile.
func TestDeferredAccept(t *testing.T) {
	s := start(t, python(t), "-w", "1", "--threads", "1", "basic:app")
	s.ready("/pid")
	_, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	serverPort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		silence time.Duration // before the request
		state   string        // the server side's state while silent: 03 SYN_RECV
	}{
		{"talks at once", 0, ""},
		{"talks after 300 ms", 300 * time.Millisecond, "03"},
		{"talks after the deferral", 1500 * time.Millisecond, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := s.rawConn()
			clientPort := c.LocalAddr().(*net.TCPAddr).Port
			if tt.state != "" {
				time.Sleep(tt.silence / 2)
				if got := serverSideState(serverPort, clientPort); got != tt.state {
					t.Fatalf("while the client is silent the server's side is in state %q, want %q (SYN_RECV: accept deferred)", got, tt.state)
				}
				// A client with a request is served meanwhile.
				if code, _ := s.get("/pid"); code != 200 {
					t.Fatalf("another client: status %d", code)
				}
				time.Sleep(tt.silence / 2)
			} else {
				time.Sleep(tt.silence)
			}
			fmt.Fprint(c, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("request after %s of silence: %v", tt.silence, err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("request after %s of silence: status %d", tt.silence, resp.StatusCode)
			}
			if got := serverSideState(serverPort, clientPort); got != "01" {
				t.Fatalf("after the request the server's side is in state %q, want 01 (ESTABLISHED)", got)
			}
		})
	}
}

// serverSideState is the state (hex, as /proc/net/tcp shows it) of the
// server's side of the loopback connection from clientPort to serverPort,
// or "" if there is none.
func serverSideState(serverPort, clientPort int) string {
	local, remote := fmt.Sprintf(":%04X", serverPort), fmt.Sprintf(":%04X", clientPort)
	for _, fs := range tcpSockets() {
		if strings.HasSuffix(fs[1], local) && strings.HasSuffix(fs[2], remote) {
			return fs[3]
		}
	}
	return ""
}

// TestSilentClientsDoNotStallAccepts: connections that send nothing (a
// slowloris) do not hold up the accept loop. Each used to cost it
// firstRequestGrace (10 ms) as it waited for the connection's request to
// take its slot, so 400 of them held a real request back for 4 s.
func TestSilentClientsDoNotStallAccepts(t *testing.T) {
	s := start(t, python(t), "-w", "1", "basic:app")
	s.ready("/pid")
	_, port, _ := net.SplitHostPort(s.Addr)
	serverPort, _ := strconv.Atoi(port)
	silent := map[string]bool{} // their ports, as /proc/net/tcp shows them
	for range 400 {
		c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		silent[fmt.Sprintf(":%04X", c.LocalAddr().(*net.TCPAddr).Port)] = true
	}
	// Past TCP_DEFER_ACCEPT's second, the kernel queues them for accept(2)
	// (they leave SYN_RECV) all at once: a request sent now comes after
	// them.
	local := fmt.Sprintf(":%04X", serverPort)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		waiting := 0
		for _, fs := range tcpSockets() {
			if fs[3] == "03" && strings.HasSuffix(fs[1], local) && silent[fs[2][strings.LastIndexByte(fs[2], ':'):]] {
				waiting++
			}
		}
		if waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d silent connections still deferred after 20 s", waiting)
		}
	}
	// A new connection, not one kept alive from s.ready's request.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(s.URL + "/pid")
	if err != nil {
		t.Fatalf("a request behind 400 silent connections: %v (each one held the accept loop up)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a request behind 400 silent connections: status %d", resp.StatusCode)
	}
}

// TestClientStopsReading: a client that reads nothing of a large response
// is dropped once a write has waited --timeout for it, and the app's
// generator is closed; with one thread (the default) the worker was
// otherwise held for as long as the client kept its connection open.
func TestClientStopsReading(t *testing.T) {
	s := start(t, python(t), "-w", "1", "--timeout", "2", "basic:app")
	s.ready("/pid")
	marker := filepath.Join(t.TempDir(), "ended")
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return err
	}}
	c, err := d.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 50 000 ticks of 64 KiB (a 3 GiB stream): far more than the socket
	// buffers hold. The client never reads.
	fmt.Fprintf(c, "GET /ticks?n=50000&size=65536&every=0&f=%s HTTP/1.1\r\nHost: h\r\n\r\n", marker)
	waitFile(t, marker, "") // the write gave up; the generator was closed
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(s.URL + "/pid")
	if err != nil {
		t.Fatalf("another client, while one reads nothing: %v", err)
	}
	resp.Body.Close()
}
