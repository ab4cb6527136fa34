package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// mxScrape is one parsed /metrics response.
type mxScrape map[string]*dto.MetricFamily

// mxGet scrapes url with a plain GET and parses the text format.
func mxGet(t *testing.T, url string) mxScrape {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %q\n%s", url, resp.Status, resp.Header.Get("Content-Type"), b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return mxScrape(mfs)
}

// value is the value of a counter, gauge or histogram (its count), for
// the series whose labels include every name=value pair given.
func (s mxScrape) value(name string, labels ...string) (float64, bool) {
	mf, ok := s[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.Metric {
		if mxHasLabels(m, labels) {
			return mxNumber(m), true
		}
	}
	return 0, false
}

// sum adds every series of a family.
func (s mxScrape) sum(name string) float64 {
	var v float64
	if mf, ok := s[name]; ok {
		for _, m := range mf.Metric {
			v += mxNumber(m)
		}
	}
	return v
}

func mxNumber(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func mxHasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.Label {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// mxKey names one series.
func mxKey(name string, m *dto.Metric) string {
	var b strings.Builder
	b.WriteString(name)
	for _, lp := range m.Label {
		fmt.Fprintf(&b, ",%s=%s", lp.GetName(), lp.GetValue())
	}
	return b.String()
}

// aggregated are the gorn counters and histograms summed over workers
// (no worker label): the series that must never go down.
func (s mxScrape) aggregated() map[string]float64 {
	out := map[string]float64{}
	for name, mf := range s {
		if !strings.HasPrefix(name, "gorn_") {
			continue
		}
		if mf.GetType() != dto.MetricType_COUNTER && mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range mf.Metric {
			if mxHasLabelName(m, "worker") {
				continue
			}
			out[mxKey(name, m)] = mxNumber(m)
			if h := m.Histogram; h != nil {
				out[mxKey(name+"_sum", m)] = h.GetSampleSum()
			}
		}
	}
	return out
}

func mxHasLabelName(m *dto.Metric, name string) bool {
	for _, lp := range m.Label {
		if lp.GetName() == name {
			return true
		}
	}
	return false
}

// mxStart runs gorn with --metrics-bind on a free port and returns the
// server and the admin base URL.
func mxStart(t *testing.T, args ...string) (*server, string) {
	t.Helper()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := start(t, python(t), append([]string{"--metrics-bind", admin}, args...)...)
	s.waitLog(`Serving metrics at: http://`+strings.ReplaceAll(admin, ".", `\.`)+`/metrics`, 30*time.Second)
	return s, "http://" + admin
}

// mxWait scrapes until cond holds, up to d.
func mxWait(t *testing.T, url string, d time.Duration, what string, cond func(mxScrape) bool) mxScrape {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		sc := mxGet(t, url)
		if cond(sc) {
			return sc
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: %s did not happen within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var noKeepAliveClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// TestMetricsSurviveWorkerSigkill sends N requests across three workers,
// kills one with SIGKILL and checks that every aggregated counter is still
// at least what it was, and the request counters at least N.
func TestMetricsSurviveWorkerSigkill(t *testing.T) {
	s, admin := mxStart(t, "-w", "3", "basic:app")
	s.ready("/pid")
	mxWait(t, admin+"/metrics", 30*time.Second, "three ready workers", func(sc mxScrape) bool {
		v, _ := sc.value("gorn_workers", "state", "ready")
		return v == 3
	})

	// Rounds of three concurrent slow requests: a worker (one thread)
	// takes one connection at a time, so the load spreads over the three.
	// Go on until every worker has served something, so the one killed
	// has counts to lose.
	n := 1 // s.ready's request
	send := func(rounds int) {
		for range rounds {
			var wg sync.WaitGroup
			errs := make(chan error, 3)
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := noKeepAliveClient.Get(s.URL + "/sleep?0.05")
					if err != nil {
						errs <- err
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						errs <- fmt.Errorf("status %d", resp.StatusCode)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("request: %v", err)
			}
			n += 3
		}
	}
	send(5)
	for deadline := time.Now().Add(30 * time.Second); ; {
		sc := mxGet(t, admin+"/metrics")
		busy := 0
		for _, m := range sc["gorn_worker_requests_total"].GetMetric() {
			if m.Counter.GetValue() > 0 {
				busy++
			}
		}
		if busy == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d requests only %d of 3 workers have served", n, busy)
		}
		send(2)
	}
	// Plus an app exception and a non-standard method, so those counters
	// are non-zero too.
	if code, _ := s.get("/raise"); code != 500 {
		t.Fatalf("/raise = %d, want 500", code)
	}
	req, _ := http.NewRequest("PROPFIND", s.URL+"/pid", nil)
	resp, err := noKeepAliveClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n += 2

	// A worker counts a request as its handler returns, which may be
	// just after the client has the response.
	before := mxWait(t, admin+"/metrics", 10*time.Second, fmt.Sprintf("gorn_http_requests_total reaching %d", n), func(sc mxScrape) bool {
		return sc.sum("gorn_http_requests_total") == float64(n)
	})
	if v, _ := before.value("gorn_http_requests_total", "method", "OTHER", "code", "200"); v != 1 {
		t.Errorf("PROPFIND counted as OTHER 200 %v times, want 1", v)
	}
	if v, _ := before.value("gorn_app_exceptions_total"); v != 1 {
		t.Errorf("gorn_app_exceptions_total = %v, want 1", v)
	}

	victim := s.workerPids()[1]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitLog(fmt.Sprintf(`Worker \(pid:%d\) was sent SIGKILL!`, victim), 10*time.Second)
	after := mxWait(t, admin+"/metrics", 30*time.Second, "the crash counted and the worker replaced", func(sc mxScrape) bool {
		crash, _ := sc.value("gorn_worker_exits_total", "reason", "crash")
		ready, _ := sc.value("gorn_workers", "state", "ready")
		return crash == 1 && ready == 3
	})

	prev := before.aggregated()
	now := after.aggregated()
	if len(prev) < 20 {
		t.Fatalf("only %d aggregated counter series before the kill", len(prev))
	}
	for k, v := range prev {
		if now[k] < v {
			t.Errorf("%s went down across the SIGKILL: %v -> %v", k, v, now[k])
		}
	}
	for _, name := range []string{
		"gorn_http_requests_total",
		"gorn_http_request_duration_seconds",
		"gorn_http_request_size_bytes",
		"gorn_http_response_size_bytes",
	} {
		if got := after.sum(name); got < float64(n) {
			t.Errorf("after the SIGKILL %s counts %v, want at least %d", name, got, n)
		}
	}
	if v := after.sum("gorn_worker_spawns_total"); v < 4 {
		t.Errorf("gorn_worker_spawns_total = %v, want at least 4", v)
	}
	if v, _ := after.value("gorn_worker_spawns_total", "reason", "boot"); v != 3 {
		t.Errorf(`gorn_worker_spawns_total{reason="boot"} = %v, want 3`, v)
	}
	if v, _ := after.value("gorn_worker_spawns_total", "reason", "crash"); v < 1 {
		t.Errorf(`gorn_worker_spawns_total{reason="crash"} = %v, want the SIGKILLed worker's replacement`, v)
	}
	if v, _ := after.value("gorn_http_requests_in_flight"); v != 0 {
		t.Errorf("gorn_http_requests_in_flight = %v after the kill, want 0", v)
	}
	if v, _ := after.value("gorn_workers_desired"); v != 3 {
		t.Errorf("gorn_workers_desired = %v, want 3", v)
	}
	// Per-slot series: one per live worker, labelled by slot, not pid.
	if got := len(after["gorn_worker_resident_memory_bytes"].GetMetric()); got != 3 {
		t.Errorf("%d gorn_worker_resident_memory_bytes series, want 3", got)
	}
	for _, m := range after["gorn_worker_resident_memory_bytes"].GetMetric() {
		if m.Gauge.GetValue() < 1<<20 {
			t.Errorf("%s = %v, want the memory of a worker and its runtime", mxKey("rss", m), m.Gauge.GetValue())
		}
		for _, lp := range m.Label {
			if slot, err := strconv.Atoi(lp.GetValue()); lp.GetName() == "worker" && (err != nil || slot < 0 || slot >= 256) {
				t.Errorf("worker label %q is not a slot number", lp.GetValue())
			}
		}
	}
	if _, ok := after.value("gorn_listener_accept_queue_limit", "listener", s.URL); !ok {
		t.Errorf("no accept queue limit for %s", s.URL)
	}

	// The fresh worker counts on: the total goes on from n.
	send(2)
	mxWait(t, admin+"/metrics", 10*time.Second, "the requests after the kill counted", func(sc mxScrape) bool {
		return sc.sum("gorn_http_requests_total") == float64(n)
	})
}

// TestMetricsEndpoints checks /healthz, /readyz (also while shutting
// down), OpenMetrics negotiation, and the build info.
func TestMetricsEndpoints(t *testing.T) {
	s, admin := mxStart(t, "-w", "1", "--graceful-timeout", "20", "basic:app")
	s.ready("/pid")
	get := func(path, accept string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", admin+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := noKeepAliveClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	if code, _, _ := get("/healthz", ""); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if code, _, _ := get("/readyz", ""); code != 200 {
		t.Errorf("/readyz with a ready worker = %d, want 200", code)
	}
	code, ctype, body := get("/metrics", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
	if code != 200 || !strings.HasPrefix(ctype, "application/openmetrics-text") || !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("OpenMetrics scrape = %d %q, ends %q", code, ctype, body[max(len(body)-20, 0):])
	}
	sc := mxGet(t, admin+"/metrics")
	if info := sc["gorn_build_info"].GetMetric(); len(info) != 1 {
		t.Errorf("%d gorn_build_info series, want 1", len(info))
	} else if k := mxKey("gorn_build_info", info[0]); info[0].Gauge.GetValue() != 1 ||
		!strings.Contains(k, ",goversion=go") || !strings.Contains(k, ",pythonversion=3.") || !strings.Contains(k, ",version=0.") {
		t.Errorf("gorn_build_info is %s = %v; want gorn, Go and Python versions and 1", k, info[0].Gauge.GetValue())
	}
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := sc[name]; !ok {
			t.Errorf("no %s series from the master's process and Go collectors", name)
		}
	}

	// A graceful stop with a request in flight: the master is alive but
	// not ready until it exits.
	slow := make(chan error, 1)
	go func() {
		resp, err := noKeepAliveClient.Get(s.URL + "/sleep?2")
		if err == nil {
			resp.Body.Close()
		}
		slow <- err
	}()
	mxWait(t, admin+"/metrics", 10*time.Second, "the slow request in flight", func(sc mxScrape) bool {
		v, _ := sc.value("gorn_http_requests_in_flight")
		return v == 1
	})
	s.signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, _ := get("/readyz", "")
		if code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after TERM", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, _ := get("/healthz", ""); code != 200 {
		t.Errorf("/healthz while stopping = %d, want 200", code)
	}
	// The worker, finishing its request, shows as draining, none desired.
	sc = mxGet(t, admin+"/metrics")
	draining, _ := sc.value("gorn_workers", "state", "draining")
	ready, _ := sc.value("gorn_workers", "state", "ready")
	desired, _ := sc.value("gorn_workers_desired")
	if draining != 1 || ready != 0 || desired != 0 {
		t.Errorf("while stopping: gorn_workers draining %v, ready %v, gorn_workers_desired %v; want 1, 0, 0", draining, ready, desired)
	}
	if err := <-slow; err != nil {
		t.Errorf("the in-flight request failed during the graceful stop: %v", err)
	}
	if code := s.wait(30 * time.Second); code != 0 {
		t.Errorf("gorn exited with %d, want 0", code)
	}
}

// TestMetricsBindRefused: the metrics address may not be an app address.
func TestMetricsBindRefused(t *testing.T) {
	py := python(t)
	port := freePort(t)
	tests := []struct {
		name    string
		bind    string
		metrics string
		want    string
	}{
		{"same address", fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", port), "is also a --bind address"},
		{"same address spelt differently", fmt.Sprintf("tcp://127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", port), "is also a --bind address"},
		{"bad address", fmt.Sprintf("127.0.0.1:%d", port), "127.0.0.1:notaport", "--metrics-bind: invalid bind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, py, "-b", tt.bind, "--metrics-bind", tt.metrics, "basic:app")
			if code := s.wait(30 * time.Second); code != 1 {
				t.Fatalf("exit code %d, want 1\n%s", code, s.log.String())
			}
			if !strings.Contains(s.log.String(), tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, s.log.String())
			}
			if n := len(s.workerPids()); n != 0 {
				t.Errorf("%d workers started", n)
			}
		})
	}
}

// TestStatsd: --statsd-host gets gunicorn's statsd metrics from the master
// (gunicorn.workers, warnings) and the workers (each request's count,
// duration and status, a refused request's too, and the app's exceptions),
// prefixed and tagged.
func TestStatsd(t *testing.T) {
	py := python(t)
	udp := collectUDP(t)
	count := func(line string) int {
		n := 0
		for _, l := range udp.lines() {
			if l == line {
				n++
			}
		}
		return n
	}
	waitLine := func(line string, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for count(line) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d × %q within 10s, want %d; got:\n%s", count(line), line, n, strings.Join(udp.lines(), "\n"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	s := start(t, py, "-w", "2", "--preload", "--statsd-host", udp.addr, "--statsd-prefix", "shop", "--dogstatsd-tags", "env:test", "basic:app")
	s.ready("/pid")
	waitLine("shop.gunicorn.workers:2|g|#env:test", 1)
	waitLine("shop.gunicorn.log.warning:1|c|@1.0|#env:test", 1) // --preload's
	for range 3 {
		if code, _ := s.get("/pid"); code != 200 {
			t.Fatalf("GET /pid = %d", code)
		}
	}
	if code, _ := s.get("/raise"); code != 500 {
		t.Fatalf("GET /raise = %d, want 500", code)
	}
	waitLine("shop.gunicorn.log.exception:1|c|@1.0|#env:test", 1)
	waitLine("shop.gunicorn.request.status.500:1|c|@1.0|#env:test", 1)
	c, r := s.rawConn()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n") // refused by gorn: 400
	if line, _ := r.ReadString('\n'); !strings.Contains(line, " 400 ") {
		t.Fatalf("a malformed request got %q", line)
	}
	waitLine("shop.gunicorn.requests:1|c|@1.0|#env:test", 6) // ready's, 3, the 500, the 400
	waitLine("shop.gunicorn.request.status.400:1|c|@1.0|#env:test", 1)
	if n := count("shop.gunicorn.request.status.200:1|c|@1.0|#env:test"); n < 4 {
		t.Errorf("%d 200s counted, want at least 4", n)
	}
	durations := 0
	for _, l := range udp.lines() {
		if strings.HasPrefix(l, "shop.gunicorn.request.duration:") && strings.HasSuffix(l, "|ms|#env:test") {
			durations++
		}
	}
	if durations < 6 {
		t.Errorf("%d request durations, want one per request", durations)
	}
}

// udpCollector gathers the datagrams sent to a UDP socket on loopback
// until the test ends.
type udpCollector struct {
	addr string
	mu   sync.Mutex
	got  []string
}

func collectUDP(t *testing.T) *udpCollector {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := &udpCollector{addr: conn.LocalAddr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 65536)
		for {
			n, err := conn.Read(b)
			if err != nil {
				return // closed at the end of the test
			}
			c.mu.Lock()
			c.got = append(c.got, string(b[:n]))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return c
}

// lines are the lines of the datagrams received so far.
func (c *udpCollector) lines() []string {
	var lines []string
	for _, d := range c.datagrams() {
		lines = append(lines, strings.Split(d, "\n")...)
	}
	return lines
}

// datagrams are the datagrams received so far.
func (c *udpCollector) datagrams() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// TestSyslog: --log-syslog sends the master's, workers' and runtimes' error
// log lines (the app's tracebacks, and what it logs through gunicorn's
// error logger) and the access log to syslog as gunicorn does ("<PRI>gunicorn.PREFIX.NAME:
// [PID] message", NUL-terminated), the access log unless
// --disable-redirect-access-to-syslog.
func TestSyslog(t *testing.T) {
	py := python(t)
	for _, disableAccess := range []bool{false, true} {
		udp := collectUDP(t)
		args := []string{"--log-syslog", "--log-syslog-to", "udp://" + udp.addr, "--log-syslog-prefix", "shop", "--log-syslog-facility", "local0", "lc_util:app"}
		if disableAccess {
			args = append([]string{"--disable-redirect-access-to-syslog"}, args...)
		}
		s := start(t, py, args...)
		s.ready("/pid")
		worker := s.workerPids()[0]
		// The app's lines and tracebacks, from its runtime, as well.
		getJSON(t, noKeepAlive, s.URL+"/glog?m=from-the-app")
		if code, _ := s.get("/raise?m=boom"); code != 500 {
			t.Fatalf("/raise: status %d, want 500", code)
		}
		booting := fmt.Sprintf("<134>gunicorn.shop.error: [%d] Booting worker with pid: %d\x00", s.cmd.Process.Pid, worker)
		app := fmt.Sprintf("<134>gunicorn.shop.error: [%d] from-the-app\x00", worker)
		traceback := regexp.MustCompile(fmt.Sprintf(`^<131>gunicorn\.shop\.error: \[%d\] Error handling request /raise\?m=boom\nTraceback \(most recent call last\):\n[\s\S]*\nRuntimeError: boom\x00$`, worker))
		access := regexp.MustCompile(fmt.Sprintf(`^<134>gunicorn\.shop\.access: \[%d\] 127\.0\.0\.1 - - \[[^]]+\] "GET /pid HTTP/1\.1" 200 \d+ "-" "Go-http-client/1\.1"\x00$`, worker))
		deadline := time.Now().Add(10 * time.Second)
		for {
			lines := udp.lines()
			hasAccess := slices.ContainsFunc(lines, access.MatchString)
			if slices.Contains(lines, booting) && slices.Contains(lines, app) && slices.ContainsFunc(udp.datagrams(), traceback.MatchString) && (hasAccess || disableAccess) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("syslog lines (disable access %v) lack %q, %q, the traceback or an access line:\n%q", disableAccess, booting, app, lines)
			}
			time.Sleep(20 * time.Millisecond)
		}
		stopTerm(t, s)
		if disableAccess && slices.ContainsFunc(udp.lines(), func(l string) bool { return strings.Contains(l, ".access:") }) {
			t.Errorf("access lines reached syslog despite --disable-redirect-access-to-syslog: %q", udp.lines())
		}
	}
}
