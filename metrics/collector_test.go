package metrics

import (
	"bytes"
	"flag"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

// fixture is a collector over a scoreboard and pool in a known state:
// four workers came and went or serve, two listeners (one unknown).
func fixture(t *testing.T) (*Collector, *Pool) {
	t.Helper()
	b := newBoard(t)
	gone, _ := b.Acquire() // slot 0: a worker that crashed
	s := openSlot(t, b, gone)
	for i := range 10 {
		s.Begin()
		s.End("GET", 200, time.Duration(i)*10*time.Millisecond, 0, 512)
	}
	s.Begin() // in flight when it died: dropped on release
	b.Release(gone)

	ready, _ := b.Acquire()    // slot 0 again
	draining, _ := b.Acquire() // slot 1
	booting, _ := b.Acquire()  // slot 2
	r := openSlot(t, b, ready)
	r.Begin()
	r.End("POST", 201, 300*time.Millisecond, 2048, 64)
	r.Begin()
	r.End("PROPFIND", 405, time.Millisecond, 0, 100)
	r.Begin()
	r.Exception()
	r.End("GET", 500, 2*time.Second, 0, 141)
	r.Begin() // in flight now
	d := openSlot(t, b, draining)
	d.Begin()
	d.Timeout()
	d.End("GET", 504, 31*time.Second, 0, 141)
	d.Begin()
	d.End("HEAD", 200, 90*time.Second, 100<<20, 0)
	_ = booting

	p := NewPool()
	p.SetWorkers(2, []WorkerInfo{
		{Slot: ready, Phase: "ready", Pid: 101, RuntimePid: 102},
		{Slot: draining, Phase: "draining", Pid: 201, RuntimePid: 202},
		{Slot: booting, Phase: "booting", Pid: 301},
		{Slot: -1, Phase: "ready", Pid: 401, RuntimePid: 402}, // over MaxSlots: no per-slot series
	})
	for _, r := range []string{SpawnBoot, SpawnBoot, SpawnReload, ExitCrash, ExitMaxRequests} {
		p.Spawned(r)
	}
	p.Exited(ExitCrash)
	p.Exited(ExitReload)
	p.Exited(ExitReload)
	p.Booted(300*time.Millisecond, "3.11.2")
	p.Booted(3*time.Second, "3.12.1")
	p.Booted(200*time.Second, "")
	p.Reloaded(true, time.Unix(1700000000, 0))
	p.Reloaded(false, time.Unix(1700000500, 500_000_000))

	c := NewCollector(Options{
		Board: b,
		Pool:  p,
		Listeners: []Listener{
			{Name: "http://127.0.0.1:8000", Queue: func() (uint32, uint32, bool) { return 3, 2048, true }},
			{Name: "unix:/run/gorn.sock", Queue: func() (uint32, uint32, bool) { return 0, 0, false }},
			{Name: "no queue"},
		},
		Version:       "1.2.3",
		GoVersion:     "go1.99",
		ResidentBytes: func(pid int) int64 { return int64(pid) << 20 },
	})
	return c, p
}

// render gathers c alone and encodes it in format.
func render(t *testing.T, c prometheus.Collector, format expfmt.Format) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	if cl, ok := enc.(expfmt.Closer); ok {
		cl.Close()
	}
	return buf.Bytes()
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, got)
	}
}

func TestMetricsCollectorGolden(t *testing.T) {
	tests := []struct {
		file   string
		format expfmt.Format
	}{
		{"collector.prom.golden", expfmt.NewFormat(expfmt.TypeTextPlain)},
		{"collector.openmetrics.golden", expfmt.NewFormat(expfmt.TypeOpenMetrics)},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, _ := fixture(t)
			golden(t, tt.file, render(t, c, tt.format))
		})
	}
}

// TestMetricsCollectorEmpty is a server that has not started a worker:
// every fixed series is there, at zero.
func TestMetricsCollectorEmpty(t *testing.T) {
	c := NewCollector(Options{Board: newBoard(t), Version: "1.2.3", GoVersion: "go1.99"})
	golden(t, "collector.empty.golden", render(t, c, expfmt.NewFormat(expfmt.TypeTextPlain)))
}

func TestMetricsLint(t *testing.T) {
	c, _ := fixture(t)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(c); n < 40 {
		t.Errorf("collected %d series; the fixture should give more than 40", n)
	}
}

func TestMetricsAdminHandler(t *testing.T) {
	c, p := fixture(t)
	srv := httptest.NewServer(Handler(NewRegistry(c), p))
	defer srv.Close()
	get := func(path, accept string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b.String()
	}

	tests := []struct {
		name      string
		path      string
		accept    string
		setup     func()
		wantCode  int
		wantType  string
		wantInBod []string
	}{
		{"healthz", "/healthz", "", nil, 200, "text/plain", []string{"ok"}},
		{"ready with a ready worker", "/readyz", "", nil, 200, "text/plain", []string{"ready"}},
		{"text format", "/metrics", "", nil, 200, "text/plain; version=0.0.4",
			[]string{"# TYPE gorn_http_requests_total counter", `gorn_http_requests_total{code="201",method="POST"} 1`, "process_", "go_goroutines"}},
		{"OpenMetrics on request", "/metrics", "application/openmetrics-text; version=1.0.0", nil, 200, "application/openmetrics-text",
			[]string{"# TYPE gorn_http_requests counter", "# EOF"}},
		{"not ready without a ready worker", "/readyz", "", func() {
			p.SetWorkers(1, []WorkerInfo{{Slot: 0, Phase: "booting"}, {Slot: 1, Phase: "draining"}})
		}, 503, "text/plain", []string{"not ready"}},
		{"not ready while stopping", "/readyz", "", func() {
			p.SetWorkers(1, []WorkerInfo{{Slot: 0, Phase: "ready"}})
			p.Stop()
		}, 503, "text/plain", []string{"not ready"}},
		{"healthz while stopping", "/healthz", "", nil, 200, "text/plain", []string{"ok"}},
		{"unknown path", "/", "", nil, 404, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			code, ctype, body := get(tt.path, tt.accept)
			if code != tt.wantCode || !strings.HasPrefix(ctype, tt.wantType) {
				t.Fatalf("GET %s = %d %q, want %d %q", tt.path, code, ctype, tt.wantCode, tt.wantType)
			}
			for _, s := range tt.wantInBod {
				if !strings.Contains(body, s) {
					t.Errorf("GET %s: body lacks %q:\n%.2000s", tt.path, s, body)
				}
			}
		})
	}
}

// TestMetricsAcceptQueue fills a real listener's accept queue and reads
// it back with TCP_INFO.
func TestMetricsAcceptQueue(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	const backlog = 16
	var lerr error
	rc.Control(func(fd uintptr) { lerr = unix.Listen(int(fd), backlog) })
	if lerr != nil {
		t.Fatal(lerr)
	}
	queue := AcceptQueue(rc)
	if n, limit, ok := queue(); !ok || n != 0 || limit != backlog {
		t.Fatalf("empty queue = %d, %d, %v; want 0, %d, true", n, limit, ok, backlog)
	}
	const waiting = 5
	for range waiting {
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, limit, ok := queue()
		if ok && n == waiting && limit == backlog {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue = %d, %d, %v; want %d, %d, true", n, limit, ok, waiting, backlog)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n, _, _ := queue(); n != waiting-1 {
		t.Errorf("after one accept the queue is %d, want %d", n, waiting-1)
	}

	// A unix listener and a closed one report nothing.
	dir := t.TempDir()
	ul, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	urc, _ := ul.(syscall.Conn).SyscallConn()
	if _, _, ok := AcceptQueue(urc)(); ok {
		t.Error("a unix listener reported an accept queue")
	}
	ln.Close()
	if _, _, ok := queue(); ok {
		t.Error("a closed listener reported an accept queue")
	}
}

// TestMetricsSetListeners: after a HUP that changed --bind, the accept
// queues exported are the new listeners', and only theirs.
func TestMetricsSetListeners(t *testing.T) {
	c, _ := fixture(t)
	c.SetListeners([]Listener{{Name: "http://127.0.0.1:9000", Queue: func() (uint32, uint32, bool) { return 7, 128, true }}})
	out := string(render(t, c, expfmt.NewFormat(expfmt.TypeTextPlain)))
	for _, tt := range []struct {
		line string
		want bool
	}{
		{`gorn_listener_accept_queue_length{listener="http://127.0.0.1:9000"} 7`, true},
		{`gorn_listener_accept_queue_limit{listener="http://127.0.0.1:9000"} 128`, true},
		{`listener="http://127.0.0.1:8000"`, false},
	} {
		if strings.Contains(out, tt.line) != tt.want {
			t.Errorf("%q in the metrics: %v, want %v\n%s", tt.line, !tt.want, tt.want, out)
		}
	}
}
