// Command bench is gorn's benchmark suite (docs/performance.md): it builds
// gorn and, for each workload, starts every server under test pinned to one
// core with the same app and the same number of workers — gorn, gunicorn
// (sync and gthread), uWSGI and a pure Go net/http server as the ceiling.
// It drives load from another core with wrk (or, for the mixed workload, its
// own load generator) at one server at a time, round by round, so that each
// server's runs alternate with its peers', and prints the medians as
// markdown tables, then how gorn stands against the targets of issue 6.
//
//	go run ./bench [-runs 3] [-duration 5s] [-connections 32] [-only hello,gorn,uwsgi] [-quick]
package main

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed apps/*.py lua/*.lua
var files embed.FS

// options are the command line's.
type options struct {
	runs        int
	duration    time.Duration
	connections int
	mixedConns  int
	only        []string
	quick       bool
	out, log    io.Writer
	// gornBuildFlags are extra flags for go build of gorn (the smoke test
	// builds with -race under go test -race, as the e2e tests do).
	gornBuildFlags []string
}

func main() {
	switch os.Getenv("GORN_BENCH_ROLE") {
	case "server":
		os.Exit(goServerMain())
	case "loadgen":
		os.Exit(loadgenMain())
	}
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := options{out: os.Stdout, log: os.Stderr}
	fl.IntVar(&o.runs, "runs", 3, "measured runs per server and workload; the tables show medians")
	fl.DurationVar(&o.duration, "duration", 5*time.Second, "length of each run (whole seconds for wrk)")
	fl.IntVar(&o.connections, "connections", 32, "wrk connections")
	fl.IntVar(&o.mixedConns, "mixed-connections", 2, "connections of the mixed workload (default: one per worker)")
	only := fl.String("only", "", "comma-separated patterns (path.Match) of workloads and/or servers to run, e.g. hello,gorn,gunicorn-*")
	fl.BoolVar(&o.quick, "quick", false, "smoke run: 1 run of 1 s, no warm-up, workloads hello and upload unless -only names others")
	if err := fl.Parse(args); err != nil {
		return o, err
	}
	if fl.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if *only != "" {
		o.only = strings.Split(*only, ",")
	}
	if o.quick {
		set := map[string]bool{}
		fl.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["runs"] {
			o.runs = 1
		}
		if !set["duration"] {
			o.duration = time.Second
		}
	}
	if o.runs < 1 || o.duration <= 0 || o.connections < 1 || o.mixedConns < 1 {
		return o, errors.New("-runs, -duration, -connections and -mixed-connections must be positive")
	}
	return o, nil
}

// selection applies -only (and -quick's default workloads).
func selection(o options) ([]workload, []server, error) {
	var ws []workload
	var ss []server
	wPat, sPat := []string{}, []string{}
	for _, p := range o.only {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		hit := false
		for _, w := range workloads {
			if ok, _ := path.Match(p, w.name); ok {
				wPat, hit = append(wPat, p), true
				break
			}
		}
		for _, s := range servers {
			if ok, _ := path.Match(p, s.name); ok {
				sPat, hit = append(sPat, p), true
				break
			}
		}
		if !hit {
			return nil, nil, fmt.Errorf("-only %q matches no workload (%s) and no server (%s)", p, names(workloads), serverNames())
		}
	}
	if len(wPat) == 0 && o.quick {
		wPat = []string{"hello", "upload"}
	}
	match := func(pats []string, name string) bool {
		if len(pats) == 0 {
			return true
		}
		for _, p := range pats {
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		}
		return false
	}
	for _, w := range workloads {
		if match(wPat, w.name) {
			ws = append(ws, w)
		}
	}
	for _, s := range servers {
		if match(sPat, s.name) {
			ss = append(ss, s)
		}
	}
	return ws, ss, nil
}

func names(ws []workload) string {
	var n []string
	for _, w := range ws {
		n = append(n, w.name)
	}
	return strings.Join(n, ", ")
}

func serverNames() string {
	var n []string
	for _, s := range servers {
		n = append(n, s.name)
	}
	return strings.Join(n, ", ")
}

// suite holds what one invocation shares.
type suite struct {
	opts      options
	env       env
	luaDir    string
	serverCPU string // "" when there are not two CPUs to pin to
	loadCPU   string
}

func run(ctx context.Context, o options) error {
	ws, ss, err := selection(o)
	if err != nil {
		return err
	}
	needWrk := slices.ContainsFunc(ws, func(w workload) bool { return !w.mixed })
	if _, err := exec.LookPath("wrk"); needWrk && err != nil {
		return errors.New("wrk is not installed (apt-get install wrk)")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return errors.New("taskset is not installed (apt-get install util-linux)")
	}
	root, err := findModuleRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "gorn-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	s := &suite{opts: o, luaDir: filepath.Join(tmp, "lua")}
	s.env.python = "/usr/bin/python3"
	s.env.appDir = filepath.Join(tmp, "apps")
	s.env.gorn = filepath.Join(tmp, "gorn")
	if s.env.self, err = os.Executable(); err != nil {
		return err
	}
	if err := writeFiles(tmp); err != nil {
		return err
	}
	fmt.Fprintln(o.log, "bench: building gorn")
	args := append(append([]string{"build", "-o", s.env.gorn}, o.gornBuildFlags...), "./cmd/gorn")
	build := exec.CommandContext(ctx, "go", args...)
	build.Dir, build.Stdout, build.Stderr = root, o.log, o.log
	if err := build.Run(); err != nil {
		return fmt.Errorf("building gorn: %w", err)
	}
	if cpus := allowedCPUs(); len(cpus) >= 2 {
		s.serverCPU, s.loadCPU = strconv.Itoa(cpus[0]), strconv.Itoa(cpus[1])
		// This program (its sampling and bookkeeping) stays off the server's core.
		if out, err := exec.Command("taskset", "-a", "-c", "-p", s.loadCPU, strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			return fmt.Errorf("taskset: %v: %s", err, out)
		}
	} else {
		fmt.Fprintln(o.log, "bench: fewer than 2 CPUs: servers and load are not pinned; numbers are not comparable with pinned runs")
	}

	s.header()
	results := map[string]map[string]*row{} // workload → server → row
	for _, w := range ws {
		rows := s.workload(ctx, &w, ss)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		results[w.name] = map[string]*row{}
		for _, r := range rows {
			results[w.name][r.server] = r
		}
		s.table(&w, rows)
	}
	s.targets(results)
	return nil
}

// workload measures w on every server in ss and returns their rows, in
// ss's order. The servers run side by side, each started and warmed up
// once, and the measured runs go round by round: in each round every
// server has one run while the others sit idle, and each round starts one
// server later than the one before. So a change in the machine's speed over
// the minutes a workload takes shifts every server's runs alike, and the
// ratios compare runs made in the same rounds.
func (s *suite) workload(ctx context.Context, w *workload, ss []server) []*row {
	rows := make([]*row, len(ss))
	live := make([]*running, len(ss))
	defer func() {
		for _, srv := range live {
			if srv != nil {
				stopTree(srv)
			}
		}
	}()
	for i := range ss {
		rows[i] = &row{server: ss[i].name}
		if ctx.Err() != nil {
			return rows
		}
		if why := ss[i].missing(&s.env, w); why != "" {
			rows[i].note = "skipped: " + why
			continue
		}
		live[i] = s.prepare(ctx, &ss[i], w, rows[i])
	}
	for round := range s.opts.runs {
		for _, i := range roundOrder(round, len(ss)) {
			if live[i] == nil || ctx.Err() != nil {
				continue
			}
			if !s.measure(ctx, &ss[i], w, live[i], rows[i], round) {
				stopTree(live[i])
				live[i] = nil
			}
		}
	}
	for _, r := range rows {
		if m, ok := r.med(); ok && m.errors > 0 && r.note == "" {
			r.note = fmt.Sprintf("%d errors per run (median)", m.errors)
		}
	}
	return rows
}

// roundOrder is the order in which n servers (by index) have their runs
// in round k (from 0): every server once, starting with server k mod n.
func roundOrder(k, n int) []int {
	order := make([]int, n)
	for j := range order {
		order[j] = (k + j) % n
	}
	return order
}

func writeFiles(dir string) error {
	return fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, p)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
}

// header prints the conditions of the run.
func (s *suite) header() {
	o := s.opts
	fmt.Fprintf(o.out, "# gorn benchmark\n\n")
	fmt.Fprintf(o.out, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(o.out, "- machine: %s, %d CPUs, Linux %s, load average before: %s\n", cpuModel(), runtime.NumCPU(), kernel(), loadavg())
	if s.serverCPU != "" {
		fmt.Fprintf(o.out, "- server pinned to CPU %s, load (wrk -t1 / load generator) to CPU %s\n", s.serverCPU, s.loadCPU)
	} else {
		fmt.Fprintf(o.out, "- NOT pinned (fewer than 2 CPUs)\n")
	}
	fmt.Fprintf(o.out, "- runs: %d × %s (medians), warm-up: %s, wrk connections: %d, mixed connections: %d\n",
		o.runs, wrkDuration(o.duration), s.warmup(), o.connections, o.mixedConns)
	fmt.Fprintf(o.out, "- %s; %s; %s; %s; %s\n\n",
		firstLine(exec.Command(s.env.python, "--version")),
		"gunicorn "+firstLine(exec.Command(s.env.python, "-c", "import gunicorn; print(gunicorn.__version__)")),
		"uWSGI "+firstLine(exec.Command("uwsgi", "--version")),
		firstLine(exec.Command("wrk", "-v")), runtime.Version())
}

func (s *suite) warmup() time.Duration {
	if s.opts.quick {
		return 0
	}
	return min(time.Second, s.opts.duration)
}

func firstLine(c *exec.Cmd) string {
	out, err := c.CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil && line == "" {
		return "(not installed)"
	}
	if line == "" {
		return "?"
	}
	return strings.TrimSpace(strings.SplitN(line, " Copyright", 2)[0])
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// sample is one measured run.
type sample struct {
	rps      float64
	p50, p99 time.Duration // for mixed: the fast requests'
	slowP50  time.Duration // mixed only
	cpuPer   float64       // server CPU µs per request
	load     float64       // the load generator's CPU time over the run's wall time, in % of one core
	rss      int64         // after the run
	peak     int64         // highest seen during the run
	errors   int
}

// row is one server's line in a workload's table.
type row struct {
	server  string
	note    string // why there are no numbers, or a warning
	idle    int64  // RSS before any load, after one request
	samples []sample
}

// med is the median of every field over the runs (each field on its own).
func (r *row) med() (m sample, ok bool) {
	if len(r.samples) == 0 {
		return m, false
	}
	m.rps = median(r.samples, func(s sample) float64 { return s.rps })
	m.p50 = time.Duration(median(r.samples, func(s sample) float64 { return float64(s.p50) }))
	m.p99 = time.Duration(median(r.samples, func(s sample) float64 { return float64(s.p99) }))
	m.slowP50 = time.Duration(median(r.samples, func(s sample) float64 { return float64(s.slowP50) }))
	m.cpuPer = median(r.samples, func(s sample) float64 { return s.cpuPer })
	m.load = median(r.samples, func(s sample) float64 { return s.load })
	m.rss = int64(median(r.samples, func(s sample) float64 { return float64(s.rss) }))
	m.peak = int64(median(r.samples, func(s sample) float64 { return float64(s.peak) }))
	m.errors = int(median(r.samples, func(s sample) float64 { return float64(s.errors) }))
	return m, true
}

func median(ss []sample, f func(sample) float64) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// running is a started server.
type running struct {
	pid    int
	addr   string
	exited chan struct{}
	out    *tailBuffer
}

// tailBuffer keeps the last 16 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 16<<10 {
		t.buf = t.buf[len(t.buf)-16<<10:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// pinned prefixes argv with taskset for cpu (when pinning).
func pinned(cpu string, argv []string) []string {
	if cpu == "" {
		return argv
	}
	return append([]string{"taskset", "-c", cpu}, argv...)
}

func (s *suite) start(sv *server, w *workload) (*running, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	argv := pinned(s.serverCPU, sv.argv(&s.env, w, addr))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.env.appDir
	cmd.Env = os.Environ()
	if sv.name == "go-nethttp" {
		cmd.Env = append(cmd.Env, "GORN_BENCH_ROLE=server", "GORN_BENCH_ADDR="+addr)
	}
	r := &running{addr: addr, exited: make(chan struct{}), out: &tailBuffer{}}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	// Its own process group (a Ctrl-C reaches only this program, which
	// stops the server), and killed if this program dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r.pid = cmd.Process.Pid
	go func() { _ = cmd.Wait(); close(r.exited) }()
	// taskset execs the server, so r.pid is the server's root process.
	url := "http://" + addr + w.readyPath
	// Without keep-alive: a connection left open by the poll would sit on
	// one of the server's workers for the first run, where gorn's
	// connection balancing counts it (see docs/performance.md, entry 11).
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
			err = fmt.Errorf("GET %s: %s", w.readyPath, resp.Status)
		}
		select {
		case <-r.exited:
			return nil, fmt.Errorf("exited at start: %s", lastLines(r.out.String(), 5))
		default:
		}
		if time.Now().After(deadline) {
			stopTree(r)
			return nil, fmt.Errorf("not ready after 30 s (%v): %s", err, lastLines(r.out.String(), 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lastLines joins the last n lines of s into one line that fits in a
// markdown table cell.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	out := strings.ReplaceAll(strings.Join(lines, " / "), "|", "/")
	if len(out) > 300 {
		out = out[:300] + "…"
	}
	return out
}

// rssPids are the processes whose memory counts for sv.
func rssPids(sv *server, r *running) []int {
	if sv.rssRoot {
		return []int{r.pid}
	}
	return descendants(r.pid)
}

// prepare starts server sv for workload w, records its idle memory in r
// and warms it up. It returns nil, with the reason in r.note, if the server
// cannot be used.
func (s *suite) prepare(ctx context.Context, sv *server, w *workload, r *row) *running {
	o := s.opts
	fmt.Fprintf(o.log, "bench: %s / %s: starting\n", w.name, sv.name)
	srv, err := s.start(sv, w)
	if err != nil {
		r.note = "failed: " + err.Error()
		fmt.Fprintf(o.log, "bench: %s / %s: %s\n", w.name, sv.name, r.note)
		return nil
	}
	time.Sleep(200 * time.Millisecond) // let start-up settle
	r.idle = rssOf(rssPids(sv, srv))
	if d := s.warmup(); d > 0 {
		if _, err := s.drive(ctx, w, srv.addr, d); err != nil {
			r.note = "failed in warm-up: " + err.Error()
			fmt.Fprintf(o.log, "bench: %s / %s: %s\n", w.name, sv.name, r.note)
			stopTree(srv)
			return nil
		}
	}
	return srv
}

// measure makes run i of workload w against the running server sv and adds
// its sample to r. It returns false, with the reason in r.note, when the
// run failed or the server exited; the server is then of no further use.
func (s *suite) measure(ctx context.Context, sv *server, w *workload, srv *running, r *row, i int) bool {
	o := s.opts
	pids := rssPids(sv, srv)
	cpu0 := treeCPU(srv.pid)
	var peak int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, rssOf(pids))
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()
	res, err := s.drive(ctx, w, srv.addr, o.duration)
	close(stopSampling)
	<-sampled
	cpu1 := treeCPU(srv.pid)
	if err != nil {
		r.note = fmt.Sprintf("run %d failed: %v", i+1, err)
		fmt.Fprintf(o.log, "bench: %s / %s: %s\n", w.name, sv.name, r.note)
		return false
	}
	smp := res.sample
	smp.cpuPer = float64((cpu1 - cpu0).Microseconds()) / float64(res.requests)
	smp.rss = rssOf(rssPids(sv, srv))
	smp.peak = max(peak, smp.rss)
	r.samples = append(r.samples, smp)
	fmt.Fprintf(o.log, "bench: %s / %s: run %d/%d: %.0f req/s, p99 %s, %.1f µs CPU/req, load %.0f %%, %d errors\n",
		w.name, sv.name, i+1, o.runs, smp.rps, smp.p99, smp.cpuPer, smp.load, smp.errors)
	select {
	case <-srv.exited:
		r.note = "server exited during the run: " + lastLines(srv.out.String(), 3)
		return false
	default:
	}
	return true
}

// driveResult is one load run's outcome.
type driveResult struct {
	sample
	requests int
}

// drive puts load on addr for d: wrk, or the load generator for mixed.
func (s *suite) drive(ctx context.Context, w *workload, addr string, d time.Duration) (driveResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+60*time.Second)
	defer cancel()
	if w.mixed {
		return s.driveMixed(ctx, addr, d)
	}
	script := filepath.Join(s.luaDir, "run-"+w.script)
	if _, err := os.Stat(script); err != nil {
		// The workload's script followed by the reporting done().
		a, err1 := os.ReadFile(filepath.Join(s.luaDir, w.script))
		b, err2 := os.ReadFile(filepath.Join(s.luaDir, "report.lua"))
		if err := errors.Join(err1, err2); err != nil {
			return driveResult{}, err
		}
		if err := os.WriteFile(script, append(append(a, '\n'), b...), 0o644); err != nil {
			return driveResult{}, err
		}
	}
	argv := pinned(s.loadCPU, []string{"wrk", "-t1", "-c" + strconv.Itoa(s.opts.connections),
		"-d" + wrkDuration(d), "--timeout", "10s", "-s", script, "http://" + addr + w.path})
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return driveResult{}, fmt.Errorf("wrk: %v: %s", err, lastLines(out.String(), 3))
	}
	r, err := parseWrk(out.String())
	r.load = loadShare(cmd.ProcessState, time.Since(start))
	return r, err
}

// loadShare is the CPU time a load generator used (user and system) over
// the wall time it ran, in % of one core. Near 100 % (wrk is pinned to one
// core) the load generator, not the server, set the pace of the run.
func loadShare(ps *os.ProcessState, wall time.Duration) float64 {
	if ps == nil || wall <= 0 {
		return 0
	}
	return 100 * float64(ps.UserTime()+ps.SystemTime()) / float64(wall)
}

// loadBound is the load generator's share of its core (median over the
// runs) from which a run counts as load-bound: see targets.
const loadBound = 95.0

// wrkDuration rounds d up to whole seconds, the unit wrk's -d takes.
func wrkDuration(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second))) + "s"
}

func parseWrk(out string) (driveResult, error) {
	i := strings.Index(out, "BENCH_RESULT ")
	if i < 0 {
		return driveResult{}, fmt.Errorf("no BENCH_RESULT in wrk's output: %s", lastLines(out, 3))
	}
	line, _, _ := strings.Cut(out[i+len("BENCH_RESULT "):], "\n")
	v := map[string]int64{}
	for _, f := range strings.Fields(line) {
		k, val, _ := strings.Cut(f, "=")
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return driveResult{}, fmt.Errorf("wrk result %q: %v", f, err)
		}
		v[k] = n
	}
	var r driveResult
	r.requests = int(v["requests"])
	if r.requests == 0 || v["duration_us"] == 0 {
		return r, fmt.Errorf("wrk completed no requests: %s", lastLines(out, 4))
	}
	r.rps = float64(v["requests"]) / (float64(v["duration_us"]) / 1e6)
	r.p50 = time.Duration(v["p50_us"]) * time.Microsecond
	r.p99 = time.Duration(v["p99_us"]) * time.Microsecond
	r.errors = int(v["connect"] + v["read"] + v["write"] + v["status"] + v["timeout"])
	return r, nil
}

func (s *suite) driveMixed(ctx context.Context, addr string, d time.Duration) (driveResult, error) {
	cfg, _ := json.Marshal(loadgenConfig{Addr: addr, Connections: s.opts.mixedConns, Duration: d, SlowPercent: 10, Seed: 6})
	argv := pinned(s.loadCPU, []string{s.env.self})
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "GORN_BENCH_ROLE=loadgen", "GORN_BENCH_LOADGEN="+string(cfg))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return driveResult{}, fmt.Errorf("load generator: %v: %s", err, lastLines(errOut.String(), 3))
	}
	wall := time.Since(start)
	var res loadgenResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return driveResult{}, fmt.Errorf("load generator output %q: %v", out.String(), err)
	}
	var r driveResult
	r.requests = res.Fast + res.Slow
	if res.Fast == 0 {
		return r, fmt.Errorf("no fast request completed (%d errors, first: %s)", res.Errors, res.FirstErr)
	}
	r.rps = float64(r.requests) / res.Elapsed.Seconds()
	r.p50, r.p99, r.slowP50 = res.FastP50, res.FastP99, res.SlowP50
	r.errors = res.Errors
	r.load = loadShare(cmd.ProcessState, wall)
	return r, nil
}

// table prints workload w's results.
func (s *suite) table(w *workload, rows []*row) {
	o := s.opts
	conns := o.connections
	if w.mixed {
		conns = o.mixedConns
	}
	fmt.Fprintf(o.out, "## %s — %s\n\n", w.name, w.title)
	fmt.Fprintf(o.out, "`%s %s`, %d worker(s), %d connections.\n\n", map[bool]string{true: "POST", false: "GET"}[w.script == "post.lua"], w.path, w.workers, conns)
	if w.mixed {
		fmt.Fprintln(o.out, "| server | req/s | fast p50 ms | fast p99 ms | slow p50 ms | CPU µs/req | load % | idle MB | RSS MB | peak MB | errors | gorn fast p99 vs this |")
		fmt.Fprintln(o.out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	} else {
		fmt.Fprintln(o.out, "| server | req/s | p50 ms | p99 ms | CPU µs/req | load % | idle MB | RSS MB | peak MB | errors | gorn × |")
		fmt.Fprintln(o.out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	}
	var gorn sample
	var haveGorn bool
	for _, r := range rows {
		if r.server == "gorn" {
			gorn, haveGorn = r.med()
		}
	}
	for _, r := range rows {
		m, ok := r.med()
		if !ok {
			cols := 10
			if w.mixed {
				cols = 11
			}
			fmt.Fprintf(o.out, "| %s | %s |%s\n", r.server, r.note, strings.Repeat(" |", cols-1))
			continue
		}
		ratio := "—"
		if haveGorn && r.server != "gorn" {
			if w.mixed && gorn.p99 > 0 {
				ratio = fmt.Sprintf("%.2f×", float64(m.p99)/float64(gorn.p99))
			} else if !w.mixed && m.rps > 0 {
				ratio = fmt.Sprintf("%.2f×", gorn.rps/m.rps)
			}
		}
		name := r.server
		if r.note != "" {
			name += " (" + r.note + ")"
		}
		if w.mixed {
			fmt.Fprintf(o.out, "| %s | %.0f | %s | %s | %s | %.1f | %.0f | %s | %s | %s | %d | %s |\n", name, m.rps,
				ms(m.p50), ms(m.p99), ms(m.slowP50), m.cpuPer, m.load, mb(r.idle), mb(m.rss), mb(m.peak), m.errors, ratio)
		} else {
			fmt.Fprintf(o.out, "| %s | %.0f | %s | %s | %.1f | %.0f | %s | %s | %s | %d | %s |\n", name, m.rps,
				ms(m.p50), ms(m.p99), m.cpuPer, m.load, mb(r.idle), mb(m.rss), mb(m.peak), m.errors, ratio)
		}
	}
	fmt.Fprintln(o.out)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }
func mb(b int64) string         { return fmt.Sprintf("%.1f", float64(b)/1e6) }

// flatLimit is how much the worker's RSS may grow over its idle RSS during a
// streaming or upload run (which moves gigabytes) and still count as flat.
const flatLimit = 16e6

// targets prints the targets against the medians.
func (s *suite) targets(results map[string]map[string]*row) {
	o := s.opts
	fmt.Fprintln(o.out, "## Targets (issue 6)")
	fmt.Fprintln(o.out)
	fmt.Fprintln(o.out, "\"gunicorn\" alone means the better of gunicorn-sync and gunicorn-gthread.")
	fmt.Fprintln(o.out)
	fmt.Fprintln(o.out, "| workload | target | measured | met |")
	fmt.Fprintln(o.out, "|---|---|--:|---|")
	var bound []string // workloads whose req/s targets were load-bound
	line := func(wl, target, measured string, met *bool) {
		verdict := "not measured"
		if met != nil {
			verdict = map[bool]string{true: "yes", false: "**no**"}[*met]
		}
		fmt.Fprintf(o.out, "| %s | %s | %s | %s |\n", wl, target, measured, verdict)
	}
	get := func(wl, srv string) (sample, *row, bool) {
		r := results[wl][srv]
		if r == nil {
			return sample{}, nil, false
		}
		m, ok := r.med()
		return m, r, ok
	}
	// rps: gorn's req/s over the best peer's ≥ min.
	rps := func(wl string, min float64, label string, peers ...string) {
		target := fmt.Sprintf("req/s ≥ %g× %s", min, label)
		g, _, ok := get(wl, "gorn")
		best, bestName, bestLoad := 0.0, "", 0.0
		for _, p := range peers {
			if m, _, ok := get(wl, p); ok && m.rps > best {
				best, bestName, bestLoad = m.rps, p, m.load
			}
		}
		if !ok || best == 0 {
			line(wl, target, "—", nil)
			return
		}
		ratio := g.rps / best
		met := ratio >= min
		measured := fmt.Sprintf("%.2f× (%s)", ratio, bestName)
		if g.load >= loadBound || bestLoad >= loadBound {
			measured += " †"
			if !slices.Contains(bound, wl) {
				bound = append(bound, wl)
			}
		}
		line(wl, target, measured, &met)
	}
	flat := func(wl string) {
		target := fmt.Sprintf("flat memory: gorn's peak RSS ≤ idle + %.0f MB", flatLimit/1e6)
		g, r, ok := get(wl, "gorn")
		if !ok {
			line(wl, target, "—", nil)
			return
		}
		growth := g.peak - r.idle
		met := float64(growth) <= flatLimit
		line(wl, target, fmt.Sprintf("+%.1f MB", float64(growth)/1e6), &met)
	}
	gunicorn := []string{"gunicorn-sync", "gunicorn-gthread"}
	rps("hello", 4.5, "gunicorn-sync", "gunicorn-sync")
	rps("hello", 2, "uWSGI", "uwsgi")
	rps("hello", 0.75, "pure Go", "go-nethttp")
	if _, r, ok := get("hello", "gorn"); ok {
		met := r.idle <= 40e6
		line("hello", "idle RSS of worker + runtime ≤ 40 MB", mb(r.idle)+" MB", &met)
	} else {
		line("hello", "idle RSS of worker + runtime ≤ 40 MB", "—", nil)
	}
	rps("hello-close", 2, "gunicorn", gunicorn...)
	rps("hello-close", 1, "uWSGI", "uwsgi")
	rps("flask", 2, "gunicorn", gunicorn...)
	rps("stream", 1, "gunicorn", gunicorn...)
	flat("stream")
	rps("upload", 1, "gunicorn", gunicorn...)
	flat("upload")
	{
		target := "fast p99 ≤ gunicorn's"
		g, _, ok := get("mixed", "gorn")
		best, bestName := time.Duration(0), ""
		for _, p := range gunicorn {
			if m, _, ok := get("mixed", p); ok && (bestName == "" || m.p99 < best) {
				best, bestName = m.p99, p
			}
		}
		if !ok || bestName == "" {
			line("mixed", target, "—", nil)
		} else {
			met := g.p99 <= best
			line("mixed", target, fmt.Sprintf("%s ms vs %s ms (%s)", ms(g.p99), ms(best), bestName), &met)
		}
	}
	if len(bound) > 0 {
		fmt.Fprintln(o.out)
		fmt.Fprintf(o.out, "† Load-bound (%s): the load generator used %.0f %% or more of its core (the load %% column) against gorn or against the peer, so that server went as fast as one wrk thread could drive it, and the ratio is bounded by wrk, not by the two servers.\n",
			strings.Join(bound, ", "), loadBound)
	}
	fmt.Fprintln(o.out)
}
