// Package master is gorn's master process: it binds the listeners, starts
// the workers (the gorn binary re-executed in worker mode, inheriting the
// listeners), replaces the ones that die, and stops them on a signal.
//
// One goroutine, Run's loop, owns the worker table; child exits, control
// messages and signals reach it as messages.
package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/internal/proc"
	"github.com/gorn-project/gorn/logs"
	"github.com/gorn-project/gorn/protocol"
	"github.com/gorn-project/gorn/signals"
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
	// ErrorLog is the file workers write their error log lines to (their
	// standard error).
	ErrorLog *os.File
	// Argv is the command line, handed to the app as sys.argv.
	Argv []string
}

// workerProc is one worker in the table.
type workerProc struct {
	pid      int
	cmd      *exec.Cmd
	ctrl     net.Conn
	ready    bool
	started  time.Time
	lastSeen time.Time // last control message (heartbeats every --timeout/4)
	aborted  bool      // sent SIGABRT for a missed heartbeat
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
	cfg       *config.Config
	opts      Options
	log       *slog.Logger
	exe       string
	listeners []*listener
	workers   map[int]*workerProc
	events    chan any
	desired   int
	served    bool // some worker has been ready: boot errors no longer halt
	bootLog   bool // a boot error's traceback has been logged
	failures  int  // consecutive worker failures before ready
	respawnAt time.Time
}

// New binds every listener. A bind error is returned for a one-line
// message and exit code 1.
func New(cfg *config.Config, opts Options) (*Master, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the gorn executable: %w", err)
	}
	m := &Master{
		cfg:     cfg,
		opts:    opts,
		log:     opts.Log,
		exe:     exe,
		workers: make(map[int]*workerProc),
		events:  make(chan any, 64),
		desired: cfg.Workers,
	}
	for _, b := range cfg.Binds {
		l, err := bind(b, cfg.Backlog)
		if err != nil {
			m.closeListeners()
			return nil, err
		}
		m.listeners = append(m.listeners, l)
	}
	return m, nil
}

func (m *Master) closeListeners() {
	for _, l := range m.listeners {
		l.close()
	}
}

// Run serves until a stop signal or a fatal boot error and returns the
// process exit code.
func (m *Master) Run() int {
	defer m.closeListeners()
	pid := os.Getpid()
	m.log.Info("Starting gorn " + config.Version)
	for _, l := range m.listeners {
		m.log.Info(fmt.Sprintf("Listening at: %s (%d)", l.url, pid))
	}
	kind := "sync"
	if m.cfg.Threads > 1 {
		kind = "gthread"
	}
	m.log.Info(fmt.Sprintf("Using worker: %s (threads: %d, python: %s)", kind, m.cfg.Threads, m.cfg.Python))
	if m.cfg.PidFile != "" {
		if err := os.WriteFile(m.cfg.PidFile, []byte(fmt.Sprintf("%d\n", pid)), 0o644); err != nil {
			m.log.Error("Cannot write the pid file", "path", m.cfg.PidFile, "err", err)
			return ExitError
		}
		defer os.Remove(m.cfg.PidFile)
	}

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, signals.Master...)
	defer signal.Stop(sigs)

	for range m.desired {
		m.spawn()
	}
	respawn := time.NewTimer(time.Hour)
	respawn.Stop()
	checkEvery := time.Second
	if m.cfg.Timeout > 0 {
		checkEvery = min(max(m.cfg.Timeout/4, 100*time.Millisecond), time.Second)
	}
	check := time.NewTicker(checkEvery)
	defer check.Stop()
	for {
		select {
		case <-check.C:
			m.checkHeartbeats(time.Now())
		case s := <-sigs:
			action := signals.ForMaster(s)
			m.log.Info("Handling signal: " + signals.Name(s))
			switch action {
			case signals.GracefulStop:
				return m.stop(true, ExitOK, "")
			case signals.QuickStop:
				return m.stop(false, ExitOK, "")
			case signals.AddWorker:
				m.desired++
				m.spawn()
			case signals.RemoveWorker:
				if m.desired > 1 {
					m.desired--
					m.retireOldest()
				}
			default:
				m.log.Info("Signal not handled yet: " + signals.Name(s))
			}
		case ev := <-m.events:
			switch ev := ev.(type) {
			case exitEvent:
				if code, reason, halt := m.reap(ev); halt {
					return m.stop(false, code, reason)
				}
			case ctrlEvent:
				m.control(ev)
			}
		case <-respawn.C:
		}
		if n := len(m.workers); n < m.desired {
			if wait := time.Until(m.respawnAt); wait > 0 {
				respawn.Reset(wait)
				continue
			}
			for range m.desired - n {
				m.spawn()
			}
		}
	}
}

// spawn starts one worker.
func (m *Master) spawn() {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		m.log.Error("Cannot create a worker control socket", "err", err)
		return
	}
	parent := os.NewFile(uintptr(fds[0]), "control")
	child := os.NewFile(uintptr(fds[1]), "control-child")
	defer child.Close()
	ctrl, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		m.log.Error("Cannot use a worker control socket", "err", err)
		return
	}
	spec := worker.Spec{Config: m.cfg, ControlFD: 3 + len(m.listeners), Argv: m.opts.Argv}
	files := make([]*os.File, 0, len(m.listeners)+1)
	for _, l := range m.listeners {
		spec.Listeners = append(spec.Listeners, l.info)
		files = append(files, l.file)
	}
	files = append(files, child)
	js, err := json.Marshal(spec)
	if err != nil {
		ctrl.Close()
		m.log.Error("Cannot encode the worker spec", "err", err)
		return
	}
	cmd := exec.Command(m.exe)
	cmd.Args = []string{"gorn: worker [" + m.cfg.Name + "]"}
	cmd.Env = append(os.Environ(), worker.SpecEnv+"="+string(js))
	cmd.ExtraFiles = files
	cmd.Stdout = os.Stdout
	cmd.Stderr = m.opts.ErrorLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := proc.Start(cmd); err != nil {
		ctrl.Close()
		m.log.Error("Cannot start a worker", "err", err)
		m.failures++
		m.respawnAt = time.Now().Add(backoff(m.failures))
		return
	}
	now := time.Now()
	w := &workerProc{pid: cmd.Process.Pid, cmd: cmd, ctrl: ctrl, started: now, lastSeen: now}
	m.workers[w.pid] = w
	m.log.Info(fmt.Sprintf("Booting worker with pid: %d", w.pid))
	go func() {
		err := cmd.Wait()
		m.events <- exitEvent{w: w, status: err}
	}()
	go func() {
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

// checkHeartbeats kills workers whose Go side has stopped heart-beating for
// --timeout (and booting workers stuck past --boot-timeout), as gunicorn:
// SIGABRT first (a Go worker prints its goroutines), SIGKILL on the next
// check.
func (m *Master) checkHeartbeats(now time.Time) {
	for _, w := range m.workers {
		limit := m.cfg.Timeout
		if !w.ready {
			limit = m.cfg.BootTimeout + 10*time.Second
		}
		if limit <= 0 || now.Sub(w.lastSeen) <= limit {
			continue
		}
		if w.aborted {
			w.cmd.Process.Signal(syscall.SIGKILL)
			continue
		}
		m.log.Log(context.Background(), logs.LevelCritical, fmt.Sprintf("WORKER TIMEOUT (pid:%d)", w.pid))
		w.aborted = true
		w.cmd.Process.Signal(syscall.SIGABRT)
	}
}

// control handles a message from a worker.
func (m *Master) control(ev ctrlEvent) {
	if _, ok := m.workers[ev.w.pid]; ok {
		ev.w.lastSeen = time.Now()
	}
	switch ev.f.Type {
	case protocol.WorkerReady:
		ev.w.ready = true
		m.served = true
		m.failures = 0
		var info worker.ReadyInfo
		json.Unmarshal(ev.f.Payload, &info)
		m.log.Debug("Worker ready", "pid", ev.w.pid, "runtime_pid", info.Pid, "python", info.Python)
	case protocol.WorkerBootError:
		var be worker.BootError
		if err := json.Unmarshal(ev.f.Payload, &be); err != nil {
			be = worker.BootError{Code: ExitBootError, Message: string(ev.f.Payload)}
		}
		if m.bootLog && !m.served {
			return // one traceback is enough
		}
		m.bootLog = true
		if be.Code == ExitAppLoad {
			m.log.Error(strings.TrimRight(be.Message, "\n"))
		} else {
			m.log.Error("Exception in worker process", "traceback", be.Message)
		}
	case protocol.WorkerHeartbeat:
	}
}

// reap handles a worker's exit; halt says the master must stop with code.
func (m *Master) reap(ev exitEvent) (code int, reason string, halt bool) {
	w := ev.w
	delete(m.workers, w.pid)
	w.ctrl.Close()
	status := exitStatus(ev.status)
	switch {
	case status.signaled:
		if status.signal == syscall.SIGKILL {
			m.log.Error(fmt.Sprintf("Worker (pid:%d) was sent SIGKILL! Perhaps out of memory?", w.pid))
		} else {
			m.log.Error(fmt.Sprintf("Worker (pid:%d) was sent %s!", w.pid, unix.SignalName(status.signal)))
		}
	case status.code != 0:
		m.log.Error(fmt.Sprintf("Worker (pid:%d) exited with code %d", w.pid, status.code))
	}
	if !w.ready {
		m.failures++
		m.respawnAt = time.Now().Add(backoff(m.failures))
	}
	if !m.served {
		switch status.code {
		case ExitBootError:
			return ExitBootError, "Worker failed to boot.", true
		case ExitAppLoad:
			return ExitAppLoad, "App failed to load.", true
		}
	}
	return 0, "", false
}

// retireOldest gracefully stops the longest-running worker.
func (m *Master) retireOldest() {
	var oldest *workerProc
	for _, w := range m.workers {
		if oldest == nil || w.started.Before(oldest.started) {
			oldest = w
		}
	}
	if oldest != nil {
		oldest.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// stop ends every worker, gracefully (TERM, then KILL after
// --graceful-timeout) or quickly (QUIT), and returns code.
func (m *Master) stop(graceful bool, code int, reason string) int {
	m.desired = 0
	sig := syscall.SIGQUIT
	if graceful {
		sig = syscall.SIGTERM
	}
	for _, w := range m.workers {
		w.cmd.Process.Signal(sig)
	}
	deadline := time.NewTimer(m.cfg.GracefulTimeout)
	defer deadline.Stop()
	for len(m.workers) > 0 {
		select {
		case ev := <-m.events:
			switch ev := ev.(type) {
			case exitEvent:
				delete(m.workers, ev.w.pid)
				ev.w.ctrl.Close()
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
