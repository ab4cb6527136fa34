package master

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/worker"
)

// Hooks runs the server hooks gunicorn runs in its master
// (config.MasterHooks) for the master: HookRunner, which runs Python, or a
// recorder in the master's unit tests. Only Run's goroutine (or main,
// before Run) calls it.
type Hooks interface {
	// Call queues one call of a hook; with wait, it returns once the hook
	// has run (bounded by HookWait) and reports whether it ran without an
	// exception.
	Call(c HookCall, wait bool) bool
	// ReopenLogs has the hooks write to a fresh open of the error log
	// file (USR1).
	ReopenLogs()
	// Close runs what is queued (bounded by HookWait) and ends the hooks.
	Close()
}

// HookWait bounds how long the master waits for a hook it waits for
// (on_starting, pre_exec, on_exit), and for the queued hooks when it
// closes them: 30 seconds.
const HookWait = 30 * time.Second

// HookCall is one call of a master hook: its name, and the attributes of
// the stand-ins for gunicorn's Arbiter (server) and Worker it receives.
type HookCall struct {
	Hook string `json:"hook"`
	// Reload: run the configuration file again first, for its hooks as
	// they are now (HUP).
	Reload bool `json:"reload,omitempty"`
	// Settings, with Reload, are the reloaded settings by gunicorn's
	// names (config.Config.Settings), for the hooks' server.cfg.
	Settings map[string]string `json:"settings,omitempty"`
	Server   HookServer        `json:"server"`
	Worker   *HookWorker       `json:"worker,omitempty"`
	// Extra are the arguments after server (nworkers_changed's new and old
	// numbers of workers; old is None the first time).
	Extra []any `json:"extra,omitempty"`
}

// HookServer is what the server argument of a master hook carries.
type HookServer struct {
	Pid        int `json:"pid"`         // the master's
	NumWorkers int `json:"num_workers"` // the workers it keeps running
}

// HookWorker is what the worker argument of pre_fork and child_exit
// carries. Pid is the worker's app runtime, the process the app ran in
// (gunicorn's worker), nil before it started; Ppid gorn's worker process;
// Age its spawn number.
type HookWorker struct {
	Pid  *int `json:"pid"`
	Ppid int  `json:"ppid,omitempty"`
	Age  int  `json:"age"`
}

// HookRunner runs the master hooks in a Python process of their own
// (worker.StartHooksProcess): gunicorn runs them in its master, which is a
// Python program; gorn's is not. The hooks run one at a time, in the order
// they are called, so state one hook leaves (a metrics server started by
// when_ready) is there for the next. Calls are JSON lines on the process's
// standard input, written by a goroutine of the runner's own so that a
// slow hook never holds up the master; the process answers each with a
// line on its standard output.
type HookRunner struct {
	cmd     *exec.Cmd
	calls   chan []byte    // lines for writeCalls; closed by Close
	replies chan hookReply // answers, from readReplies
	quit    chan struct{}  // closed by Close: readReplies stops
	read    chan struct{}  // closed when readReplies has returned
	written chan struct{}  // closed when writeCalls has returned
	broken  atomic.Bool    // a call could not be written: the process is gone
	next    int            // the last call's id
	log     *slog.Logger
}

type hookReply struct {
	ID int  `json:"id"`
	OK bool `json:"ok"`
}

// hookQueue bounds the calls waiting for the process; an asynchronous call
// beyond it is dropped, with a warning.
const hookQueue = 1024

// StartHooks starts the process that runs cfg's master hooks; their log
// lines go to errorLog (the process's standard error).
func StartHooks(cfg *config.Config, errorLog *os.File, log *slog.Logger) (*HookRunner, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting the master's server hooks: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("starting the master's server hooks: %w", err)
	}
	cmd, err := worker.StartHooksProcess(cfg, os.Getpid(), inR, outW, errorLog)
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	h := &HookRunner{
		cmd: cmd, calls: make(chan []byte, hookQueue), replies: make(chan hookReply, 16),
		quit: make(chan struct{}), read: make(chan struct{}), written: make(chan struct{}), log: log,
	}
	go h.writeCalls(inW)
	go h.readReplies(outR)
	return h, nil
}

// writeCalls writes the calls to the process's standard input until Close,
// then closes it (the process reads its end and exits).
func (h *HookRunner) writeCalls(in *os.File) {
	defer close(h.written)
	defer in.Close()
	for line := range h.calls {
		if h.broken.Load() {
			continue
		}
		if _, err := in.Write(line); err != nil && h.broken.CompareAndSwap(false, true) {
			h.log.Error("The process running the master's server hooks is gone; they no longer run", "err", err)
		}
	}
}

// readReplies passes the process's answers on until its output ends or
// Close.
func (h *HookRunner) readReplies(out *os.File) {
	defer close(h.read)
	defer out.Close()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var r hookReply
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue
		}
		select {
		case h.replies <- r:
		case <-h.quit:
			return
		}
	}
}

// Call implements Hooks.
func (h *HookRunner) Call(c HookCall, wait bool) bool {
	if h.broken.Load() {
		return false
	}
	for drained := false; !drained; { // answers to earlier calls
		select {
		case <-h.replies:
		default:
			drained = true
		}
	}
	h.next++
	id := h.next
	line, err := json.Marshal(struct {
		ID int `json:"id"`
		HookCall
	}{id, c})
	if err != nil {
		h.log.Error("Cannot run the "+c.Hook+" hook", "err", err)
		return false
	}
	line = append(line, '\n')
	timer := time.NewTimer(HookWait)
	defer timer.Stop()
	if !wait {
		select {
		case h.calls <- line:
		default:
			h.log.Warn(fmt.Sprintf("The master's server hooks are %d calls behind; the %s hook is dropped", hookQueue, c.Hook))
		}
		return true
	}
	select {
	case h.calls <- line:
	case <-timer.C:
		h.log.Warn(fmt.Sprintf("The master's server hooks are %d calls behind; the %s hook is dropped", hookQueue, c.Hook))
		return false
	}
	for {
		select {
		case r := <-h.replies:
			if r.ID == id {
				return r.OK
			}
		case <-h.read:
			if h.broken.CompareAndSwap(false, true) {
				h.log.Error("The process running the master's server hooks exited; they no longer run")
			}
			return false
		case <-timer.C:
			h.log.Warn(fmt.Sprintf("The %s hook did not return within %s; going on without it", c.Hook, HookWait))
			return false
		}
	}
}

// ReopenLogs implements Hooks: the process reopens the error log on
// SIGUSR1, between two hooks or during one.
func (h *HookRunner) ReopenLogs() {
	h.cmd.Process.Signal(syscall.SIGUSR1)
}

// Close implements Hooks: the process reads the end of its input once it
// has run the queued hooks, and exits; one that takes longer than HookWait
// is killed.
func (h *HookRunner) Close() {
	close(h.calls)
	exited := make(chan struct{})
	go func() {
		h.cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(HookWait):
		h.log.Warn(fmt.Sprintf("The master's server hooks did not finish within %s; killing their process", HookWait))
		h.cmd.Process.Kill()
		<-exited
	}
	close(h.quit)
	<-h.read
	<-h.written
}
