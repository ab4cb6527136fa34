package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lcOpts are the extras startLC gives a gorn run beyond the harness's start.
type lcOpts struct {
	dir   string     // working directory; default the test apps
	env   []string   // KEY=VALUE added to (and overriding) the environment
	extra []*os.File // inherited as fds 3, 4, ...
	// systemd passes extra as systemd's socket activation does: gorn
	// starts with LISTEN_PID (its own pid) and LISTEN_FDS set.
	systemd bool
	// stdout, when set, receives gorn's standard output apart from its
	// standard error (both still go to s.log).
	stdout *syncBuffer
}

// lcEnvKeys are the variables that change gorn's defaults; they are
// dropped from the inherited environment so only a test sets them.
var lcEnvKeys = []string{"PORT", "WEB_CONCURRENCY", "VIRTUAL_ENV", "GORN_WORKER", "GUNICORN_CMD_ARGS"}

// lcEnviron is the test's environment without lcEnvKeys, plus extra.
func lcEnviron(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, d := range lcEnvKeys {
			drop = drop || k == d
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// startLC runs gorn with exactly args (no bind or --python is added) and
// the options; the server is killed by pid, with the harness's orphan
// check, when the test ends. s.Addr and s.URL are left for the caller.
func startLC(t *testing.T, o lcOpts, args ...string) *server {
	t.Helper()
	if o.dir == "" {
		o.dir = appsDir(t)
	}
	s := &server{t: t, log: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(gornBin, args...)
	if o.systemd {
		// The shell's pid is gorn's once it execs.
		script := fmt.Sprintf(`export LISTEN_PID=$$ LISTEN_FDS=%d LISTEN_FDNAMES=web; exec "$0" "$@"`, len(o.extra))
		s.cmd = exec.Command("/bin/sh", append([]string{"-c", script, gornBin}, args...)...)
	}
	s.cmd.Dir = o.dir
	s.cmd.Env = lcEnviron(o.env)
	s.cmd.ExtraFiles = o.extra
	s.cmd.Stderr = s.log
	s.cmd.Stdout = s.log
	if o.stdout != nil {
		s.cmd.Stdout = io.MultiWriter(s.log, o.stdout)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.kill)
	return s
}

// setAddr points s at a TCP address.
func (s *server) setAddr(addr string) {
	s.Addr = addr
	s.URL = "http://" + addr
}

// runGorn runs gorn to completion (bounded to 60 s) with args in the test
// apps and returns its standard output, standard error and exit code.
func runGorn(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx := testContext(t, 60*time.Second)
	cmd := exec.CommandContext(ctx, gornBin, args...)
	cmd.Dir = appsDir(t)
	cmd.Env = lcEnviron(env)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("gorn %q did not exit within 60s\nstdout:\n%s\nstderr:\n%s", args, out.String(), errb.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("running gorn: %v", err)
	}
	return out.String(), errb.String(), code
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// noKeepAlive is a client that opens a fresh connection per request.
var noKeepAlive = &http.Client{
	Timeout:   60 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// fetch GETs url with client and returns status and body; an error (no
// response) is returned, not fatal, so goroutines may call it.
func fetch(ctx context.Context, client *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// getJSON GETs url with a fresh connection, requires 200 and decodes the
// JSON body into a map.
func getJSON(t *testing.T, client *http.Client, url string) map[string]any {
	t.Helper()
	code, body, err := fetch(testContext(t, 60*time.Second), client, url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if code != 200 {
		t.Fatalf("GET %s = %d %s", url, code, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("GET %s: %v in %q", url, err, body)
	}
	return m
}

// num reads an integer field of a decoded JSON object.
func num(t *testing.T, m map[string]any, key string) int {
	t.Helper()
	f, ok := m[key].(float64)
	if !ok {
		t.Fatalf("no number %q in %v", key, m)
	}
	return int(f)
}

// inflight is a request running in a goroutine.
type inflight struct {
	done   chan struct{}
	code   int
	body   string
	err    error
	cancel context.CancelFunc
}

// goGet starts GET url on its own connection; the request is cancelled
// and awaited when the test ends.
func goGet(t *testing.T, url string) *inflight {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	r := &inflight{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(r.done)
		r.code, r.body, r.err = fetch(ctx, noKeepAlive, url)
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// result waits up to d for the request to end.
func (r *inflight) result(t *testing.T, d time.Duration) (int, string, error) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(d):
		t.Fatalf("the request did not end within %s", d)
	}
	return r.code, r.body, r.err
}

func (r *inflight) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// holdURL is lc_util's /hold for secs, with a marker file that appears once
// the request runs in the app; waitMarker returns the runtime pid in it.
func holdURL(t *testing.T, s *server, secs float64) (url, marker string) {
	marker = filepath.Join(t.TempDir(), "marker")
	return fmt.Sprintf("%s/hold?t=%g&f=%s", s.URL, secs, marker), marker
}

// waitMarker waits up to 30 s for the marker file and returns the pid in it.
func waitMarker(t *testing.T, s *server, marker string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(marker)
		if err == nil && len(b) > 0 {
			pid, err := strconv.Atoi(string(b))
			if err != nil {
				t.Fatalf("marker %q: %v", b, err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("the request never reached the app\n%s", s.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitWorkers waits up to 30 s for n "Booting worker" lines and returns
// the worker pids.
func waitWorkers(t *testing.T, s *server, n int) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids := s.workerPids()
		if len(pids) >= n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers booted, want %d\n%s", len(pids), n, s.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitDead waits up to d for every pid to be gone.
func waitDead(t *testing.T, d time.Duration, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still alive after %s", pid, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// rawGet sends a keep-alive GET on c and reads the response.
func rawGet(t *testing.T, c net.Conn, r *bufio.Reader, path string) (int, string) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path); err != nil {
		t.Fatalf("writing GET %s: %v", path, err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("reading GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading GET %s body: %v", path, err)
	}
	if resp.Close {
		t.Fatalf("GET %s: the server closed the keep-alive connection", path)
	}
	return resp.StatusCode, string(b)
}

func TestLifecycleThreads(t *testing.T) {
	py := python(t)
	tests := []struct {
		name    string
		threads string
		work    string // lc_util /work query: wait for n peers, up to t seconds
		wantMax int
	}{
		{"threads4_concurrent", "4", "n=4&t=20", 4},
		{"threads1_serialized", "1", "n=2&t=0.3", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, py, "-w", "1", "--threads", tc.threads, "lc_util:app")
			s.ready("/pid")
			ctx := testContext(t, 60*time.Second)
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Go(func() {
					code, body, err := fetch(ctx, noKeepAlive, s.URL+"/work?"+tc.work)
					if err == nil && code != 200 {
						err = fmt.Errorf("GET /work = %d %s", code, body)
					}
					if err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got := num(t, getJSON(t, noKeepAlive, s.URL+"/max"), "max"); got != tc.wantMax {
				t.Fatalf("max concurrent requests in the app = %d, want %d", got, tc.wantMax)
			}
		})
	}
}

func TestLifecycleLoadSpreading(t *testing.T) {
	py := python(t)
	s := start(t, py, "-w", "2", "--threads", "1", "--log-level", "debug", "lc_util:app")
	s.waitLog(`(?s)Worker ready.*Worker ready`, 30*time.Second)
	s.ready("/pid")

	url, marker := holdURL(t, s, 30)
	hold := goGet(t, url)
	busy := waitMarker(t, s, marker)

	var served []int
	for range 4 {
		served = append(served, num(t, getJSON(t, noKeepAlive, s.URL+"/pid"), "pid"))
	}
	if hold.finished() {
		t.Fatalf("the slow request ended early: %d %q %v", hold.code, hold.body, hold.err)
	}
	for _, pid := range served {
		if pid == busy {
			t.Fatalf("a request was served by the busy runtime %d (served by %v)", pid, served)
		}
		if pid != served[0] {
			t.Fatalf("requests served by %v: want every one by the idle worker", served)
		}
	}
}

func TestLifecycleRuntimeDeath(t *testing.T) {
	py := python(t)
	tests := []struct {
		name string
		app  string
		// kill makes the runtime die during an in-flight request and
		// returns that request.
		kill func(t *testing.T, s *server) *inflight
	}{
		{"crash_os_exit", "basic:app", func(t *testing.T, s *server) *inflight {
			return goGet(t, s.URL+"/crash")
		}},
		{"sigkill_runtime", "lc_util:app", func(t *testing.T, s *server) *inflight {
			url, marker := holdURL(t, s, 60)
			r := goGet(t, url)
			pid := waitMarker(t, s, marker)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			return r
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, py, "-w", "1", "--keep-alive", "120", tc.app)
			s.ready("/pid")
			workers := s.workerPids()
			if len(workers) != 1 {
				t.Fatalf("workers %v, want one", workers)
			}
			c, r := s.rawConn()
			code, body := rawGet(t, c, r, "/pid")
			var before struct{ Pid int }
			if code != 200 || json.Unmarshal([]byte(body), &before) != nil {
				t.Fatalf("GET /pid = %d %s", code, body)
			}

			req := tc.kill(t, s)
			code, body, err := req.result(t, 60*time.Second)
			if err != nil || code != http.StatusBadGateway {
				t.Fatalf("in-flight request = %d %q %v, want 502", code, body, err)
			}

			// The keep-alive connection opened before the crash still works,
			// served by a fresh runtime of the same worker.
			code, body = rawGet(t, c, r, "/pid")
			var after struct{ Pid int }
			if code != 200 || json.Unmarshal([]byte(body), &after) != nil {
				t.Fatalf("GET /pid after the crash = %d %s", code, body)
			}
			if after.Pid == before.Pid {
				t.Fatalf("runtime pid %d did not change", after.Pid)
			}
			if got := num(t, getJSON(t, noKeepAlive, s.URL+"/pid"), "pid"); got != after.Pid {
				t.Fatalf("new connection served by runtime %d, want %d", got, after.Pid)
			}
			kids := childrenOf(workers[0])
			if len(kids) != 1 || kids[0] != after.Pid {
				t.Fatalf("worker %d has children %v, want [%d]", workers[0], kids, after.Pid)
			}
			if w := s.workerPids(); len(w) != 1 || !alive(workers[0]) {
				t.Fatalf("workers %v (first alive: %v): want the same single worker", w, alive(workers[0]))
			}
			s.waitLog(`App runtime died; starting a fresh one`, 10*time.Second)
		})
	}
}

func TestLifecycleGracefulTerm(t *testing.T) {
	t.Parallel() // mostly waits for processes to exit
	py := python(t)
	s := start(t, py, "-w", "1", "--graceful-timeout", "20", "lc_util:app")
	s.ready("/pid")
	worker := s.workerPids()[0]
	url, marker := holdURL(t, s, 3)
	req := goGet(t, url)
	waitMarker(t, s, marker)
	s.signal(syscall.SIGTERM)

	// While the request runs, new connections are refused: the listeners
	// are closed first.
	refused := false
	for !refused && !req.finished() {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			refused = errors.Is(err, syscall.ECONNREFUSED)
		} else {
			c.Close()
			time.Sleep(20 * time.Millisecond)
		}
	}

	code, body, err := req.result(t, 30*time.Second)
	if err != nil || code != 200 {
		t.Fatalf("in-flight request = %d %q %v, want 200", code, body, err)
	}
	// Within --graceful-timeout 20.
	if got := s.wait(20 * time.Second); got != 0 {
		t.Fatalf("exit code %d, want 0\n%s", got, s.log.String())
	}
	if !refused {
		t.Errorf("a new connection was accepted during the graceful stop")
	}
	if _, err := net.DialTimeout("tcp", s.Addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after exit: %v, want connection refused", err)
	}
	for _, want := range []string{
		`Handling signal: term`,
		fmt.Sprintf(`Worker exiting \(pid: %d\)`, worker),
		`Shutting down: Master`,
	} {
		if !regexp.MustCompile(want).MatchString(s.log.String()) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestLifecycleDrainClosesInFlight: a request already running when the
// worker starts to drain (TERM) gets Connection: close on its response, so
// its keep-alive client does not send another request to a worker on its
// way out.
func TestLifecycleDrainClosesInFlight(t *testing.T) {
	t.Parallel() // mostly waits for processes to exit
	py := python(t)
	s := start(t, py, "-w", "1", "--graceful-timeout", "20", "lc_util:app")
	s.ready("/pid")
	url, marker := holdURL(t, s, 2)
	client := &http.Client{Transport: &http.Transport{}, Timeout: 60 * time.Second} // keep-alive
	defer client.CloseIdleConnections()
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- result{resp, err}
	}()
	waitMarker(t, s, marker)
	s.signal(syscall.SIGTERM)
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the in-flight request did not finish within 60s")
	}
	if r.err != nil || r.resp.StatusCode != 200 {
		t.Fatalf("in-flight request: %v %v, want 200", r.resp, r.err)
	}
	if !r.resp.Close {
		t.Errorf("the in-flight request's response lacks Connection: close: %v", r.resp.Header)
	}
	if got := s.wait(20 * time.Second); got != 0 {
		t.Fatalf("exit code %d, want 0\n%s", got, s.log.String())
	}
}

func TestLifecycleStopKillsSlowRequests(t *testing.T) {
	t.Parallel() // mostly waits for processes to exit
	py := python(t)
	tests := []struct {
		name string
		sig  syscall.Signal
		args []string
	}{
		{"term_past_graceful_timeout", syscall.SIGTERM, []string{"--graceful-timeout", "1"}},
		{"int", syscall.SIGINT, nil},
		{"quit", syscall.SIGQUIT, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-w", "1"}, tc.args...)
			s := start(t, py, append(args, "lc_util:app")...)
			s.ready("/pid")
			worker := s.workerPids()[0]
			url, marker := holdURL(t, s, 60)
			req := goGet(t, url)
			rt := waitMarker(t, s, marker)
			s.signal(tc.sig)
			// The request holds for 60 s; the stop must not wait for it.
			if got := s.wait(20 * time.Second); got != 0 {
				t.Fatalf("exit code %d, want 0\n%s", got, s.log.String())
			}
			code, body, err := req.result(t, 20*time.Second)
			if err == nil && code == 200 {
				t.Fatalf("the killed request succeeded: %d %q", code, body)
			}
			waitDead(t, 5*time.Second, worker, rt)
			if tc.sig != syscall.SIGTERM && strings.Contains(s.log.String(), "[ERROR]") {
				t.Errorf("a quick stop logged errors:\n%s", s.log.String())
			}
		})
	}
}

func TestLifecycleMasterSigkill(t *testing.T) {
	py := python(t)
	s := start(t, py, "-w", "2", "--log-level", "debug", "lc_util:app")
	s.waitLog(`(?s)Worker ready.*Worker ready`, 30*time.Second)
	s.ready("/pid")
	workers := s.workerPids()
	var runtimes []int
	for _, w := range workers {
		kids := childrenOf(w)
		if len(kids) != 1 {
			t.Fatalf("worker %d has children %v, want one runtime", w, kids)
		}
		runtimes = append(runtimes, kids...)
	}
	// The listening socket itself, not the port: once it is free, another
	// test binary's server may bind the same port.
	listening := listenInodes(t, s.Addr)
	if len(listening) == 0 {
		t.Fatalf("no socket listens on %s", s.Addr)
	}
	s.signal(syscall.SIGKILL)
	s.wait(10 * time.Second)
	waitDead(t, 10*time.Second, append(workers, runtimes...)...)
	for ino := range listenInodes(t, s.Addr) {
		if listening[ino] {
			t.Errorf("the listening socket on %s (inode %s) outlived the master", s.Addr, ino)
		}
	}
}

// tcpSockets returns the fields of every socket in /proc/net/tcp and tcp6:
// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout
// inode ..., with addresses as hex ADDR:PORT and the state in hex.
func tcpSockets() [][]string {
	var out [][]string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // no IPv6
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fs := strings.Fields(line); len(fs) >= 10 {
				out = append(out, fs)
			}
		}
	}
	return out
}

// listenInodes returns the inodes of the sockets listening on addr
// (host:port; the port is what counts), from /proc/net/tcp and tcp6.
func listenInodes(t *testing.T, addr string) map[string]bool {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	hexPort := fmt.Sprintf(":%04X", n)
	out := map[string]bool{}
	for _, fs := range tcpSockets() {
		if strings.HasSuffix(fs[1], hexPort) && fs[3] == "0A" { // TCP_LISTEN
			out[fs[9]] = true
		}
	}
	return out
}

func TestLifecycleWorkerSigkill(t *testing.T) {
	py := python(t)
	s := start(t, py, "-w", "1", "lc_util:app")
	s.ready("/pid")
	old := s.workerPids()[0]
	oldRT := childrenOf(old)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitLog(fmt.Sprintf(`Worker \(pid:%d\) was sent SIGKILL!`, old), 10*time.Second)
	pids := waitWorkers(t, s, 2)
	fresh := pids[1]
	if fresh == old {
		t.Fatalf("the new worker has the old pid %d", old)
	}
	waitDead(t, 10*time.Second, append([]int{old}, oldRT...)...)
	s.ready("/pid")
	m := getJSON(t, noKeepAlive, s.URL+"/pid")
	if ppid := num(t, m, "ppid"); ppid != fresh {
		t.Fatalf("served by a runtime of %d, want the new worker %d", ppid, fresh)
	}
}

// TestLifecycleRuntimeDiesWithForkedChild: the app forked a child that
// holds the runtime's pipes open after the runtime dies. The worker still
// sees the runtime gone (within about a second) and the next request gets
// a fresh runtime, instead of waiting for a runtime that will never answer.
func TestLifecycleRuntimeDiesWithForkedChild(t *testing.T) {
	s := start(t, python(t), "-w", "1", "lc_util:app")
	s.ready("/pid")
	runtime := num(t, getJSON(t, noKeepAlive, s.URL+"/pid"), "pid")
	child := num(t, getJSON(t, noKeepAlive, s.URL+"/fork?t=60"), "pid")
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	if err := syscall.Kill(runtime, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitLog(`App runtime died; starting a fresh one`, 10*time.Second)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(s.URL + "/pid")
	if err != nil {
		t.Fatalf("the request after the runtime died: %v", err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the request after the runtime died: %d, %v", resp.StatusCode, err)
	}
	if pid := num(t, m, "pid"); pid == runtime || pid == child {
		t.Fatalf("served by %d, want a fresh runtime (the dead one was %d, its child %d)", pid, runtime, child)
	}
}

// TestLifecycleOrphansReaped: a process the app started outlives its
// runtime, killed here. It is handed to the master, not to init, and the
// master reaps it when it exits: no zombie is left. The same reaping
// covers every orphan when gorn runs as PID 1 in a container.
func TestLifecycleOrphansReaped(t *testing.T) {
	py := python(t)
	s := start(t, py, "-w", "1", "--log-level", "debug", "lc_util:app")
	s.ready("/pid")
	master := s.cmd.Process.Pid
	runtime := num(t, getJSON(t, noKeepAlive, s.URL+"/pid"), "pid")
	orphan := num(t, getJSON(t, noKeepAlive, s.URL+"/spawn?t=2"), "pid")
	t.Cleanup(func() {
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", orphan)); err == nil && strings.HasPrefix(string(cmd), "sleep\x00") {
			syscall.Kill(orphan, syscall.SIGKILL)
		}
	})
	if ppid, _, ok := procParent(orphan); !ok || ppid != runtime {
		t.Fatalf("the app's child %d has parent %d (found: %v), want the runtime %d", orphan, ppid, ok, runtime)
	}
	if err := syscall.Kill(runtime, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ppid, _, ok := procParent(orphan)
		if !ok {
			t.Fatalf("the orphan %d went away before it was seen handed to the master", orphan)
		}
		if ppid == master {
			break
		}
		if ppid != runtime {
			t.Fatalf("the orphan %d was handed to %d, want the master %d", orphan, ppid, master)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphan %d still has the killed runtime %d as parent", orphan, runtime)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// sleep 2 exits; the master must reap it.
	deadline = time.Now().Add(15 * time.Second)
	for {
		ppid, state, ok := procParent(orphan)
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphan %d is not reaped: state %c, parent %d", orphan, state, ppid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.waitLog(fmt.Sprintf(`Reaped orphaned process %d \(exit code 0\)`, orphan), 10*time.Second)
	s.waitLog(`App runtime died; starting a fresh one`, 10*time.Second)
}

func TestLifecycleBootFailure(t *testing.T) {
	py := python(t)
	tests := []struct {
		name    string
		workers string
		app     string
		code    int
		once    string // printed exactly once
		reason  string
	}{
		{"import_raises_w4", "4", "lc_importerror:app", 3,
			"RuntimeError: lc_importerror marker: import failed on purpose", "Reason: Worker failed to boot."},
		{"import_raises_w1", "1", "lc_importerror:app", 3,
			"RuntimeError: lc_importerror marker: import failed on purpose", "Reason: Worker failed to boot."},
		{"no_module", "2", "lc_no_such_module:app", 3,
			"ModuleNotFoundError: No module named 'lc_no_such_module'", "Reason: Worker failed to boot."},
		{"no_attribute", "4", "lc_noattr:x", 4,
			"Failed to find attribute 'x' in 'lc_noattr'.", "Reason: App failed to load."},
		{"not_callable", "2", "lc_notcallable:app", 4,
			"Application object must be callable.", "Reason: App failed to load."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, py, "-w", tc.workers, tc.app)
			// No restart loop: gorn gives up at once.
			got := s.wait(10 * time.Second)
			out := s.log.String()
			if got != tc.code {
				t.Fatalf("exit code %d, want %d\n%s", got, tc.code, out)
			}
			if n := strings.Count(out, tc.once); n != 1 {
				t.Errorf("%q printed %d times, want once\n%s", tc.once, n, out)
			}
			if !strings.Contains(out, tc.reason) {
				t.Errorf("output lacks %q\n%s", tc.reason, out)
			}
			w, _ := strconv.Atoi(tc.workers)
			if n := len(s.workerPids()); n > w {
				t.Errorf("%d workers booted for -w %d: a restart loop\n%s", n, w, out)
			}
		})
	}
}
