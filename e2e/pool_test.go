package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The worker pool's life under signals, reloads and faults (issue 3), with
// the real binary and testdata/apps/pool_app.py.

// poolReply is the answer of pool_app's default route.
type poolReply struct {
	Pid   int    `json:"pid"`  // the runtime
	Ppid  int    `json:"ppid"` // its worker
	Value string `json:"value"`
	Len   int    `json:"len"`
}

// poolWriteApp copies pool_app.py into dir with VALUE set to value; broken
// makes importing it raise. Each version differs in size, so a stale
// __pycache__ entry is never used for it.
func poolWriteApp(t *testing.T, dir, value string, broken bool) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(appsDir(t), "pool_app.py"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^VALUE = ".*"$`)
	if !re.Match(src) {
		t.Fatal("pool_app.py has no VALUE line")
	}
	line := fmt.Sprintf("VALUE = %q", value)
	if broken {
		line += "\nraise RuntimeError(\"pool_app broken on purpose\")"
	}
	out := re.ReplaceAll(src, []byte(line))
	path := filepath.Join(dir, "pool_app.py")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// poolStart runs gorn in dir (default the test apps) with the error log
// at debug level, and waits until n workers are ready.
func poolStart(t *testing.T, dir, py string, n int, args ...string) *server {
	t.Helper()
	s := startIn(t, dir, py, append([]string{"--log-level", "debug"}, args...)...)
	poolWaitCount(t, s, `Worker ready pid=`, n, 30*time.Second)
	return s
}

// poolCount counts the matches of re in the master's output.
func poolCount(s *server, re string) int {
	return len(regexp.MustCompile(re).FindAllStringIndex(s.log.String(), -1))
}

// poolSignal sends sig to the master and waits until it logs handling it,
// so that signals sent one after another are never merged.
func poolSignal(t *testing.T, s *server, sig syscall.Signal, name string) {
	t.Helper()
	re := `Handling signal: ` + name + `\b`
	n := poolCount(s, re)
	s.signal(sig)
	deadline := time.Now().Add(10 * time.Second)
	for poolCount(s, re) <= n {
		if time.Now().After(deadline) {
			t.Fatalf("the master did not log handling SIG%s within 10s:\n%s", strings.ToUpper(name), s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// poolWaitCount waits up to d until re matches at least n times.
func poolWaitCount(t *testing.T, s *server, re string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for poolCount(s, re) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q matched %d times within %s, want %d:\n%s", re, poolCount(s, re), d, n, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// poolLive lists the master's live children (its workers, booting,
// serving or draining), sorted.
func poolLive(s *server) []int {
	var out []int
	for _, pid := range childrenOf(s.cmd.Process.Pid) {
		if alive(pid) {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out
}

// poolWaitLive waits up to d until the master has exactly n live workers,
// none of them in exclude, and returns them.
func poolWaitLive(t *testing.T, s *server, n int, exclude []int, d time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		live := poolLive(s)
		ok := len(live) == n
		for _, pid := range live {
			ok = ok && !slices.Contains(exclude, pid)
		}
		if ok {
			return live
		}
		if time.Now().After(deadline) {
			t.Fatalf("live workers %v within %s, want %d not in %v:\n%s", live, d, n, exclude, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// poolWaitGone waits up to d until every pid has exited.
func poolWaitGone(t *testing.T, s *server, d time.Duration, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still alive after %s:\n%s", pid, d, s.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// poolClient is an HTTP client with its own transport (the defaults, so
// keep-alive unless fresh) and a bounded timeout.
func poolClient(fresh bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = fresh
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// poolPost POSTs body to url. The body has no GetBody, so Go's transport
// never replays the request on another connection: every failure shows.
func poolPost(c *http.Client, url, body string) (int, poolReply, error) {
	req, err := http.NewRequest(http.MethodPost, url, io.NopCloser(strings.NewReader(body)))
	if err != nil {
		return 0, poolReply{}, err
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.Do(req)
	if err != nil {
		return 0, poolReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, poolReply{}, fmt.Errorf("reading the body: %w", err)
	}
	var r poolReply
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &r); err != nil {
			return resp.StatusCode, r, fmt.Errorf("decoding %q: %w", b, err)
		}
		if r.Len != len(body) {
			return resp.StatusCode, r, fmt.Errorf("the app read %d body bytes, want %d", r.Len, len(body))
		}
	}
	return resp.StatusCode, r, nil
}

// poolMustPost POSTs once on a fresh connection and wants 200.
func poolMustPost(t *testing.T, url string) poolReply {
	t.Helper()
	c := poolClient(true)
	code, r, err := poolPost(c, url, "once")
	if err != nil || code != http.StatusOK {
		t.Fatalf("POST %s = %d %v", url, code, err)
	}
	return r
}

// poolLoad is steady load from a few keep-alive clients and a few clients
// that open a connection per request, each sending POSTs one at a time.
type poolLoad struct {
	url      string
	deadline time.Time
	stopCh   chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu      sync.Mutex
	ok      int
	errs    []string                // transport errors
	status  map[int]int             // non-200 statuses and their counts
	byValue map[string]map[int]bool // VALUE → workers that served it
	last    []poolReply             // each client's last 200 reply
	kills   []time.Time
}

// poolStartLoad starts keepAlive + fresh clients; they stop on stop() or
// after max, whichever is first.
func poolStartLoad(t *testing.T, url string, keepAlive, fresh int, max time.Duration) *poolLoad {
	l := &poolLoad{
		url:      url,
		deadline: time.Now().Add(max),
		stopCh:   make(chan struct{}),
		status:   map[int]int{},
		byValue:  map[string]map[int]bool{},
		last:     make([]poolReply, keepAlive+fresh),
	}
	for i := range keepAlive + fresh {
		l.wg.Add(1)
		go l.client(i, i >= keepAlive)
	}
	t.Cleanup(l.stop)
	return l
}

func (l *poolLoad) client(id int, fresh bool) {
	defer l.wg.Done()
	c := poolClient(fresh)
	defer c.Transport.(*http.Transport).CloseIdleConnections()
	for i := 0; ; i++ {
		select {
		case <-l.stopCh:
			return
		default:
		}
		if time.Now().After(l.deadline) {
			return
		}
		code, r, err := poolPost(c, l.url, fmt.Sprintf("client %d request %d", id, i))
		l.mu.Lock()
		switch {
		case err != nil:
			l.errs = append(l.errs, fmt.Sprintf("client %d (fresh %v) request %d: %v", id, fresh, i, err))
		case code != http.StatusOK:
			l.status[code]++
		default:
			l.ok++
			if l.byValue[r.Value] == nil {
				l.byValue[r.Value] = map[int]bool{}
			}
			l.byValue[r.Value][r.Ppid] = true
			l.last[id] = r
		}
		l.mu.Unlock()
		if err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// stop ends the load and waits for every client.
func (l *poolLoad) stop() {
	l.stopOnce.Do(func() { close(l.stopCh) })
	l.wg.Wait()
}

// failures is the number of errors and non-200 answers.
func (l *poolLoad) failures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.errs)
	for _, c := range l.status {
		n += c
	}
	return n
}

func (l *poolLoad) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	errs := l.errs
	if len(errs) > 5 {
		errs = errs[:5]
	}
	return fmt.Sprintf("%d ok, %d errors %q, non-200 %v", l.ok, len(l.errs), errs, l.status)
}

// poolWorkers is the sorted set of worker pids in m.
func poolWorkers(m map[int]bool) []int {
	var out []int
	for pid := range m {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out
}

func TestPoolReloadUnderLoad(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	value := func(gen int) string { return "gen-" + strconv.Itoa(gen) + strings.Repeat("+", gen) }
	poolWriteApp(t, dir, value(1), false)
	s := poolStart(t, dir, py, 2, "-w", "2", "pool_app:app")
	first := poolWaitLive(t, s, 2, nil, 30*time.Second)

	load := poolStartLoad(t, s.URL+"/", 3, 2, 20*time.Second)
	time.Sleep(300 * time.Millisecond)
	retiredRe := regexp.MustCompile(`Retiring worker \(pid: (\d+), reason: reload\)`)
	for gen := 2; gen <= 4; gen++ {
		poolWriteApp(t, dir, value(gen), false)
		poolSignal(t, s, syscall.SIGHUP, "hup")
		s.waitLog(fmt.Sprintf(`Reload: generation %d is serving`, gen), 15*time.Second)
		// Both workers of the previous generation are retired once their
		// replacements serve, and drain.
		poolWaitCount(t, s, retiredRe.String(), 2*(gen-1), 15*time.Second)
		var retired []int
		for _, m := range retiredRe.FindAllStringSubmatch(s.log.String(), -1) {
			pid, _ := strconv.Atoi(m[1])
			retired = append(retired, pid)
		}
		poolWaitGone(t, s, 15*time.Second, retired...)
		time.Sleep(time.Second)
	}
	load.stop()
	t.Logf("load: %s", load)
	// As gunicorn's arbiter, each HUP is also logged as a hang-up.
	if hup, hang := poolCount(s, `Handling signal: hup\b`), poolCount(s, `\[INFO\] Hang up: Master\n`); hup != 3 || hang != hup {
		t.Errorf("%d HUPs handled, %d logged as \"Hang up: Master\"; want 3 of each", hup, hang)
	}

	if load.failures() != 0 || load.ok < 50 {
		t.Fatalf("a reload lost requests: %s", load)
	}
	live := poolWaitLive(t, s, 2, first, 10*time.Second)
	for gen := 1; gen <= 4; gen++ {
		if len(load.byValue[value(gen)]) == 0 {
			t.Errorf("no request was served with generation %d's value %q: %v", gen, value(gen), load.byValue)
		}
	}
	// The last generation took over: it runs on workers no earlier
	// generation used, the ones alive now, and every client's last request
	// was served by it.
	final := poolWorkers(load.byValue[value(4)])
	for gen := 1; gen <= 3; gen++ {
		for _, pid := range poolWorkers(load.byValue[value(gen)]) {
			if slices.Contains(final, pid) {
				t.Errorf("worker %d served both generation %d and generation 4", pid, gen)
			}
		}
	}
	for _, pid := range final {
		if !slices.Contains(live, pid) {
			t.Errorf("generation 4 served from worker %d, not one of the live workers %v", pid, live)
		}
	}
	for i, r := range load.last {
		if r.Value != value(4) {
			t.Errorf("client %d's last reply %+v, want value %q", i, r, value(4))
		}
	}
	if n := poolCount(s, `Booting worker with pid`); n != 8 {
		t.Errorf("%d workers booted for 3 reloads of -w 2, want 8", n)
	}
}

func TestPoolReloadBrokenApp(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	poolWriteApp(t, dir, "good-old", false)
	s := poolStart(t, dir, py, 2, "-w", "2", "pool_app:app")
	old := poolWaitLive(t, s, 2, nil, 30*time.Second)
	if r := poolMustPost(t, s.URL+"/"); r.Value != "good-old" {
		t.Fatalf("value %q, want good-old", r.Value)
	}

	poolWriteApp(t, dir, "broken-new", true)
	poolSignal(t, s, syscall.SIGHUP, "hup")
	s.waitLog(`Reload failed: generation 2 did not boot \(RuntimeError: pool_app broken on purpose\); generation 1 keeps serving`, 30*time.Second)
	// The failed generation is not retried: 2 first workers, 2 new ones.
	time.Sleep(time.Second)
	if n := poolCount(s, `Booting worker with pid`); n != 4 {
		t.Errorf("%d workers booted, want 4 (no retry of the broken generation)", n)
	}
	if n := poolCount(s, `Traceback`); n < 1 {
		t.Errorf("the import error's traceback was not logged")
	}
	c := poolClient(false)
	for i := range 10 {
		code, r, err := poolPost(c, s.URL+"/", "after the failed reload")
		if err != nil || code != 200 || r.Value != "good-old" || !slices.Contains(old, r.Ppid) {
			t.Fatalf("request %d after the failed reload = %d %+v %v, want 200 good-old from %v", i, code, r, err, old)
		}
	}
	if live := poolLive(s); !slices.Equal(live, old) {
		t.Fatalf("live workers %v after the failed reload, want the old ones %v", live, old)
	}

	poolWriteApp(t, dir, "fixed-newest", false)
	poolSignal(t, s, syscall.SIGHUP, "hup")
	s.waitLog(`Reload: generation 3 is serving`, 30*time.Second)
	live := poolWaitLive(t, s, 2, old, 15*time.Second)
	for i := range 5 {
		r := poolMustPost(t, s.URL+"/")
		if r.Value != "fixed-newest" || !slices.Contains(live, r.Ppid) {
			t.Fatalf("request %d after the fix = %+v, want fixed-newest from %v", i, r, live)
		}
	}
}

func TestPoolTTINTTOU(t *testing.T) {
	py := python(t)
	s := poolStart(t, "", py, 2, "-w", "2", "pool_app:app")
	two := poolWaitLive(t, s, 2, nil, 30*time.Second)

	poolSignal(t, s, syscall.SIGTTIN, "ttin")
	s.waitLog(`Number of workers: 3`, 5*time.Second)
	three := poolWaitLive(t, s, 3, nil, 30*time.Second)
	for _, pid := range two {
		if !slices.Contains(three, pid) {
			t.Fatalf("TTIN replaced worker %d: %v -> %v", pid, two, three)
		}
	}
	// Whether or not the newcomer is ready yet, the oldest workers are
	// retired first and the youngest is left. (Its process can show in
	// /proc before the master's line about it reaches the log.)
	poolWaitCount(t, s, `Booting worker with pid`, 3, 5*time.Second)
	pids := s.workerPids() // in boot order
	for i, want := range []struct {
		line  string
		count int
	}{{`Number of workers: 2`, 1}, {`Number of workers: 1`, 1}, {`Number of workers: 1`, 2}} {
		poolSignal(t, s, syscall.SIGTTOU, "ttou")
		poolWaitCount(t, s, want.line, want.count, 5*time.Second)
		if i == 2 && poolCount(s, `Number of workers: 1`) != 2 {
			t.Errorf("TTOU at one worker: %d lines say one worker, want 2", poolCount(s, `Number of workers: 1`))
		}
	}
	if poolCount(s, `Number of workers: 0`) != 0 {
		t.Fatalf("TTOU went below one worker:\n%s", s.log.String())
	}
	one := poolWaitLive(t, s, 1, nil, 30*time.Second)
	if one[0] != pids[2] {
		t.Errorf("the worker left is %d, want the youngest %d (oldest retired first)", one[0], pids[2])
	}
	for _, pid := range pids[:2] {
		if !regexp.MustCompile(fmt.Sprintf(`Retiring worker \(pid: %d, reason: scale_down\)`, pid)).MatchString(s.log.String()) {
			t.Errorf("worker %d was not retired for scale_down", pid)
		}
	}
	if r := poolMustPost(t, s.URL+"/"); r.Ppid != one[0] {
		t.Errorf("served by worker %d, want %d", r.Ppid, one[0])
	}

	// Back to 3, then a reload replaces all 3.
	poolSignal(t, s, syscall.SIGTTIN, "ttin")
	poolSignal(t, s, syscall.SIGTTIN, "ttin")
	poolWaitCount(t, s, `Number of workers: 3`, 2, 5*time.Second)
	before := poolWaitLive(t, s, 3, nil, 30*time.Second)
	poolSignal(t, s, syscall.SIGHUP, "hup")
	s.waitLog(`Reloading: starting 3 new workers \(generation 2\)`, 5*time.Second)
	s.waitLog(`Reload: generation 2 is serving`, 30*time.Second)
	after := poolWaitLive(t, s, 3, before, 30*time.Second)
	r := poolMustPost(t, s.URL+"/")
	if !slices.Contains(after, r.Ppid) {
		t.Errorf("served by worker %d, want one of the new %v", r.Ppid, after)
	}
}

func TestPoolRequestTimeout(t *testing.T) {
	py := python(t)
	s := start(t, py, "-w", "1", "--timeout", "1", "pool_app:app")
	s.ready("/")
	before := poolMustPost(t, s.URL+"/")

	c := poolClient(true)
	resp, err := c.Get(s.URL + "/sleep?5")
	if err != nil {
		t.Fatalf("GET /sleep?5: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("GET /sleep?5 = %d, want 504", resp.StatusCode)
	}
	s.waitLog(fmt.Sprintf(`Request timed out after 1s in the app; killing its runtime \(pid: %d\)`, before.Pid), 10*time.Second)
	// faulthandler's dump names the sleeping frame and its caller.
	s.waitLog(`(?s)File "[^"]*pool_app\.py", line \d+ in pool_sleeping_frame\s+File "[^"]*pool_app\.py", line \d+ in app`, 10*time.Second)

	after := poolMustPost(t, s.URL+"/")
	if after.Ppid != before.Ppid {
		t.Errorf("served by worker %d after the timeout, want the same worker %d", after.Ppid, before.Ppid)
	}
	if after.Pid == before.Pid {
		t.Errorf("runtime %d still serves after the timeout, want a fresh one", after.Pid)
	}
	if alive(before.Pid) {
		t.Errorf("the timed-out runtime %d is still alive", before.Pid)
	}
	if w := s.workerPids(); len(w) != 1 {
		t.Errorf("workers %v, want the first one only", w)
	}
	if strings.Contains(s.log.String(), "WORKER TIMEOUT") {
		t.Errorf("the master timed the worker out; only the runtime should be")
	}
}

func TestPoolMaxRequests(t *testing.T) {
	py := python(t)
	s := start(t, py, "-w", "2", "--max-requests", "20", "--max-requests-jitter", "5", "pool_app:app")
	s.ready("/")
	load := poolStartLoad(t, s.URL+"/", 3, 1, 20*time.Second)
	// Run until several workers have been recycled (bounded by the load's
	// own 20 s).
	deadline := time.Now().Add(20 * time.Second)
	for poolCount(s, `reached --max-requests`) < 4 || poolCount(s, `Booting worker`) < 6 {
		if time.Now().After(deadline) {
			load.stop()
			t.Fatalf("workers were not recycled within 20s (%s):\n%s", load, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	load.stop()
	t.Logf("load: %s", load)
	if load.failures() != 0 {
		t.Fatalf("recycling workers lost requests: %s", load)
	}
	if n := poolCount(s, `Retiring worker \(pid: \d+, reason: tired\)`); n < 1 {
		t.Errorf("no worker was retired as tired")
	}
	// Spawning workers under load must not leave the shared listening
	// socket in blocking mode.
	time.Sleep(200 * time.Millisecond)
	if blocked := poolAcceptBlocked(s); len(blocked) > 0 {
		t.Errorf("workers %v sit in a blocking accept(2)", blocked)
	}
	s.ready("/")
	poolMustPost(t, s.URL+"/")
}

func TestPoolWorkerSigkillUnderLoad(t *testing.T) {
	py := python(t)
	s := start(t, py, "-w", "2", "pool_app:app")
	s.ready("/")
	two := poolWaitLive(t, s, 2, nil, 30*time.Second)
	const keepAlive, fresh = 3, 1
	load := poolStartLoad(t, s.URL+"/", keepAlive, fresh, 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	victim := two[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitLog(fmt.Sprintf(`Worker \(pid:%d\) was sent SIGKILL!`, victim), 10*time.Second)
	now := poolWaitLive(t, s, 2, []int{victim}, 30*time.Second)
	time.Sleep(time.Second)
	load.stop()
	t.Logf("load: %s", load)
	if n := load.failures(); n > keepAlive+fresh {
		t.Errorf("%d failed requests, want at most one per client (%d): %s", n, keepAlive+fresh, load)
	}
	for code := range load.status {
		t.Errorf("a request got %d; only in-flight requests may fail, by a cut connection", code)
	}
	for i := range 6 {
		r := poolMustPost(t, s.URL+"/")
		if !slices.Contains(now, r.Ppid) {
			t.Fatalf("request %d served by worker %d, want one of %v", i, r.Ppid, now)
		}
	}
}

func TestPoolRuntimeSigkillUnderLoad(t *testing.T) {
	py := python(t)
	s := start(t, py, "-w", "1", "--threads", "4", "pool_app:app")
	s.ready("/")
	worker := poolWaitLive(t, s, 1, nil, 30*time.Second)[0]
	const keepAlive, fresh = 2, 1
	load := poolStartLoad(t, s.URL+"/", keepAlive, fresh, 20*time.Second)

	marker := filepath.Join(t.TempDir(), "held")
	type result struct {
		code int
		err  error
	}
	held := make(chan result, 1)
	go func() {
		resp, err := poolClient(true).Get(s.URL + "/hold?t=30&f=" + marker)
		if err != nil {
			held <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		held <- result{code: resp.StatusCode}
	}()
	var rt int
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(marker)
		if err == nil && len(b) > 0 {
			rt, _ = strconv.Atoi(string(b))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the held request did not reach the app:\n%s", s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(rt, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-held:
		if r.err != nil || r.code != http.StatusBadGateway {
			t.Fatalf("the request in flight in the killed runtime = %d %v, want 502", r.code, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the held request did not end after its runtime was killed")
	}
	s.waitLog(`App runtime died; starting a fresh one`, 10*time.Second)
	s.waitLog(`App runtime ready`, 15*time.Second)
	time.Sleep(time.Second)
	load.stop()
	t.Logf("load: %s", load)
	if n := load.failures(); n > keepAlive+fresh {
		t.Errorf("%d failed requests, want at most the ones in flight (%d): %s", n, keepAlive+fresh, load)
	}
	for code := range load.status {
		if code != http.StatusBadGateway {
			t.Errorf("a request got %d; in-flight ones get 502", code)
		}
	}
	r := poolMustPost(t, s.URL+"/")
	if r.Ppid != worker || r.Pid == rt {
		t.Errorf("served by worker %d runtime %d, want worker %d with a fresh runtime (not %d)", r.Ppid, r.Pid, worker, rt)
	}
	if live := poolLive(s); !slices.Equal(live, []int{worker}) {
		t.Errorf("live workers %v, want the same worker %d", live, worker)
	}
	if alive(rt) {
		t.Errorf("the killed runtime %d is alive", rt)
	}
}

func TestPoolWinch(t *testing.T) {
	py := python(t)
	s := start(t, py, "-w", "2", "pool_app:app")
	s.ready("/")
	old := poolWaitLive(t, s, 2, nil, 30*time.Second)
	poolSignal(t, s, syscall.SIGWINCH, "winch")
	poolWaitLive(t, s, 0, nil, 30*time.Second)
	select {
	case <-s.done:
		t.Fatalf("the master exited on WINCH:\n%s", s.log.String())
	default:
	}

	// A request made now waits in the listen backlog.
	type result struct {
		code int
		r    poolReply
		err  error
	}
	got := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/", strings.NewReader("backlog"))
		resp, err := poolClient(true).Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var r poolReply
		err = json.NewDecoder(resp.Body).Decode(&r)
		got <- result{code: resp.StatusCode, r: r, err: err}
	}()
	select {
	case r := <-got:
		t.Fatalf("a request was answered with no worker running: %+v", r)
	case <-time.After(500 * time.Millisecond):
	}
	if live := poolLive(s); len(live) != 0 {
		t.Fatalf("workers %v started without HUP", live)
	}

	poolSignal(t, s, syscall.SIGHUP, "hup")
	select {
	case r := <-got:
		if r.err != nil || r.code != 200 || r.r.Len != len("backlog") {
			t.Fatalf("the backlogged request = %d %+v %v, want 200", r.code, r.r, r.err)
		}
		if slices.Contains(old, r.r.Ppid) {
			t.Fatalf("served by an old worker %d", r.r.Ppid)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the backlogged request was not answered after HUP:\n%s", s.log.String())
	}
	poolWaitLive(t, s, 2, old, 30*time.Second)
}

// poolOrphanCheck is the harness's no-orphan check for a server whose
// output goes to --error-logfile (the harness finds workers in the output):
// call it before start, then record the process tree with the returned
// func; once the server is killed, every process recorded must exit.
func poolOrphanCheck(t *testing.T) func(s *server) {
	var pids []int
	t.Cleanup(func() { // runs after the server's own cleanup kills it
		deadline := time.Now().Add(10 * time.Second)
		for _, pid := range pids {
			for alive(pid) {
				if time.Now().After(deadline) {
					syscall.Kill(pid, syscall.SIGKILL)
					t.Errorf("process %d outlived the gorn master", pid)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	return func(s *server) {
		for _, w := range poolLive(s) {
			pids = append(pids, w)
			pids = append(pids, childrenOf(w)...)
		}
	}
}

// poolAcceptBlocked lists the workers with a thread blocked in accept(2)
// in the kernel: a Go worker accepts through epoll on a non-blocking
// socket, so a thread in inet_csk_accept means the listening socket was
// left in blocking mode, and that worker could not close it to drain.
func poolAcceptBlocked(s *server) []int {
	var out []int
	for _, w := range poolLive(s) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", w))
		for _, task := range tasks {
			if b, _ := os.ReadFile(task); strings.Contains(string(b), "accept") {
				out = append(out, w)
				break
			}
		}
	}
	return out
}

// poolWaitFile waits up to d until the file at path matches re.
func poolWaitFile(t *testing.T, path, re string, d time.Duration) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(path)
		if rx.Match(b) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not match %q within %s:\n%s", path, re, d, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPoolReopenLogs(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	errLog := filepath.Join(dir, "error.log")
	accLog := filepath.Join(dir, "access.log")
	record := poolOrphanCheck(t)
	s := start(t, py, "-w", "1", "--error-logfile", errLog, "--access-logfile", accLog, "pool_app:app")
	s.ready("/")
	poolWaitFile(t, accLog, `"GET / HTTP/1.1" 200`, 10*time.Second)
	poolWaitFile(t, errLog, `Booting worker with pid: \d+`, 10*time.Second)
	worker := poolWaitLive(t, s, 1, nil, 30*time.Second)[0]
	record(s)

	for _, p := range []string{errLog, accLog} {
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
	}
	s.signal(syscall.SIGUSR1)
	// The master logs the signal before reopening: to the rotated file.
	poolWaitFile(t, errLog+".1", `Handling signal: usr1`, 10*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(errLog); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("USR1 did not create a new %s", errLog)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The worker and its runtime reopen on their own time: retry with a
	// new marker until one lands in the new files.
	c := poolClient(true)
	deadline := time.Now().Add(10 * time.Second)
	var marker string
	for i := 0; ; i++ {
		marker = fmt.Sprintf("pool-reopen-marker-%d", i)
		resp, err := c.Get(s.URL + "/log?" + marker)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		e, _ := os.ReadFile(errLog)
		a, _ := os.ReadFile(accLog)
		if strings.Contains(string(e), marker) && strings.Contains(string(a), "/log?"+marker) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no marker reached the new logs within 10s\nerror log:\n%s\naccess log:\n%s", e, a)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The worker's own lines go to the new file too: TTIN then TTOU
	// retires it, and it logs its exit.
	sendLogged := func(sig syscall.Signal, name string) {
		s.signal(sig)
		poolWaitFile(t, errLog, `Handling signal: `+name, 10*time.Second)
	}
	sendLogged(syscall.SIGTTIN, "ttin")
	poolWaitLive(t, s, 2, nil, 30*time.Second)
	time.Sleep(500 * time.Millisecond) // the newcomer gets ready
	sendLogged(syscall.SIGTTOU, "ttou")
	exit := fmt.Sprintf(`Worker exiting \(pid: %d\)`, worker)
	poolWaitFile(t, errLog, exit, 30*time.Second)
	record(s)

	old, _ := os.ReadFile(errLog + ".1")
	for _, late := range []string{marker, "Handling signal: ttin", "Worker exiting"} {
		if strings.Contains(string(old), late) {
			t.Errorf("the rotated error log got %q after USR1", late)
		}
	}
	oldAcc, _ := os.ReadFile(accLog + ".1")
	if strings.Contains(string(oldAcc), marker) {
		t.Errorf("the rotated access log got %q after USR1", marker)
	}
}

func TestPoolWorkerHeartbeatTimeout(t *testing.T) {
	py := python(t)
	s := poolStart(t, "", py, 1, "-w", "1", "--timeout", "1", "pool_app:app")
	before := poolMustPost(t, s.URL+"/")
	// A stopped worker sends no heartbeats: the master kills it (SIGABRT,
	// then SIGKILL) and starts another.
	if err := syscall.Kill(before.Ppid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	s.waitLog(fmt.Sprintf(`\[CRITICAL\] WORKER TIMEOUT \(pid:%d\)`, before.Ppid), 15*time.Second)
	poolWaitGone(t, s, 15*time.Second, before.Ppid, before.Pid)
	live := poolWaitLive(t, s, 1, []int{before.Ppid}, 30*time.Second)
	s.ready("/")
	if r := poolMustPost(t, s.URL+"/"); r.Ppid != live[0] {
		t.Fatalf("served by worker %d, want the new worker %d", r.Ppid, live[0])
	}
}

func TestPoolBootTimeout(t *testing.T) {
	py := python(t)
	s := start(t, py, "-w", "2", "--boot-timeout", "1", "pool_slowboot:app")
	if code := s.wait(30 * time.Second); code != 3 {
		t.Fatalf("exit code %d, want 3:\n%s", code, s.log.String())
	}
	for _, want := range []string{`the app did not load within --boot-timeout 1s`, `Reason: Worker failed to boot.`} {
		if !strings.Contains(s.log.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, s.log.String())
		}
	}
}

func TestPoolReopenLogsWhileBooting(t *testing.T) {
	py := python(t)
	t.Setenv("POOL_SLOWBOOT_SECS", "2")
	dir := t.TempDir()
	errLog := filepath.Join(dir, "error.log")
	record := poolOrphanCheck(t)
	s := start(t, py, "-w", "1", "--boot-timeout", "30", "--error-logfile", errLog, "pool_slowboot:app")
	poolWaitFile(t, errLog, `Booting worker with pid: \d+`, 10*time.Second)
	// The worker is importing the app (2 s): USR1 reaches it while it boots.
	time.Sleep(300 * time.Millisecond)
	if err := os.Rename(errLog, errLog+".1"); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGUSR1)
	poolWaitFile(t, errLog+".1", `Handling signal: usr1`, 10*time.Second)
	s.ready("/first")
	poolWaitFile(t, errLog, `pool_slowboot served /first`, 10*time.Second)
	record(s)
	if old, _ := os.ReadFile(errLog + ".1"); strings.Contains(string(old), "pool_slowboot served") {
		t.Errorf("the runtime wrote to the rotated error log after USR1:\n%s", old)
	}
}

// Keep-alive connections are spread over the workers. Two clients that
// connect one after the other while both workers idle must end up on
// different workers: otherwise the worker that answered the first often
// wins the second too, and a slow request on one connection then holds up
// the other's requests while a worker idles (the mixed workload of
// docs/performance.md). A pinning is a race, so several rounds; a third
// connection per round must go to either.
func TestPoolBalancesKeepAliveConnections(t *testing.T) {
	py := python(t)
	s := poolStart(t, "", py, 2, "-w", "2", "basic:app")
	poolWaitLive(t, s, 2, nil, 30*time.Second)
	for round := range 8 {
		c1, r1, p1 := poolPidConn(t, s)
		c2, _, p2 := poolPidConn(t, s)
		if p1 == p2 {
			t.Fatalf("round %d: both keep-alive connections went to the worker whose runtime is %d while the other idled", round, p1)
		}
		c3, _, p3 := poolPidConn(t, s)
		if p3 != p1 && p3 != p2 {
			t.Fatalf("round %d: a third connection reached runtime %d, not %d or %d", round, p3, p1, p2)
		}
		// Both connections of a worker still answer (it kept them).
		if p := poolRuntimePid(t, c1, r1); p != p1 {
			t.Fatalf("round %d: connection 1 moved from runtime %d to %d", round, p1, p)
		}
		c1.Close()
		c2.Close()
		c3.Close()
		time.Sleep(100 * time.Millisecond) // the workers see them close
	}
}

// poolPidConn connects to s and returns the connection, its reader and the
// pid of the runtime that answers it.
func poolPidConn(t *testing.T, s *server) (net.Conn, *bufio.Reader, int) {
	t.Helper()
	c, r := s.rawConn()
	return c, r, poolRuntimePid(t, c, r)
}

// poolRuntimePid asks, on c, which runtime answers it (basic.py's /pid).
func poolRuntimePid(t *testing.T, c net.Conn, r *bufio.Reader) int {
	t.Helper()
	if _, err := io.WriteString(c, "GET /pid HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Pid int }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Pid == 0 {
		t.Fatalf("GET /pid: %v, %+v", err, body)
	}
	return body.Pid
}

// A keep-alive connection that idles (a health check's, a spare in a
// proxy's pool) is not load. Once it has idled for over a second, two busy
// clients that connect one after the other still end up on different
// workers. Were it counted, its worker would hold as many connections as
// the other after the first busy client, and the second could go to either:
// both busy clients on one worker while the other serves nothing.
func TestPoolIdleConnectionsAreNotLoad(t *testing.T) {
	py := python(t)
	s := poolStart(t, "", py, 2, "-w", "2", "--keep-alive", "30", "basic:app")
	poolWaitLive(t, s, 2, nil, 30*time.Second)
	idle, ri, idlePid := poolPidConn(t, s)
	time.Sleep(2 * time.Second) // past a second idle, and a sweep after it
	for round := range 8 {
		c1, _, p1 := poolPidConn(t, s)
		c2, _, p2 := poolPidConn(t, s)
		if p1 == p2 {
			t.Fatalf("round %d: both busy connections went to the worker whose runtime is %d (the idle connection is on %d)", round, p1, idlePid)
		}
		c1.Close()
		c2.Close()
		time.Sleep(100 * time.Millisecond) // the workers see them close
	}
	// The idle connection was kept, and is served by its worker.
	if p := poolRuntimePid(t, idle, ri); p != idlePid {
		t.Fatalf("the idle connection moved from runtime %d to %d", idlePid, p)
	}
}

// TestPoolReload: with --reload, editing the app (or a
// --reload-extra-file) reloads the workers as HUP does, and a broken edit
// leaves the old workers serving until the next fix.
func TestPoolReload(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	poolWriteApp(t, dir, "v1", false)
	extra := filepath.Join(dir, "settings.txt")
	if err := os.WriteFile(extra, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := poolStart(t, dir, py, 1, "--reload", "--reload-extra-file", extra, "pool_app:app")
	if r := poolMustPost(t, s.URL+"/"); r.Value != "v1" {
		t.Fatalf("value %q, want v1", r.Value)
	}
	appFile := regexp.QuoteMeta(filepath.Join(dir, "pool_app.py"))

	poolWriteApp(t, dir, "v2-changed", false)
	s.waitLog(`Worker reloading: `+appFile+` modified`, 10*time.Second)
	s.waitLog(`Reload: generation 2 is serving`, 30*time.Second)
	if r := poolMustPost(t, s.URL+"/"); r.Value != "v2-changed" {
		t.Fatalf("after the edit: value %q, want v2-changed", r.Value)
	}

	poolWriteApp(t, dir, "v3-broken", true)
	s.waitLog(`Reload failed: generation 3 did not boot`, 30*time.Second)
	if r := poolMustPost(t, s.URL+"/"); r.Value != "v2-changed" {
		t.Fatalf("after a broken edit: value %q, want v2-changed still", r.Value)
	}

	poolWriteApp(t, dir, "v4-fixed", false)
	s.waitLog(`Reload: generation 4 is serving`, 30*time.Second)
	if r := poolMustPost(t, s.URL+"/"); r.Value != "v4-fixed" {
		t.Fatalf("after the fix: value %q, want v4-fixed", r.Value)
	}

	if err := os.WriteFile(extra, []byte("b, longer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.waitLog(`Worker reloading: `+regexp.QuoteMeta(extra)+` modified`, 10*time.Second)
	s.waitLog(`Reload: generation 5 is serving`, 30*time.Second)
}

// TestWinchTerminal: a gorn whose controlling terminal is a terminal, which
// sends WINCH whenever it is resized, ignores WINCH, as gunicorn does
// outside --daemon; the workers keep serving. (TestPoolWinch: without a
// terminal, WINCH stops them.)
func TestWinchTerminal(t *testing.T) {
	py := python(t)
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to run gorn in: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	go io.Copy(io.Discard, ptmx) // what gorn might write to the terminal

	s := launchAt(t, gornBin, "", py, false, "", tty, "--log-level", "debug", "-w", "1", "pool_app:app")
	s.ready("/")
	live := poolWaitLive(t, s, 1, nil, 30*time.Second)
	// A resize: the kernel sends WINCH to the terminal's foreground
	// process group, which is gorn's master alone.
	if err := unix.IoctlSetWinsize(int(ptmx.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 100}); err != nil {
		t.Fatal(err)
	}
	s.waitLog(`SIGWINCH ignored: the master runs in a terminal`, 10*time.Second)
	poolSignal(t, s, syscall.SIGWINCH, "winch") // sent by hand: the same
	time.Sleep(500 * time.Millisecond)
	if got := poolLive(s); !slices.Equal(got, live) {
		t.Errorf("workers %v after WINCH in a terminal, want %v", got, live)
	}
	poolMustPost(t, s.URL+"/")
	if strings.Contains(s.log.String(), "Stopping all workers") {
		t.Errorf("WINCH in a terminal stopped the workers:\n%s", s.log.String())
	}
	stopTerm(t, s)
}

// TestReopenLogsEveryProcess: USR1 sent to every process of the tree, as
// systemctl kill -s USR1 sends it, reopens the logs and does nothing else:
// the runtime, which dumps its stacks on --timeout's signal, neither dumps
// them nor dies.
func TestReopenLogsEveryProcess(t *testing.T) {
	py := python(t)
	errLog := filepath.Join(t.TempDir(), "error.log")
	s := start(t, py, "-w", "1", "--error-logfile", errLog, "lc_util:app")
	s.ready("/pid")
	runtime := int(getJSON(t, noKeepAlive, s.URL+"/pid")["pid"].(float64))
	worker := poolWaitLive(t, s, 1, nil, 30*time.Second)[0]
	if err := os.Rename(errLog, errLog+".1"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{s.cmd.Process.Pid, worker, runtime} {
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			t.Fatalf("USR1 to %d: %v", pid, err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(errLog); err == nil {
			break // the master reopened it
		}
		if time.Now().After(deadline) {
			t.Fatalf("USR1 did not create a new %s", errLog)
		}
	}
	time.Sleep(500 * time.Millisecond) // what a dump would have written by now
	if got := int(getJSON(t, noKeepAlive, s.URL+"/pid")["pid"].(float64)); got != runtime {
		t.Errorf("the runtime changed from %d to %d: USR1 ended it", runtime, got)
	}
	for _, p := range []string{errLog, errLog + ".1"} {
		if b, _ := os.ReadFile(p); strings.Contains(string(b), "Current thread") || strings.Contains(string(b), "App runtime died") {
			t.Errorf("%s has a stack dump or a dead runtime after USR1:\n%s", p, b)
		}
	}
	stopTerm(t, s)
}
