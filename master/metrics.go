package master

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/metrics"
	"github.com/gorn-project/gorn/worker"
)

// masterMetrics is the master's side of --metrics-bind.
//
// The pool state is written only by Run's loop (publish, and the event
// hooks below) and read by scrapes through metrics.Pool's mutex; the
// scoreboard is written by the workers and folded by the loop when a
// worker has exited.
type masterMetrics struct {
	pool  *metrics.Pool       // always set, so the hooks need no checks
	board *metrics.Scoreboard // nil unless --metrics-bind
	ln    *listener           // the admin listener
	srv   *http.Server
	full  bool // all scoreboard slots taken has been logged
	// collector exports the accept queues of the current listeners; nil
	// unless --metrics-bind.
	collector *metrics.Collector
}

// setupMetrics binds --metrics-bind and builds the scoreboard and the
// admin server; the server starts serving in Run. A bind error, or an
// address that is also an app --bind, is an error (exit code 1). The
// socket is ho's when the previous master handed it over (USR2).
func (m *Master) setupMetrics(cfg *config.Config, ho *handover) error {
	m.mx.pool = metrics.NewPool()
	if cfg.MetricsBind == "" {
		return nil
	}
	network, addr, err := ParseBind(cfg.MetricsBind)
	if err != nil {
		return fmt.Errorf("--metrics-bind: %w", err)
	}
	for _, b := range cfg.Binds {
		if n, a, err := ParseBind(b); err == nil && n == network && a == addr {
			return fmt.Errorf("--metrics-bind %s is also a --bind address; serve metrics on another port", cfg.MetricsBind)
		}
	}
	ln, err := bindServed(cfg.MetricsBind, listenOpts{backlog: 128}, ho)
	if err != nil {
		return fmt.Errorf("--metrics-bind: %w", err)
	}
	board, err := metrics.Create()
	if err != nil {
		ln.close()
		return err
	}
	m.mx.collector = metrics.NewCollector(metrics.Options{
		Board:     board,
		Pool:      m.mx.pool,
		Listeners: queues(m.listeners),
		Version:   config.Version,
	})
	reg := metrics.NewRegistry(m.mx.collector)
	m.mx.board, m.mx.ln = board, ln
	m.mx.srv = &http.Server{
		Handler:           metrics.Handler(reg, m.mx.pool),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
	return nil
}

// queues are the accept queues of listeners, for the metrics.
func queues(listeners []*listener) []metrics.Listener {
	var lns []metrics.Listener
	for _, l := range listeners {
		if rc, err := l.file.SyscallConn(); err == nil {
			lns = append(lns, metrics.Listener{Name: l.url, Queue: metrics.AcceptQueue(rc)})
		}
	}
	return lns
}

// serveMetrics starts the admin server, if any.
func (m *Master) serveMetrics() {
	if m.mx.srv == nil {
		return
	}
	where := m.mx.ln.url + "/metrics"
	if m.mx.ln.info.Network == "unix" {
		where = m.mx.ln.url + " (GET /metrics)"
	}
	m.log.Info("Serving metrics at: " + where)
	go m.mx.srv.Serve(m.mx.ln.ln)
}

// closeMetrics stops the admin server and unmaps the scoreboard.
func (m *Master) closeMetrics() {
	if m.mx.srv == nil {
		return
	}
	m.mx.srv.Close()
	m.keepSharedSockets()
	m.mx.ln.close()
	m.mx.board.Close()
}

// attachScoreboard gives a new worker a scoreboard slot: the memfd as the
// next inherited descriptor and the slot number in its spec. It returns
// the slot, -1 when metrics are off or every slot is taken.
func (m *Master) attachScoreboard(spec *worker.Spec, files *[]*os.File) int {
	if m.mx.board == nil {
		return -1
	}
	slot, ok := m.mx.board.Acquire()
	if !ok {
		if !m.mx.full {
			m.mx.full = true
			m.log.Warn(fmt.Sprintf("More than %d workers: the requests of the newest are not counted in the metrics", metrics.MaxSlots))
		}
		return -1
	}
	spec.MetricsFD, spec.MetricsSlot = 3+len(*files), slot
	*files = append(*files, m.mx.board.File())
	return slot
}

// workerExited counts a reaped worker's exit and folds its scoreboard
// slot into the retired totals (the process is gone: nothing writes it).
func (m *Master) workerExited(w *workerProc) {
	m.mx.pool.Exited(exitReason(w))
	m.mx.board.Release(w.slot)
}

// exitReason is why a reaped worker exited, for gorn_worker_exits_total.
func exitReason(w *workerProc) string {
	switch {
	case w.aborted:
		return metrics.ExitTimeout
	case w.retired == "tired" && w.tiredWhy == metrics.ExitMemory:
		return metrics.ExitMemory
	case w.retired == "tired":
		return metrics.ExitMaxRequests
	case w.retired == "reload", w.retired == "stale":
		return metrics.ExitReload
	case w.retired != "": // "scale_down"
		return metrics.ExitScaleDown
	case w.phase == Booting:
		return metrics.ExitBootError
	}
	return metrics.ExitCrash
}

// publish hands the loop's view of the pool to the metrics.
func (m *Master) publish() {
	ws := make([]metrics.WorkerInfo, 0, len(m.workers))
	for _, w := range m.workers {
		ws = append(ws, metrics.WorkerInfo{Slot: w.slot, Phase: w.phase.String(), Pid: w.pid, RuntimePid: w.runtime})
	}
	slices.SortFunc(ws, func(a, b metrics.WorkerInfo) int { return cmp.Compare(a.Slot, b.Slot) })
	m.mx.pool.SetWorkers(m.desired, ws)
	if n := len(m.workers); n != m.statsdWorkers && m.opts.Statsd != nil {
		m.statsdWorkers = n
		m.opts.Statsd.Gauge("gunicorn.workers", int64(n)) // as gunicorn: every worker it has, booting ones too
	}
}

// needs records that n more workers will be started for reason, for the
// reason label of gorn_worker_spawns_total.
func (m *Master) needs(reason string, n int) {
	for range n {
		m.spawnWhy = append(m.spawnWhy, reason)
	}
	if limit := 2*m.desired + 8; len(m.spawnWhy) > limit { // needs a rollback left unmet
		m.spawnWhy = m.spawnWhy[len(m.spawnWhy)-limit:]
	}
}

// spawnReason is why the worker being started is needed; a replacement
// nothing explained is counted as one for a crash.
func (m *Master) spawnReason() string {
	if len(m.spawnWhy) == 0 {
		return metrics.ExitCrash
	}
	r := m.spawnWhy[0]
	m.spawnWhy = m.spawnWhy[1:]
	return r
}
