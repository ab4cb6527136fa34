// Package master is gorn's master process: it binds the listeners, starts
// the workers (the gorn binary re-executed in worker mode, inheriting the
// listeners), keeps the right number of them serving through reloads,
// scaling and faults, and stops them on a signal.
//
// One goroutine, Run's loop, owns the worker table; child exits, control
// messages, signals and timers reach it as messages. What to start and
// what to retire is decided by Plan, a pure function of the table.
package master

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/balance"
	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/internal/proc"
	"github.com/gorn-project/gorn/logs"
	"github.com/gorn-project/gorn/metrics"
	"github.com/gorn-project/gorn/protocol"
	"github.com/gorn-project/gorn/signals"
	"github.com/gorn-project/gorn/statsd"
	"github.com/gorn-project/gorn/worker"
)

// Exit codes of the master, as gunicorn's.
const (
	ExitOK        = 0
	ExitError     = 1
	ExitBootError = 3
	ExitAppLoad   = 4
)

// Options are what the master needs besides the configuration.
type Options struct {
	// Log is the error log.
	Log *slog.Logger
	// ErrorLog is the error log's file: workers and runtimes write their
	// lines to it (it is their standard error), and USR1 reopens it.
	ErrorLog *logs.File
	// Argv is the command line, handed to the app as sys.argv.
	Argv []string
	// Reload re-reads the configuration for HUP; nil keeps the current one.
	Reload func() (*config.Config, error)
	// Dir is the directory gorn started in (before --chdir): a new master
	// started by USR2 starts there, with Argv.
	Dir string
	// Terminal reports whether the master has a controlling terminal,
	// which sends WINCH to it whenever the terminal is resized: WINCH
	// then leaves the workers alone. nil: never.
	Terminal func() bool
	// Activated says the binds are sockets systemd passed (LISTEN_FDS),
	// which a new master started by USR2 would not find.
	Activated bool
	// Statsd receives gunicorn.workers when the number of workers
	// changes (--statsd-host); nil for none.
	Statsd *statsd.Client
	// Hooks runs the master's server hooks of the configuration file
	// (StartHooks); nil when it defines none. The master closes it, after
	// on_exit.
	Hooks Hooks
	// Notify tells systemd the service's state (sd_notify(3): READY=1
	// once the first worker has loaded the app, RELOADING=1 at a reload's
	// start and READY=1 at its end, whatever the outcome, STOPPING=1 when
	// the master starts to stop); nil when systemd did not ask
	// ($NOTIFY_SOCKET).
	Notify func(state string) error
}

// workerProc is one worker in the table.
type workerProc struct {
	id       int // spawn order: lower is older
	gen      int
	pid      int
	cmd      *exec.Cmd
	ctrl     net.Conn
	phase    Phase
	tired    bool
	started  time.Time
	lastSeen time.Time // last control message (heartbeats every --timeout/4)
	drainAt  time.Time // when it was told to drain
	aborted  bool      // sent SIGABRT for a missed heartbeat
	runtime  int       // pid of its app runtime, from heartbeats
	slot     int       // metrics scoreboard slot; -1 for none
	seat     int       // balance board seat; -1 for none
	retired  string    // why it was retired (Plan's reason), "" if not
	tiredWhy string    // metrics.ExitMaxRequests or metrics.ExitMemory
}

type exitEvent struct {
	w      *workerProc
	status error
}

type ctrlEvent struct {
	w *workerProc
	f protocol.Frame
}

// Master runs the worker pool.
type Master struct {
	opts Options
	log  *slog.Logger
	exe  string // what workers run: this master's own binary
	// listeners are the current generation's app listeners, in --bind
	// order; goodListeners goodGen's (the same, unless a HUP changed
	// --bind and the new generation is not serving yet). See rebind.
	listeners     []*listener
	goodListeners []*listener
	workers       map[int]*workerProc
	events        chan any
	nextID        int

	gens     map[int]*config.Config // configuration of each live generation
	gen      int                    // generation new workers get
	lastGen  int                    // highest generation number used
	goodGen  int                    // newest generation that has served
	desired  int
	winched  int  // desired count before WINCH, restored by HUP
	served   bool // some worker has been ready: boot errors no longer halt
	bootLog  bool // a boot error has been logged while booting
	failures int  // consecutive worker failures before ready
	holdTill time.Time
	lastErr  string   // why the latest worker failed before ready
	spawnWhy []string // why the next spawns are needed, oldest first (metrics)

	mx masterMetrics // --metrics-bind; see metrics.go
	// balance is the board on which workers spread connections evenly
	// (package balance); nil if it could not be made (workers then
	// accept as if alone).
	balance *balance.Board

	statsdWorkers int // the gunicorn.workers gauge last sent; -1 before the first

	// USR2 (upgrade.go).
	upgradeExe string   // the executable on disk a new master runs
	child      int      // pid of the new master USR2 started, until it exits
	parent     int      // pid of the master that started this one, until it is gone
	pidFile    *pidFile // --pid: FILE, or FILE.2 while parent lives
}

// New binds every listener. A bind error is returned for a one-line
// message and exit code 1.
func New(cfg *config.Config, opts Options) (*Master, error) {
	// Workers run the binary this master runs, even after a package
	// upgrade has replaced the file on disk (a new binary's worker could
	// not be trusted to speak this master's protocol); USR2 starts the new
	// binary as a new master.
	exe := "/proc/self/exe"
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding the gorn executable: %w", err)
		}
	}
	m := &Master{
		opts:    opts,
		log:     opts.Log,
		exe:     exe,
		workers: make(map[int]*workerProc),
		events:  make(chan any, 64),
		gens:    map[int]*config.Config{1: cfg},
		gen:     1,
		lastGen: 1,
		desired: cfg.Workers,

		statsdWorkers: -1,
	}
	if err := checkOwner(cfg); err != nil {
		return nil, err
	}
	if len(opts.Argv) > 0 {
		m.upgradeExe = upgradePath(opts.Argv[0], opts.Dir)
	}
	ho, err := takeHandover()
	if err != nil {
		m.log.Warn("Binding the addresses anew", "err", err)
	}
	defer ho.closeRest()
	if ho != nil {
		m.parent = ho.Parent
	}
	for _, b := range cfg.Binds {
		l, err := bind(b, listenOpts{backlog: cfg.Backlog, reusePort: cfg.ReusePort}, ho)
		if err != nil {
			m.closeListeners()
			return nil, err
		}
		m.listeners = append(m.listeners, l)
	}
	m.goodListeners = m.listeners
	if err := m.setupMetrics(cfg, ho); err != nil {
		m.closeListeners()
		return nil, err
	}
	if err := m.ownFiles(cfg); err != nil {
		m.closeListeners()
		m.closeMetrics()
		return nil, err
	}
	if b, err := balance.Create(); err != nil {
		m.log.Warn("Workers will not balance connections", "err", err)
	} else {
		m.balance = b
	}
	return m, nil
}

func (m *Master) cfg() *config.Config { return m.gens[m.gen] }

// closeListeners closes the app's listeners (a unix socket's file is
// removed unless another master shares it).
func (m *Master) closeListeners() {
	m.keepSharedSockets()
	for _, l := range m.allListeners() {
		l.close()
	}
	m.listeners, m.goodListeners = nil, nil
}

// allListeners are the current generation's listeners and the serving
// generation's, each once.
func (m *Master) allListeners() []*listener {
	all := slices.Clone(m.listeners)
	for _, l := range m.goodListeners {
		if !slices.Contains(all, l) {
			all = append(all, l)
		}
	}
	return all
}

// rebind opens the listeners of a reload whose --bind changed: those of the
// current generation (or the serving one) with the same address are kept,
// the others bound afresh (with the new --backlog and --reuse-port, a unix
// socket's file given its mode and owner). fresh are the new ones, which
// the caller closes if the reload fails. The old listeners stay open until
// the new generation serves (keepListeners): if it fails to boot, the old
// one goes on with them.
func (m *Master) rebind(cfg *config.Config) (lns, fresh []*listener, err error) {
	have := m.allListeners()
	for _, b := range cfg.Binds {
		i := slices.IndexFunc(have, func(l *listener) bool { return l.spec == b })
		if i >= 0 {
			lns = append(lns, have[i])
			continue
		}
		l, err := bind(b, listenOpts{backlog: cfg.Backlog, reusePort: cfg.ReusePort}, nil)
		if err == nil {
			fresh = append(fresh, l)
			err = ownSocket(l, cfg)
		}
		if err != nil {
			closeAll(fresh)
			return nil, nil, err
		}
		lns = append(lns, l)
	}
	return lns, fresh, nil
}

// useListeners makes lns the current generation's listeners. Listeners
// neither lns nor the serving generation has are closed: a generation
// that never served is gone.
func (m *Master) useListeners(lns []*listener) {
	for _, l := range m.listeners {
		if !slices.Contains(lns, l) && !slices.Contains(m.goodListeners, l) {
			l.close()
		}
	}
	m.listeners = lns
	if m.mx.collector != nil {
		m.mx.collector.SetListeners(queues(lns))
	}
}

// keepListeners is called when the current generation serves: it closes
// the listeners only older generations had. Their workers, retiring, keep
// their own copies until they exit; then the kernel closes the sockets.
func (m *Master) keepListeners() {
	for _, l := range m.goodListeners {
		if !slices.Contains(m.listeners, l) {
			l.close()
		}
	}
	m.goodListeners = m.listeners
}

// closeAll closes listeners.
func closeAll(listeners []*listener) {
	for _, l := range listeners {
		l.close()
	}
}

// Run serves until a stop signal or a fatal boot error and returns the
// process exit code.
func (m *Master) Run() int {
	defer m.endHooks()
	defer m.closeListeners()
	defer m.closeMetrics()
	defer m.balance.Close()
	cfg := m.cfg()
	pid := os.Getpid()
	m.log.Info("Starting gorn " + config.Version)
	for _, l := range m.listeners {
		m.log.Info(fmt.Sprintf("Listening at: %s (%d)", l.url, pid))
	}
	m.serveMetrics()
	kind := "sync"
	if cfg.Threads > 1 || cfg.ThreadWorker {
		kind = "gthread"
	}
	m.log.Info(fmt.Sprintf("Using worker: %s (threads: %d, python: %s)", kind, cfg.Threads, cfg.Python))
	if cfg.PidFile != "" {
		path := cfg.PidFile
		if m.parent != 0 {
			path += ".2" // the old master's file keeps its name until it exits
		}
		pf, err := writePidFile(path, pid)
		if err != nil {
			m.log.Error("Cannot write the pid file", "path", path, "err", err)
			return ExitError
		}
		m.pidFile = pf
		defer func() { m.pidFile.remove() }()
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, signals.Master...)
	defer signal.Stop(sigs)
	// Orphans below the master come to it (orphans.go); each exit of a
	// child raises SIGCHLD, and one pending notice covers any number.
	children := make(chan os.Signal, 1)
	signal.Notify(children, syscall.SIGCHLD)
	defer signal.Stop(children)
	if err := becomeSubreaper(); err != nil {
		m.log.Warn("Orphaned processes will not be reaped by gorn", "err", err)
	}

	if cfg.Reload {
		done := make(chan struct{})
		defer close(done)
		go m.watch(m.watchSet(cfg), done)
	}
	tick := time.NewTicker(m.checkInterval())
	defer tick.Stop()
	m.hook("when_ready", nil, false)
	m.needs(metrics.SpawnBoot, m.desired)
	m.apply()
	for {
		select {
		case s := <-sigs:
			// What the workers said before the signal came counts first:
			// a HUP must see a worker that is ready as ready, not retire
			// it as one still booting.
			if code, stop := m.queuedEvents(); stop {
				return code
			}
			m.log.Info("Handling signal: " + signals.Name(s))
			if code, stop := m.signal(s); stop {
				return code
			}
		case ev := <-m.events:
			if code, stop := m.event(ev); stop {
				return code
			}
		case <-children:
			m.reapStrays()
		case now := <-tick.C:
			m.check(now)
		}
		m.apply()
	}
}

// queuedEvents acts on the events already queued, and no more; stop says
// Run must return code.
func (m *Master) queuedEvents() (code int, stop bool) {
	for queued := len(m.events); queued > 0; queued-- {
		if code, stop := m.event(<-m.events); stop {
			return code, true
		}
	}
	return 0, false
}

// event acts on a message from a worker's goroutines or the --reload
// watcher; stop says Run must return code.
func (m *Master) event(ev any) (code int, stop bool) {
	switch ev := ev.(type) {
	case exitEvent:
		if code, reason, halt := m.reap(ev); halt {
			return m.stop(false, code, reason), true
		}
	case ctrlEvent:
		m.control(ev)
	case reloadEvent:
		m.log.Info(fmt.Sprintf("Worker reloading: %s modified", ev.path))
		m.reload()
	}
	return 0, false
}

// checkInterval is how often heartbeats, memory and drain deadlines are
// checked.
func (m *Master) checkInterval() time.Duration {
	if t := m.cfg().Timeout; t > 0 {
		return min(max(t/4, 100*time.Millisecond), time.Second)
	}
	return time.Second
}

// signal acts on a signal; stop says Run must return code.
func (m *Master) signal(s os.Signal) (code int, stop bool) {
	switch signals.ForMaster(s) {
	case signals.GracefulStop:
		return m.stop(true, ExitOK, ""), true
	case signals.QuickStop:
		return m.stop(false, ExitOK, ""), true
	case signals.Reload:
		m.log.Info("Hang up: Master") // as gunicorn's arbiter
		m.reload()
	case signals.AddWorker:
		m.desired++
		m.needs(metrics.SpawnScaleUp, 1)
		m.log.Info(fmt.Sprintf("Number of workers: %d", m.desired))
		m.hook("nworkers_changed", nil, false, m.desired, m.desired-1)
	case signals.RemoveWorker:
		if m.desired > 1 {
			m.desired--
			m.hook("nworkers_changed", nil, false, m.desired, m.desired+1)
		}
		m.log.Info(fmt.Sprintf("Number of workers: %d", m.desired))
	case signals.ReopenLogs:
		if err := m.opts.ErrorLog.Reopen(); err != nil {
			m.log.Error("Cannot reopen the error log", "err", err)
		}
		for _, w := range m.workers {
			w.cmd.Process.Signal(syscall.SIGUSR1)
		}
		if m.opts.Hooks != nil {
			m.opts.Hooks.ReopenLogs()
		}
	case signals.StopWorkers:
		if m.opts.Terminal != nil && m.opts.Terminal() {
			// As gunicorn outside --daemon: a resized terminal sends it.
			m.log.Debug("SIGWINCH ignored: the master runs in a terminal, which sends it when it is resized")
			break
		}
		if m.desired > 0 {
			m.winched = m.desired
		}
		m.desired = 0
		m.log.Info("Stopping all workers; the master keeps its listeners (HUP or TTIN starts them again)")
	case signals.Upgrade:
		m.upgrade()
	}
	return 0, false
}

// reload starts a new generation of workers with a freshly read
// configuration. The old generation serves until new workers are ready.
func (m *Master) reload() {
	// Every reload ends in reloaded (a new generation serves, or the
	// current one keeps serving), which says READY=1 again.
	m.notify("RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
	old := m.cfg()
	cfg := old
	var lns []*listener // the new generation's listeners, when --bind changed
	if m.opts.Reload != nil {
		start := time.Now()
		next, err := m.opts.Reload()
		// Reading the configuration runs the configuration file (up to 30
		// s): heartbeats wait meanwhile.
		m.excuse(time.Since(start))
		if err != nil {
			m.log.Error("Reload failed: cannot read the configuration; keeping the current workers", "err", err)
			m.reloaded(false)
			return
		}
		var fresh []*listener
		if m.opts.Activated {
			// Binds are systemd's sockets either way: the --bind asked for
			// says whether the settings changed it.
			if !slices.Equal(next.AskedBinds, cfg.AskedBinds) {
				m.log.Warn("Changing --bind needs a restart under systemd socket activation; keeping the sockets systemd passed")
			}
			next.Binds = cfg.Binds
		} else if !slices.Equal(next.Binds, cfg.Binds) {
			if lns, fresh, err = m.rebind(next); err != nil {
				m.log.Error("Reload failed: " + err.Error() + "; keeping the current workers")
				m.reloaded(false)
				return
			}
		}
		if err := m.switchLogs(old, next); err != nil {
			closeAll(fresh)
			m.log.Error("Reload failed: " + err.Error() + "; keeping the current workers")
			m.reloaded(false)
			return
		}
		cfg = next
	}
	if m.desired == 0 && m.winched > 0 {
		m.desired = m.winched
	}
	if cfg.PidFile != old.PidFile {
		m.movePidFile(cfg.PidFile)
	}
	// The first hook called from here has the hooks' process run the
	// configuration file again first, for its hooks as they are now.
	reread := true
	// An edited --workers (the configuration file's workers, say) applies;
	// otherwise the count TTIN and TTOU made survives.
	if cfg.Workers != old.Workers {
		prev := m.desired
		m.desired = cfg.Workers
		m.log.Info(fmt.Sprintf("Number of workers: %d (--workers is now %d)", m.desired, cfg.Workers))
		if m.desired != prev && m.opts.Hooks != nil && cfg.HasHook("nworkers_changed") {
			m.opts.Hooks.Call(HookCall{Hook: "nworkers_changed", Reload: true, Settings: cfg.Settings(), Server: m.hookServer(), Extra: []any{m.desired, prev}}, false)
			reread = false
		}
	}
	// Forget generations no worker uses any more.
	for g := range m.gens {
		if g != m.gen && g != m.goodGen && !m.genInUse(g) {
			delete(m.gens, g)
		}
	}
	m.lastGen++
	m.gen = m.lastGen
	m.gens[m.gen] = cfg
	if lns != nil {
		m.useListeners(lns)
		for _, l := range lns {
			m.log.Info(fmt.Sprintf("Listening at: %s (%d)", l.url, os.Getpid()))
		}
	}
	if m.opts.Hooks != nil {
		// on_reload if the file defines it (a call either way, for reread).
		call := HookCall{Hook: "on_reload", Reload: reread, Server: m.hookServer()}
		if reread {
			call.Settings = cfg.Settings()
		}
		m.opts.Hooks.Call(call, false)
	}
	m.failures, m.holdTill = 0, time.Time{}
	m.log.Info(fmt.Sprintf("Reloading: starting %d new workers (generation %d)", m.desired, m.gen))
	m.needs(metrics.SpawnReload, m.desired)
}

// switchLogs applies a reload's new --error-logfile and --access-logfile,
// as gunicorn's does: with --user, it hands new log files to the user (the
// workers open the access log); it points the master's error log, which
// new workers and their runtimes inherit, at the new --error-logfile. The
// workers already running keep the files they have. An error leaves the
// error log as it was.
func (m *Master) switchLogs(old, cfg *config.Config) error {
	if cfg.ErrorLog == old.ErrorLog && cfg.AccessLog == old.AccessLog {
		return nil
	}
	if err := ownLogs(cfg); err != nil {
		return fmt.Errorf("cannot hand the new log files to --user: %w", err)
	}
	if cfg.ErrorLog == old.ErrorLog || m.opts.ErrorLog == nil {
		return nil
	}
	to := cfg.ErrorLog
	if to == "" || to == "-" {
		to = "standard error"
	}
	m.log.Info("Reload: the error log moves to " + to)
	if err := m.opts.ErrorLog.Switch(cfg.ErrorLog); err != nil {
		return fmt.Errorf("cannot open the new --error-logfile: %w", err)
	}
	return nil
}

// excuse does not count d, a time the master's loop was held up (and read
// no heartbeats), against the workers' heartbeats, as long as it is longer
// than a check interval: a worker is judged as if the master had been
// listening. Without it, the first check after a slow read of the
// configuration could kill every worker whose heartbeats were waiting to be
// read.
func (m *Master) excuse(d time.Duration) {
	if d < m.checkInterval() {
		return
	}
	now := time.Now()
	for _, w := range m.workers {
		if w.lastSeen = w.lastSeen.Add(d); w.lastSeen.After(now) {
			w.lastSeen = now
		}
	}
}

// movePidFile writes the pid file at a new --pid path, as gunicorn does on
// HUP, and removes the old one ("" removes it). A new file that cannot be
// written leaves the old one.
func (m *Master) movePidFile(path string) {
	var next *pidFile
	if path != "" {
		if m.parent != 0 {
			path += ".2" // until the old master is gone (upgrade.go)
		}
		pf, err := writePidFile(path, os.Getpid())
		if err != nil {
			m.log.Error("Cannot write the new pid file; keeping the old one", "err", err)
			return
		}
		next = pf
	}
	m.pidFile.remove()
	m.pidFile = next
}

// hook calls a master hook of the configuration file (Options.Hooks), if
// it defines it, with the worker argument w (nil for none) and the
// arguments after it; wait: see Hooks.Call. It reports false only for a
// hook that raised or did not return.
func (m *Master) hook(name string, w *HookWorker, wait bool, extra ...any) bool {
	if m.opts.Hooks == nil || !m.cfg().HasHook(name) {
		return true
	}
	return m.opts.Hooks.Call(HookCall{Hook: name, Server: m.hookServer(), Worker: w, Extra: extra}, wait)
}

// childExit runs the child_exit hook for a worker that exited: its
// worker argument's pid is the worker's app runtime, the process the app
// ran in (gunicorn's worker), None if it never started one.
func (m *Master) childExit(w *workerProc) {
	exited := &HookWorker{Ppid: w.pid, Age: w.id}
	if w.runtime != 0 {
		exited.Pid = &w.runtime
	}
	m.hook("child_exit", exited, false)
}

// hookServer is what the master hooks' server argument says of the master.
func (m *Master) hookServer() HookServer {
	return HookServer{Pid: os.Getpid(), NumWorkers: m.desired}
}

// endHooks runs on_exit and ends the master hooks' process.
func (m *Master) endHooks() {
	if m.opts.Hooks == nil {
		return
	}
	m.hook("on_exit", nil, true)
	m.opts.Hooks.Close()
}

func (m *Master) genInUse(g int) bool {
	for _, w := range m.workers {
		if w.gen == g {
			return true
		}
	}
	return false
}

// apply runs Plan on the table and carries out its actions.
func (m *Master) apply() {
	view := PoolView{Desired: m.desired, Gen: m.gen, HoldSpawns: time.Now().Before(m.holdTill)}
	byID := make(map[int]*workerProc, len(m.workers))
	for _, w := range m.workers {
		view.Workers = append(view.Workers, WorkerView{ID: w.id, Gen: w.gen, Phase: w.phase, Tired: w.tired})
		byID[w.id] = w
	}
	for _, a := range Plan(view) {
		switch a.Kind {
		case Spawn:
			m.spawn(a.Gen)
		case Retire:
			m.retire(byID[a.ID], a.Reason)
		}
	}
	m.publish()
}

// retire tells a worker to drain: stop accepting, finish its requests
// within --graceful-timeout and exit.
func (m *Master) retire(w *workerProc, reason string) {
	if w == nil || w.phase == Draining {
		return
	}
	m.log.Info(fmt.Sprintf("Retiring worker (pid: %d, reason: %s)", w.pid, reason))
	w.phase = Draining
	w.retired = reason
	w.drainAt = time.Now()
	w.cmd.Process.Signal(syscall.SIGTERM)
}

// spawn starts one worker of generation gen.
func (m *Master) spawn(gen int) {
	cfg := m.gens[gen]
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		m.log.Error("Cannot create a worker control socket", "err", err)
		m.hold()
		return
	}
	parent := os.NewFile(uintptr(fds[0]), "control")
	child := os.NewFile(uintptr(fds[1]), "control-child")
	defer child.Close()
	ctrl, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		m.log.Error("Cannot use a worker control socket", "err", err)
		m.hold()
		return
	}
	m.hook("pre_fork", &HookWorker{Age: m.nextID + 1}, false)
	spec := worker.Spec{Config: cfg, ControlFD: 3 + len(m.listeners), Argv: m.opts.Argv, Age: m.nextID + 1}
	if cfg.MaxRequests > 0 {
		spec.MaxRequests = cfg.MaxRequests
		if cfg.MaxRequestsJitter > 0 {
			spec.MaxRequests += rand.IntN(cfg.MaxRequestsJitter + 1)
		}
	}
	files := make([]*os.File, 0, len(m.listeners)+1)
	for _, l := range m.listeners {
		spec.Listeners = append(spec.Listeners, l.info)
		files = append(files, l.file)
	}
	files = append(files, child)
	slot := m.attachScoreboard(&spec, &files)
	seat := m.attachBalance(&spec, &files)
	js, err := json.Marshal(spec)
	if err != nil {
		ctrl.Close()
		m.mx.board.Release(slot)
		m.balance.Release(seat)
		m.log.Error("Cannot encode the worker spec", "err", err)
		m.hold()
		return
	}
	cmd := exec.Command(m.exe)
	cmd.Args = []string{"gorn: worker [" + cfg.Name + "]"}
	cmd.Env = append(os.Environ(), worker.SpecEnv+"="+string(js))
	cmd.ExtraFiles = files
	cmd.Stdout = os.Stdout
	if cfg.CaptureOutput && cfg.ErrorLog != "" && cfg.ErrorLog != "-" {
		cmd.Stdout = m.opts.ErrorLog.File()
	}
	cmd.Stderr = m.opts.ErrorLog.File()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: credential(cfg)}
	if err := proc.Start(cmd); err != nil {
		ctrl.Close()
		m.mx.board.Release(slot)
		m.balance.Release(seat)
		m.log.Error("Cannot start a worker", "err", err)
		m.hold()
		return
	}
	now := time.Now()
	m.nextID++
	w := &workerProc{id: m.nextID, gen: gen, pid: cmd.Process.Pid, cmd: cmd, ctrl: ctrl, started: now, lastSeen: now, slot: slot, seat: seat}
	m.workers[w.pid] = w
	m.mx.pool.Spawned(m.spawnReason())
	m.log.Info(fmt.Sprintf("Booting worker with pid: %d", w.pid))
	// Both goroutines end with the worker: Wait when it exits, the reader
	// when its control socket closes (reap closes it).
	ctrlDone := make(chan struct{})
	go func() {
		err := cmd.Wait()
		// The worker's last control messages (a boot error's traceback)
		// are delivered before its exit: its socket ends when it exits.
		select {
		case <-ctrlDone:
		case <-time.After(time.Second):
		}
		m.events <- exitEvent{w: w, status: err}
	}()
	go func() {
		defer close(ctrlDone)
		r := protocol.NewReader(ctrl)
		for {
			f, err := r.ReadFrame()
			if err != nil {
				return
			}
			m.events <- ctrlEvent{w: w, f: f}
		}
	}()
}

// hold counts a failure before ready and backs spawning off.
func (m *Master) hold() {
	m.failures++
	m.holdTill = time.Now().Add(backoff(m.failures))
}

// check runs the periodic checks: heartbeats, drain deadlines, memory, and
// waking up after a back-off.
func (m *Master) check(now time.Time) {
	m.checkPromoted()
	cfg := m.cfg()
	for _, w := range m.workers {
		switch w.phase {
		case Draining:
			if now.Sub(w.drainAt) > m.gens[w.gen].GracefulTimeout+5*time.Second {
				m.log.Warn(fmt.Sprintf("Worker (pid:%d) did not drain within --graceful-timeout; killing it", w.pid))
				w.cmd.Process.Signal(syscall.SIGKILL)
			}
			continue
		case Booting:
			if bt := m.gens[w.gen].BootTimeout; bt > 0 && now.Sub(w.lastSeen) > bt+10*time.Second {
				m.timeoutWorker(w)
			}
			continue
		}
		if t := m.gens[w.gen].Timeout; t > 0 && now.Sub(w.lastSeen) > t {
			m.timeoutWorker(w)
			continue
		}
		if limit := cfg.MaxWorkerMemory; limit > 0 && !w.tired {
			if rss := residentBytes(w.pid) + residentBytes(w.runtime); rss > limit {
				w.tired, w.tiredWhy = true, metrics.ExitMemory
				m.needs(metrics.ExitMemory, 1)
				m.log.Warn(fmt.Sprintf("Worker (pid:%d) uses %d MiB, over --max-worker-memory; replacing it", w.pid, rss>>20))
			}
		}
	}
}

// timeoutWorker kills a worker whose Go side stopped heart-beating, as
// gunicorn: SIGABRT first (a Go worker prints its goroutines), SIGKILL on
// the next check.
func (m *Master) timeoutWorker(w *workerProc) {
	if w.aborted {
		w.cmd.Process.Signal(syscall.SIGKILL)
		return
	}
	m.log.Log(context.Background(), logs.LevelCritical, fmt.Sprintf("WORKER TIMEOUT (pid:%d)", w.pid))
	w.aborted = true
	w.cmd.Process.Signal(syscall.SIGABRT)
}

// residentBytes is the resident set size of pid, 0 if unknown.
func residentBytes(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0
	}
	return parseStatm(string(b))
}

// parseStatm reads the resident pages from /proc/PID/statm.
func parseStatm(s string) int64 {
	f := strings.Fields(s)
	if len(f) < 2 {
		return 0
	}
	var pages int64
	if _, err := fmt.Sscan(f[1], &pages); err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// control handles a message from a worker.
func (m *Master) control(ev ctrlEvent) {
	w := ev.w
	if m.workers[w.pid] != w {
		return // from a worker already reaped
	}
	w.lastSeen = time.Now()
	switch ev.f.Type {
	case protocol.WorkerReady:
		var info worker.ReadyInfo
		json.Unmarshal(ev.f.Payload, &info)
		w.runtime = info.Pid
		if w.phase == Booting {
			w.phase = Ready
			m.mx.pool.Booted(time.Since(w.started), info.Python)
		}
		if !m.served {
			m.notify("READY=1\nSTATUS=Serving: a worker has loaded the app")
		}
		m.served = true
		m.failures, m.holdTill = 0, time.Time{}
		if w.gen == m.gen && m.goodGen != m.gen {
			// Generation 1 is the start, not a reload; a reload's counts
			// even when a HUP came before the master saw generation 1
			// ready (goodGen still 0).
			if m.gen > 1 {
				m.log.Info(fmt.Sprintf("Reload: generation %d is serving", m.gen))
				m.reloaded(true)
			}
			m.goodGen = m.gen
			m.keepListeners()
		}
		m.log.Debug("Worker ready", "pid", w.pid, "runtime_pid", info.Pid, "python", info.Python)
	case protocol.WorkerBootError:
		var be worker.BootError
		if err := json.Unmarshal(ev.f.Payload, &be); err != nil {
			be = worker.BootError{Code: ExitBootError, Message: string(ev.f.Payload)}
		}
		msg := strings.TrimRight(be.Message, "\n")
		m.lastErr = msg
		if !m.served && m.bootLog {
			return // one traceback is enough
		}
		m.bootLog = true
		if be.Code == ExitAppLoad || !strings.Contains(msg, "Traceback") {
			m.log.Error(msg)
		} else {
			m.log.Error("Exception in worker process", "traceback", msg)
		}
	case protocol.WorkerHeartbeat:
		if len(ev.f.Payload) >= 4 {
			w.runtime = int(binary.LittleEndian.Uint32(ev.f.Payload))
		}
	case protocol.WorkerTired:
		if !w.tired {
			w.tired, w.tiredWhy = true, metrics.ExitMaxRequests
			m.needs(metrics.ExitMaxRequests, 1)
			m.log.Info(fmt.Sprintf("Worker (pid:%d) reached --max-requests; replacing it", w.pid))
		}
	}
}

// attachBalance gives a new worker a seat on the balance board: the memfd
// as the next inherited descriptor and the seat number in its spec. It
// returns the seat, -1 when there is none.
func (m *Master) attachBalance(spec *worker.Spec, files *[]*os.File) int {
	seat, ok := m.balance.Acquire()
	if !ok {
		return -1
	}
	spec.BalanceFD, spec.BalanceSeat = 3+len(*files), seat
	*files = append(*files, m.balance.File())
	return seat
}

// reap handles a worker's exit; halt says the master must stop with code.
func (m *Master) reap(ev exitEvent) (code int, reason string, halt bool) {
	w := ev.w
	delete(m.workers, w.pid)
	w.ctrl.Close()
	// The pool's metrics drop the worker before its exit is counted: a
	// scrape must not see the exit while the dead worker still counts as
	// ready (and its replacement not yet as spawned).
	m.publish()
	m.workerExited(w)
	m.balance.Release(w.seat)
	m.childExit(w)
	if w.retired == "" && !w.tired { // it left a gap: say why the next spawn fills it
		m.needs(exitReason(w), 1)
	}
	status := exitStatus(ev.status)
	switch {
	case status.signaled && w.phase == Draining && status.signal == syscall.SIGKILL:
		m.log.Warn(fmt.Sprintf("Worker (pid:%d) was killed while draining", w.pid))
	case status.signaled && w.phase == Draining && status.signal == syscall.SIGTERM:
		// Retired before it had installed its signal handlers.
		m.log.Info(fmt.Sprintf("Worker (pid:%d) stopped before it was ready", w.pid))
	case status.signaled && status.signal == syscall.SIGKILL:
		m.log.Error(fmt.Sprintf("Worker (pid:%d) was sent SIGKILL! Perhaps out of memory?", w.pid))
	case status.signaled:
		m.log.Error(fmt.Sprintf("Worker (pid:%d) was sent %s!", w.pid, unix.SignalName(status.signal)))
	case status.code != 0:
		m.log.Error(fmt.Sprintf("Worker (pid:%d) exited with code %d", w.pid, status.code))
	}
	if w.phase != Booting {
		return 0, "", false
	}
	// A worker that died before it was ready.
	if !m.served {
		switch status.code {
		case ExitBootError:
			return ExitBootError, "Worker failed to boot.", true
		case ExitAppLoad:
			return ExitAppLoad, "App failed to load.", true
		}
	}
	if w.gen == m.gen && m.goodGen != 0 && m.goodGen != m.gen {
		// The new generation failed: keep the old one serving.
		why := "worker exited with " + describe(status)
		if lines := strings.Split(strings.TrimSpace(m.lastErr), "\n"); m.lastErr != "" {
			why = lines[len(lines)-1] // the exception; its traceback is logged above
		}
		m.reloaded(false)
		m.log.Error(fmt.Sprintf("Reload failed: generation %d did not boot (%s); generation %d keeps serving", m.gen, why, m.goodGen))
		m.gen = m.goodGen
		m.useListeners(m.goodListeners)
		m.lastErr = ""
		return 0, "", false
	}
	if w.gen == m.gen {
		m.hold()
	}
	return 0, "", false
}

// reloaded records the end of a reload, which ok says succeeded, in the
// metrics, and tells systemd that the service is ready again.
func (m *Master) reloaded(ok bool) {
	m.mx.pool.Reloaded(ok, time.Now())
	status := "Reloaded: a new generation serves"
	if !ok {
		status = "Reload failed: the current workers keep serving"
	}
	m.notify("READY=1\nSTATUS=" + status)
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd wants
// with RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}

// notify tells systemd state (Options.Notify), if it asked; a failure is
// logged at debug level, as gunicorn does.
func (m *Master) notify(state string) {
	if m.opts.Notify == nil {
		return
	}
	if err := m.opts.Notify(state); err != nil {
		m.log.Debug("Cannot notify systemd", "err", err)
	}
}

// stop ends every worker, gracefully (TERM, then KILL after
// --graceful-timeout) or quickly (QUIT), and returns code.
func (m *Master) stop(graceful bool, code int, reason string) int {
	m.notify("STOPPING=1")
	// The metrics show every worker draining and none desired by the time
	// /readyz fails.
	m.desired = 0
	for _, w := range m.workers {
		w.phase = Draining
	}
	m.publish()
	m.mx.pool.Stop()
	// Whether another master still shares the sockets (closeListeners).
	m.reapStrays()
	m.checkPromoted()
	// As gunicorn: close the listeners first, so new connections are
	// refused (not left in the backlog) while the workers finish.
	m.closeListeners()
	sig := syscall.SIGQUIT
	if graceful {
		sig = syscall.SIGTERM
	}
	for _, w := range m.workers {
		w.cmd.Process.Signal(sig)
	}
	deadline := time.NewTimer(m.cfg().GracefulTimeout)
	defer deadline.Stop()
	for len(m.workers) > 0 {
		select {
		case ev := <-m.events:
			switch ev := ev.(type) {
			case exitEvent:
				delete(m.workers, ev.w.pid)
				ev.w.ctrl.Close()
				m.publish()
				m.childExit(ev.w)
			case ctrlEvent:
				if ev.f.Type == protocol.WorkerBootError {
					m.control(ev)
				}
			}
		case <-deadline.C:
			for _, w := range m.workers {
				m.log.Warn(fmt.Sprintf("Worker (pid:%d) did not stop within --graceful-timeout; killing it", w.pid))
				w.cmd.Process.Signal(syscall.SIGKILL)
			}
			deadline.Reset(time.Hour)
		}
	}
	if code == ExitOK {
		m.log.Info("Shutting down: Master")
	} else {
		m.log.Error("Shutting down: Master")
		m.log.Error("Reason: " + reason)
	}
	return code
}

type status struct {
	code     int
	signaled bool
	signal   syscall.Signal
}

func describe(s status) string {
	if s.signaled {
		return unix.SignalName(s.signal)
	}
	return fmt.Sprintf("code %d", s.code)
}

func exitStatus(err error) status {
	if err == nil {
		return status{}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return status{code: -1, signaled: true, signal: ws.Signal()}
		}
		return status{code: ee.ExitCode()}
	}
	return status{code: -1}
}

// backoff is the delay before respawning after n consecutive failures:
// 0 for the first, then doubling from 100ms, capped at 10s.
func backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := 100 * time.Millisecond << min(n-2, 10)
	return min(d, 10*time.Second)
}
