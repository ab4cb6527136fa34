package metrics

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Listener is one app listener whose accept queue is exported.
type Listener struct {
	// Name is the listener label: the listener's URL, as in the
	// "Listening at:" log line.
	Name string
	// Queue reads the accept queue's length and limit; ok is false when
	// they are unknown (a unix socket, a closed listener).
	Queue func() (length, limit uint32, ok bool)
}

// Options configure a Collector.
type Options struct {
	// Board is the scoreboard the workers count in.
	Board *Scoreboard
	// Pool is the master's state.
	Pool *Pool
	// Listeners are the app listeners at the start; SetListeners replaces
	// them.
	Listeners []Listener
	// Version is gorn's version.
	Version string
	// GoVersion is the Go version gorn was built with; default
	// runtime.Version().
	GoVersion string
	// ResidentBytes reads the resident memory of a process; default from
	// /proc/PID/statm. 0 means unknown.
	ResidentBytes func(pid int) int64
}

// Collector is gorn's prometheus.Collector: requests from the scoreboard,
// the worker pool from the master's state, and the accept queues.
// Descriptors are built once, in NewCollector.
type Collector struct {
	opts Options

	mu        sync.Mutex
	listeners []Listener // the app listeners; replaced by SetListeners

	requests, duration, reqSize, respSize, inFlight, exceptions, timeouts *prometheus.Desc
	workers, desired, spawns, exits, boot                                 *prometheus.Desc
	reloads, reloadOK, reloadTime                                         *prometheus.Desc
	queueLen, queueLimit                                                  *prometheus.Desc
	workerRSS, workerRequests, workerState                                *prometheus.Desc
	buildInfo                                                             *prometheus.Desc
}

// NewCollector builds the collector.
func NewCollector(opts Options) *Collector {
	if opts.GoVersion == "" {
		opts.GoVersion = runtime.Version()
	}
	if opts.ResidentBytes == nil {
		opts.ResidentBytes = ResidentBytes
	}
	if opts.Pool == nil {
		opts.Pool = NewPool()
	}
	d := prometheus.NewDesc
	return &Collector{
		opts:       opts,
		listeners:  opts.Listeners,
		requests:   d("gorn_http_requests_total", "HTTP requests completed, by method and status code (methods outside the standard nine are OTHER; a client that went away before the response is 499).", []string{"method", "code"}, nil),
		duration:   d("gorn_http_request_duration_seconds", "Time from reading a request's headers to the end of its response.", nil, nil),
		reqSize:    d("gorn_http_request_size_bytes", "Request body sizes: Content-Length, or the bytes read from a chunked body.", nil, nil),
		respSize:   d("gorn_http_response_size_bytes", "Response body sizes: the bytes written to the client.", nil, nil),
		inFlight:   d("gorn_http_requests_in_flight", "Requests being served now, waiting ones included.", nil, nil),
		exceptions: d("gorn_app_exceptions_total", "Requests whose app raised an exception.", nil, nil),
		timeouts:   d("gorn_request_timeouts_total", "Requests that ran in Python longer than --timeout (answered 504, or cut).", nil, nil),
		workers:    d("gorn_workers", "Worker processes by state.", []string{"state"}, nil),
		desired:    d("gorn_workers_desired", "The number of workers the master keeps serving (--workers, changed by TTIN, TTOU and WINCH).", nil, nil),
		spawns:     d("gorn_worker_spawns_total", "Worker processes started, by why they were needed.", []string{"reason"}, nil),
		exits:      d("gorn_worker_exits_total", "Worker processes that exited, by reason.", []string{"reason"}, nil),
		boot:       d("gorn_worker_boot_duration_seconds", "Time from starting a worker to its app being imported and ready.", nil, nil),
		reloads:    d("gorn_reloads_total", "Reloads (HUP) by result.", []string{"result"}, nil),
		reloadOK:   d("gorn_reload_last_success", "Whether the last reload succeeded (1) or failed (0); 1 before any reload.", nil, nil),
		reloadTime: d("gorn_reload_last_timestamp_seconds", "When the last reload succeeded or failed, in seconds since the Unix epoch; 0 before any reload.", nil, nil),
		queueLen:   d("gorn_listener_accept_queue_length", "Connections in a listener's accept queue, not yet accepted by a worker. Persistently above 0 means add workers.", []string{"listener"}, nil),
		queueLimit: d("gorn_listener_accept_queue_limit", "The accept queue's limit (--backlog, capped by net.core.somaxconn).", []string{"listener"}, nil),
		workerRSS:  d("gorn_worker_resident_memory_bytes", "Resident memory of a worker plus its app runtime, by worker slot.", []string{"worker"}, nil),
		workerRequests: d("gorn_worker_requests_total", "Requests completed by the worker now in a slot; restarts from 0 when the slot gets a new worker.",
			[]string{"worker"}, nil),
		workerState: d("gorn_worker_state", "The state of the worker in a slot: 1 for its state, 0 for the others.", []string{"worker", "state"}, nil),
		buildInfo:   d("gorn_build_info", "Always 1; the labels are gorn's version, the Go version it was built with and the app runtime's Python version.", []string{"version", "goversion", "pythonversion"}, nil),
	}
}

// SetListeners replaces the app listeners whose accept queues are
// exported (a HUP that changed --bind). Safe to call during a scrape.
func (c *Collector) SetListeners(listeners []Listener) {
	c.mu.Lock()
	c.listeners = listeners
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.requests, c.duration, c.reqSize, c.respSize, c.inFlight, c.exceptions, c.timeouts,
		c.workers, c.desired, c.spawns, c.exits, c.boot,
		c.reloads, c.reloadOK, c.reloadTime,
		c.queueLen, c.queueLimit,
		c.workerRSS, c.workerRequests, c.workerState,
		c.buildInfo,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	t := c.opts.Board.Totals()
	p := c.opts.Pool.Snapshot()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	// Requests.
	for m, method := range Methods {
		for code := MinCode; code <= MaxCode; code++ {
			if v := t.Status(m, code); v > 0 {
				counter(c.requests, v, method, strconv.Itoa(code))
			}
		}
	}
	ch <- histogram(c.duration, t.w[wDurationBuckets:wDurationBuckets+nDuration], DurationBuckets[:], float64(t.w[wDurationSum])/1e9)
	ch <- histogram(c.reqSize, t.w[wRequestBuckets:wRequestBuckets+nSize], SizeBuckets[:], float64(t.w[wRequestSizeSum]))
	ch <- histogram(c.respSize, t.w[wResponseBuckets:wResponseBuckets+nSize], SizeBuckets[:], float64(t.w[wResponseSizeSum]))
	gauge(c.inFlight, float64(max(t.InFlight(), 0)))
	counter(c.exceptions, t.Exceptions())
	counter(c.timeouts, t.Timeouts())

	// The pool.
	byPhase := map[string]int{}
	for _, w := range p.Workers {
		byPhase[w.Phase]++
	}
	for _, ph := range Phases {
		gauge(c.workers, float64(byPhase[ph]), ph)
	}
	gauge(c.desired, float64(p.Desired))
	for _, r := range SpawnReasons {
		counter(c.spawns, p.Spawns[r], r)
	}
	for _, r := range ExitReasons {
		counter(c.exits, p.Exits[r], r)
	}
	ch <- histogram(c.boot, p.BootCounts[:], BootBuckets[:], p.BootSum)
	counter(c.reloads, p.ReloadsOK, "success")
	counter(c.reloads, p.ReloadsFailed, "failure")
	ok, at := 1.0, 0.0
	if !p.LastReload.IsZero() {
		at = float64(p.LastReload.UnixNano()) / 1e9
		if !p.LastReloadOK {
			ok = 0
		}
	}
	gauge(c.reloadOK, ok)
	gauge(c.reloadTime, at)

	// Listeners.
	c.mu.Lock()
	listeners := c.listeners
	c.mu.Unlock()
	for _, l := range listeners {
		if l.Queue == nil {
			continue
		}
		if n, limit, ok := l.Queue(); ok {
			gauge(c.queueLen, float64(n), l.Name)
			gauge(c.queueLimit, float64(limit), l.Name)
		}
	}

	// Per worker slot.
	requests := make(map[int]uint64, len(t.Slots))
	for _, s := range t.Slots {
		requests[s.Slot] = s.Requests
	}
	for _, w := range p.Workers {
		if w.Slot < 0 {
			continue
		}
		slot := strconv.Itoa(w.Slot)
		gauge(c.workerRSS, float64(c.opts.ResidentBytes(w.Pid)+c.opts.ResidentBytes(w.RuntimePid)), slot)
		counter(c.workerRequests, requests[w.Slot], slot)
		for _, ph := range Phases {
			v := 0.0
			if ph == w.Phase {
				v = 1
			}
			gauge(c.workerState, v, slot, ph)
		}
	}

	python := p.Python
	if python == "" {
		python = "unknown"
	}
	gauge(c.buildInfo, 1, c.opts.Version, c.opts.GoVersion, python)
}

// histogram makes a constant histogram from per-bucket counts (the last
// one +Inf) over bounds.
func histogram(d *prometheus.Desc, counts []uint64, bounds []float64, sum float64) prometheus.Metric {
	cum := make(map[float64]uint64, len(bounds))
	var n uint64
	for i, b := range bounds {
		n += counts[i]
		cum[b] = n
	}
	n += counts[len(bounds)]
	return prometheus.MustNewConstHistogram(d, n, sum, cum)
}

// ResidentBytes is the resident set size of a process, from
// /proc/PID/statm; 0 if pid is not positive or cannot be read.
func ResidentBytes(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	return parseStatm(string(b), os.Getpagesize())
}

// parseStatm reads the resident pages (the second field) of
// /proc/PID/statm, in bytes.
func parseStatm(s string, pageSize int) int64 {
	f := strings.Fields(s)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || pages < 0 {
		return 0
	}
	return pages * int64(pageSize)
}
