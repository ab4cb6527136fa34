// Package worker is gorn's worker process: it serves HTTP on the listeners
// inherited from the master and runs each request in its Python app
// runtime, which it starts, supervises and restarts.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/logs"
	"github.com/gorn-project/gorn/protocol"
)

// Exit codes of a worker, as gunicorn's.
const (
	ExitOK        = 0
	ExitError     = 1
	ExitBootError = 3 // importing the app raised
	ExitAppLoad   = 4 // the app is missing or not callable
)

// Listener describes one inherited listener: fd 3+i for the i-th.
type Listener struct {
	// Network is "tcp" or "unix".
	Network string `json:"network"`
	// Addr is the bound address, for SERVER_NAME and SERVER_PORT when a
	// request has no Host header.
	Addr string `json:"addr"`
}

// Spec is what the master hands a worker in the GORN_WORKER environment
// variable: the configuration and the inherited descriptors.
type Spec struct {
	Config    *config.Config `json:"config"`
	Listeners []Listener     `json:"listeners"`
	// ControlFD is the worker's end of its socketpair with the master.
	ControlFD int `json:"control_fd"`
	// Argv is the master's command line, given to the app as sys.argv.
	Argv []string `json:"argv"`
}

// SpecEnv is the environment variable that holds a worker's Spec; its
// presence makes the gorn binary run as a worker.
const SpecEnv = "GORN_WORKER"

// Main runs a worker process and returns its exit code.
func Main(spec *Spec, log *slog.Logger) int {
	cfg := spec.Config
	pid := os.Getpid()

	ctrlFile := os.NewFile(uintptr(spec.ControlFD), "control")
	ctrlConn, err := net.FileConn(ctrlFile)
	ctrlFile.Close()
	if err != nil {
		log.Error("Worker cannot use its control socket", "err", err)
		return ExitError
	}
	ctrl := &control{conn: ctrlConn}
	defer ctrlConn.Close()

	var lns []net.Listener
	for i, l := range spec.Listeners {
		f := os.NewFile(uintptr(3+i), l.Addr)
		ln, err := net.FileListener(f) // a CLOEXEC dup: Python never inherits it
		f.Close()
		if err != nil {
			log.Error("Worker cannot use an inherited listener", "addr", l.Addr, "err", err)
			return ExitError
		}
		lns = append(lns, ln)
	}

	// Stop signals are handled from the start, so a stop during boot is
	// not lost.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	signal.Ignore(syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGWINCH, syscall.SIGUSR2)

	sup := newSupervisor(cfg, log, spec.Argv)
	if err := sup.boot(); err != nil {
		var be *BootError
		if errors.As(err, &be) {
			ctrl.sendJSON(protocol.WorkerBootError, be)
			log.Info(fmt.Sprintf("Worker exiting (pid: %d)", pid))
			return be.Code
		}
		log.Error("Worker failed to boot", "err", err)
		ctrl.sendJSON(protocol.WorkerBootError, &BootError{Code: ExitBootError, Message: err.Error()})
		log.Info(fmt.Sprintf("Worker exiting (pid: %d)", pid))
		return ExitBootError
	}
	rt := sup.current()
	ctrl.sendJSON(protocol.WorkerReady, rt.info)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sup.run(ctx)

	var access *accessLog
	if cfg.AccessLog != "" {
		f, err := logs.Open(cfg.AccessLog, os.Stdout)
		if err != nil {
			log.Error("Cannot open the access log", "err", err)
			return ExitError
		}
		access = &accessLog{w: f}
	}

	sl := newSlots(cfg.Threads)
	scriptName := strings.TrimRight(os.Getenv("SCRIPT_NAME"), "/")
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	var servers []*http.Server
	serveErr := make(chan error, len(lns))
	for i, ln := range lns {
		h := &handler{sup: sup, slots: sl, log: log, access: access, scriptName: scriptName, timeout: cfg.Timeout}
		h.serverName, h.serverPort = listenerName(spec.Listeners[i])
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout(cfg),
			IdleTimeout:       cfg.KeepAlive,
			ErrorLog:          errLog,
			ConnContext:       connContext,
			ConnState:         connState,
		}
		srv.SetKeepAlivesEnabled(cfg.KeepAlive > 0)
		servers = append(servers, srv)
		gl := newGatedListener(ln, sl)
		go func() { serveErr <- srv.Serve(gl) }()
	}

	// The control socket's end means the master is gone.
	masterGone := make(chan struct{})
	go ctrl.watch(masterGone)
	heartbeat := time.NewTicker(heartbeatInterval(cfg))
	defer heartbeat.Stop()

	graceful := true
	for loop := true; loop; {
		select {
		case s := <-sigs:
			graceful = s == syscall.SIGTERM
			loop = false
		case <-masterGone:
			log.Info("Master is gone; worker exiting", "pid", pid)
			graceful = false
			loop = false
		case err := <-sup.fatal:
			log.Error("The app runtime could not be restarted", "err", err)
			var be *BootError
			code := ExitBootError
			if errors.As(err, &be) {
				ctrl.sendJSON(protocol.WorkerBootError, be)
				code = be.Code
			}
			cancel()
			for _, srv := range servers {
				srv.Close()
			}
			log.Info(fmt.Sprintf("Worker exiting (pid: %d)", pid))
			return code
		case err := <-serveErr:
			if !errors.Is(err, http.ErrServerClosed) {
				log.Error("Serving failed", "err", err)
			}
		case <-heartbeat.C:
			ctrl.send(protocol.WorkerHeartbeat, nil)
		}
	}
	cancel() // the supervisor stops replacing the runtime

	if graceful {
		shutdownCtx, stop := context.WithTimeout(context.Background(), cfg.GracefulTimeout)
		var wg sync.WaitGroup
		for _, srv := range servers {
			wg.Go(func() { srv.Shutdown(shutdownCtx) })
		}
		wg.Wait()
		stop()
		if rt := sup.current(); rt != nil {
			rt.stop(time.Second)
		}
	} else {
		for _, srv := range servers {
			srv.Close()
		}
		if rt := sup.current(); rt != nil {
			rt.kill()
			<-rt.exited
		}
	}
	log.Info(fmt.Sprintf("Worker exiting (pid: %d)", pid))
	return ExitOK
}

// readHeaderTimeout bounds how long a connection may take to send its
// request headers.
func readHeaderTimeout(cfg *config.Config) time.Duration {
	if cfg.Timeout > 0 {
		return cfg.Timeout
	}
	return 30 * time.Second
}

// heartbeatInterval is how often a worker tells the master it is alive.
func heartbeatInterval(cfg *config.Config) time.Duration {
	if cfg.Timeout > 0 {
		return max(cfg.Timeout/4, 100*time.Millisecond)
	}
	return 5 * time.Second
}

// listenerName is SERVER_NAME and SERVER_PORT for requests without Host.
func listenerName(l Listener) (string, string) {
	if l.Network != "tcp" {
		return l.Addr, ""
	}
	host, port, err := net.SplitHostPort(l.Addr)
	if err != nil {
		return l.Addr, ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host, port
}

// control is the worker's end of its socketpair with the master.
type control struct {
	mu   sync.Mutex
	conn net.Conn
}

func (c *control) send(t protocol.Type, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.conn.Write(protocol.AppendFrame(nil, t, 0, 0, payload))
}

func (c *control) sendJSON(t protocol.Type, v any) {
	b, _ := json.Marshal(v)
	c.send(t, b)
}

// watch reads the control socket until it ends, then closes gone.
func (c *control) watch(gone chan<- struct{}) {
	r := protocol.NewReader(c.conn)
	for {
		if _, err := r.ReadFrame(); err != nil {
			close(gone)
			return
		}
	}
}

// DecodeSpec reads a worker's Spec from its environment variable value.
func DecodeSpec(s string) (*Spec, error) {
	var spec Spec
	if err := json.Unmarshal([]byte(s), &spec); err != nil {
		return nil, fmt.Errorf("decoding the worker spec: %w", err)
	}
	if spec.Config == nil {
		return nil, errors.New("the worker spec has no configuration")
	}
	return &spec, nil
}
