// Package worker is gorn's worker process: it serves HTTP on the listeners
// inherited from the master and runs each request in its Python app
// runtime, which it starts, supervises and restarts.
package worker

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/balance"
	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/forwarded"
	"github.com/gorn-project/gorn/http1"
	"github.com/gorn-project/gorn/httpguard"
	"github.com/gorn-project/gorn/internal/rawio"
	"github.com/gorn-project/gorn/logs"
	"github.com/gorn-project/gorn/metrics"
	"github.com/gorn-project/gorn/protocol"
	"github.com/gorn-project/gorn/proxyproto"
	"github.com/gorn-project/gorn/statsd"
	"github.com/gorn-project/gorn/tcplisten"
	"github.com/gorn-project/gorn/tlsconf"
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
	// MaxRequests is this worker's --max-requests, jitter included; 0
	// disables recycling.
	MaxRequests int `json:"max_requests"`
	// MetricsFD is the inherited metrics scoreboard memfd and MetricsSlot
	// the worker's slot in it (see package metrics); MetricsFD 0 means
	// the worker counts nothing.
	MetricsFD   int `json:"metrics_fd,omitempty"`
	MetricsSlot int `json:"metrics_slot,omitempty"`
	// BalanceFD is the inherited connection balance board memfd and
	// BalanceSeat the worker's seat in it (see package balance);
	// BalanceFD 0 means the worker accepts as if it were alone.
	BalanceFD   int `json:"balance_fd,omitempty"`
	BalanceSeat int `json:"balance_seat,omitempty"`
	// Age is the worker's spawn number (1 for the master's first), which
	// server hooks see as worker.age, as gunicorn's.
	Age int `json:"age,omitempty"`
}

// SpecEnv is the environment variable that holds a worker's Spec; its
// presence makes the gorn binary run as a worker.
const SpecEnv = "GORN_WORKER"

// Main runs a worker process and returns its exit code.
func Main(spec *Spec, log *slog.Logger) int {
	// Signals are handled from the very start, so a stop during boot is
	// not lost (a TERM before this kills the worker without its "Worker
	// exiting" line): TERM drains, INT and QUIT stop at once, USR1 reopens
	// logs.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1)
	signal.Ignore(syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGWINCH, syscall.SIGUSR2)
	cfg := spec.Config
	pid := os.Getpid()
	// --statsd-host: this worker's requests and log warnings and errors.
	var stats *statsd.Client
	if cfg.StatsdHost != "" {
		var err error
		if stats, err = statsd.Dial(cfg.StatsdHost, cfg.StatsdPrefix, cfg.DogstatsdTags); err != nil {
			log.Warn("Cannot send statsd metrics", "err", err)
		}
		defer stats.Close()
		log = slog.New(statsd.NewLogHandler(log.Handler(), stats))
	}
	// --log-syslog: this worker's error log lines, and its access log.
	var syslog *logs.Syslog
	if cfg.Syslog {
		var err error
		if syslog, err = logs.DialSyslog(cfg.SyslogTo, cfg.SyslogFacility); err != nil {
			log.Warn("Cannot send to syslog", "err", err)
		}
		defer syslog.Close()
		log = slog.New(logs.NewSyslogHandler(log.Handler(), syslog, logs.SyslogTag(cfg.SyslogPrefix, cfg.Name, "error"), pid))
	}
	exiting := func() { log.Info(fmt.Sprintf("Worker exiting (pid: %d)", pid)) }

	ctrlFile := os.NewFile(uintptr(spec.ControlFD), "control")
	ctrlConn, err := net.FileConn(ctrlFile)
	ctrlFile.Close()
	if err != nil {
		log.Error("Worker cannot use its control socket", "err", err)
		return ExitError
	}
	ctrl := &control{conn: ctrlConn}
	defer ctrlConn.Close()
	// bootFailed tells the master why the worker could not boot, and exits
	// with be's code.
	bootFailed := func(be *BootError) int {
		ctrl.sendJSON(protocol.WorkerBootError, be)
		exiting()
		return be.Code
	}

	var lns []net.Listener
	for i, l := range spec.Listeners {
		ln, err := inheritListener(3 + i)
		if err != nil {
			log.Error("Worker cannot use an inherited listener", "addr", l.Addr, "err", err)
			return ExitError
		}
		lns = append(lns, ln)
	}
	// The TLS configuration is built once, shared by every connection. The
	// master checked the files; one that broke since is a boot failure.
	tlsCfg, err := tlsconf.New(cfg)
	if err != nil {
		return bootFailed(&BootError{Code: ExitBootError, Message: err.Error()})
	}
	// The proxy settings: config.Finish checked them.
	trusted, _ := forwarded.ParseAllowList(cfg.ForwardedAllowIPs)
	ppMode, _ := proxyproto.ParseMode(cfg.ProxyProtocol)
	ppAllow, _ := forwarded.ParseAllowList(cfg.ProxyAllowFrom)
	forwarders, _ := forwarded.ParseHeaderNames(cfg.ForwarderHeaders)
	schemeHeaders, _ := forwarded.ParseSchemeHeaders(cfg.SecureSchemeHeaders)
	ppOpts := &proxyproto.Options{Mode: ppMode, Allow: ppAllow, Timeout: cfg.HeaderTimeout, Log: log}
	guard := &httpguard.Config{RequestLine: cfg.LimitRequestLine, Fields: cfg.LimitRequestFields, FieldSize: cfg.LimitRequestFieldSize, Body: cfg.LimitRequestBody, HeaderMap: httpguard.HeaderMap(cfg.HeaderMap), PermitObsFold: cfg.PermitObsoleteFolding, Forwarder: forwarders.Has}
	counts, err := metrics.OpenSlot(spec.MetricsFD, spec.MetricsSlot)
	if err != nil {
		log.Warn("Worker cannot count its requests for the metrics", "err", err)
	}
	if err := batchScheduling(); err != nil {
		log.Warn("Worker keeps the default CPU scheduling policy", "err", err)
	}
	seat, err := balance.Open(spec.BalanceFD, spec.BalanceSeat)
	if err != nil {
		log.Warn("Worker cannot balance connections with its peers", "err", err)
	}
	defer seat.Close()

	// The control socket's end means the master is gone.
	masterGone := make(chan struct{})
	go ctrl.watch(masterGone)

	sup := newSupervisor(cfg, log, spec.Argv, spec.Age)
	booted := make(chan error, 1)
	go func() { booted <- sup.boot() }()
	reopen := false // USR1 while booting: reopen the logs once booted
	for waiting := true; waiting; {
		select {
		case err := <-booted:
			waiting = false
			if err == nil {
				break
			}
			var be *BootError
			if !errors.As(err, &be) {
				// A runtime that died or hung while importing: a boot
				// failure, as gunicorn's WORKER_BOOT_ERROR.
				be = &BootError{Code: ExitBootError, Message: err.Error()}
			}
			return bootFailed(be)
		case s := <-sigs:
			if s == syscall.SIGUSR1 {
				reopen = true
				continue
			}
			sup.abortBoot()
			<-booted
			if rt := sup.current(); rt != nil {
				rt.kill()
				<-rt.exited
			}
			exiting()
			return ExitOK
		case <-masterGone:
			sup.abortBoot()
			<-booted
			exiting()
			return ExitOK
		}
	}
	rt := sup.current()
	if reopen {
		reopenLogs(cfg, nil, sup, log)
	}

	// The access log opens before the worker counts as ready: a worker
	// that cannot write it fails its boot (a HUP that names such a file
	// keeps the old workers), rather than exiting once ready, again and
	// again.
	var access *accessLog
	accessSyslog := cfg.AccessToSyslog()
	if cfg.AccessLog != "" || accessSyslog {
		var f *logs.File // nil: syslog only, as gunicorn logs access with --log-syslog alone
		if cfg.AccessLog != "" {
			var err error
			if f, err = logs.OpenFile(cfg.AccessLog, os.Stdout); err != nil {
				rt.kill()
				<-rt.exited
				return bootFailed(&BootError{Code: ExitBootError, Message: fmt.Sprintf("Cannot open the access log: %v", err)})
			}
		}
		var format *logs.AccessFormat
		if cfg.AccessLogFormat != "" {
			if format, err = logs.ParseAccessFormat(cfg.AccessLogFormat); err != nil { // the master checked it
				log.Error("Bad --access-logformat; using the default", "err", err)
			}
		}
		access = &accessLog{w: f, format: format, pid: pid}
		if accessSyslog {
			access.syslog, access.syslogTag = syslog, logs.SyslogTag(cfg.SyslogPrefix, cfg.Name, "access")
		}
	}
	ctrl.sendJSON(protocol.WorkerReady, rt.info)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sup.run(ctx)

	st := &state{slots: newSlots(cfg.Threads, pipelineDepth(cfg.Threads, os.Getenv)), maxRequests: int64(spec.MaxRequests), tired: make(chan struct{}),
		maxConns: int64(cfg.WorkerConnections), closed: make(chan struct{}, 1), seat: seat}
	st.slots.acceptAhead(4, cfg.Workers)
	if seat != nil {
		st.slots.peerIdle, st.slots.idle = seat.PeerIdle, seat.SetIdle
	}
	scriptName := strings.TrimRight(os.Getenv("SCRIPT_NAME"), "/")
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	var servers []httpServer
	var gated []*gatedListener
	serveErr := make(chan error, len(lns))
	var serving sync.WaitGroup // the Serve loops; drain waits for them
	for i, ln := range lns {
		h := &handler{sup: sup, slots: st.slots, state: st, log: log, access: access, stats: stats, scriptName: scriptName, timeout: cfg.Timeout, bodyTimeout: cfg.BodyTimeout, metrics: counts}
		h.serverName, h.serverPort = listenerName(spec.Listeners[i])
		h.scheme, h.trusted, h.schemeHeaders = cfg.URLScheme(), trusted, schemeHeaders
		h.forwarders, h.fwdScriptName = forwarders, forwarders.Has("SCRIPT_NAME")
		h.proxyProtocol = ppMode != proxyproto.Off
		h.headerMap, h.bodyLimit = guard.HeaderMap, guard.Body
		var srv httpServer
		if tlsCfg != nil {
			// net/http, for HTTP/2 by ALPN.
			hs := &http.Server{
				Handler:           h,
				ReadHeaderTimeout: readHeaderTimeout(cfg),
				IdleTimeout:       cfg.KeepAlive,
				ErrorLog:          errLog,
				ConnContext:       connContext,
				ConnState:         st.connState,
				Protocols:         tlsconf.Protocols(true),
				// OPTIONS * goes to the app, as on plain connections
				// and in gunicorn.
				DisableGeneralOptionsHandler: true,
			}
			hs.SetKeepAlivesEnabled(cfg.KeepAlive > 0)
			srv = hs
		} else {
			srv = &http1.Server{
				Handler:           h,
				ReadHeaderTimeout: readHeaderTimeout(cfg),
				IdleTimeout:       cfg.KeepAlive,
				DisableKeepAlives: cfg.KeepAlive <= 0,
				ConnContext:       connContext,
				ConnState:         st.connState,
				Log:               log,
			}
		}
		servers = append(servers, srv)
		gl := newGatedListener(ln, st.slots)
		gl.room = st.waitRoom
		gl.seat = seat
		gl.writeStall = cfg.Timeout
		gated = append(gated, gl)
		serving.Add(1)
		go func() {
			defer serving.Done()
			serveErr <- srv.Serve(serveListener(gl, ppOpts, tlsCfg, guard, log))
		}()
	}
	seat.SetIdle(true) // serving, with nothing in the runtime yet

	tired := st.tired
	heartbeat := time.NewTicker(heartbeatInterval(cfg))
	defer heartbeat.Stop()
	var sweep <-chan time.Time // only a balanced worker has a board to correct
	if seat != nil {
		t := time.NewTicker(idleSweepEvery)
		defer t.Stop()
		sweep = t.C
	}
	graceful := true
	for loop := true; loop; {
		select {
		case s := <-sigs:
			if s == syscall.SIGUSR1 {
				reopenLogs(cfg, access, sup, log)
				continue
			}
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
			exiting()
			return code
		case err := <-serveErr:
			if !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				log.Error("Serving failed", "err", err)
			}
		case <-tired:
			tired = nil // tell the master once
			ctrl.send(protocol.WorkerTired, nil)
		case now := <-sweep:
			st.sweepIdle(now)
		case <-heartbeat.C:
			var payload [4]byte
			if rt := sup.current(); rt != nil {
				binary.LittleEndian.PutUint32(payload[:], uint32(rt.pid()))
			}
			ctrl.send(protocol.WorkerHeartbeat, payload[:])
		}
	}

	if graceful {
		st.slots.stopIdle() // draining: peers must not leave connections to it
		drain(st, gated, servers, &serving, cfg.GracefulTimeout)
		cancel() // the supervisor stops replacing the runtime
		if rt := sup.current(); rt != nil {
			rt.stop(time.Second)
		}
	} else {
		cancel()
		for _, srv := range servers {
			srv.Close()
		}
		if rt := sup.current(); rt != nil {
			rt.interrupt()
			<-rt.exited
		}
	}
	exiting()
	return ExitOK
}

// inheritListener serves the listening socket on descriptor fd: a TCP
// socket with package tcplisten, anything else (a Unix socket) with
// net.FileListener. Either way the listener is a close-on-exec duplicate
// (Python never inherits it) and fd is closed.
func inheritListener(fd int) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	ln, err := tcplisten.FromFD(fd)
	if errors.Is(err, tcplisten.ErrNotTCP) {
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, err
		}
		return rawio.Listener{Listener: ln}, nil
	}
	return ln, err
}

// drain stops accepting and lets every connection finish: requests in
// flight complete, each response from now on carries Connection: close,
// and idle keep-alive connections are answered once more (with
// Connection: close) or close at their keep-alive timeout, so a client
// never sees a connection cut under a request it just sent. Whatever is
// still open after grace is closed.
func drain(st *state, gated []*gatedListener, servers []httpServer, serving *sync.WaitGroup, grace time.Duration) {
	st.draining.Store(true)
	for _, gl := range gated {
		gl.Close()
	}
	// Once the Serve loops have returned, every connection they accepted
	// has been counted in st.open (StateNew runs before Serve accepts
	// again), so open == 0 below cannot miss a connection just accepted.
	serving.Wait()
	deadline := time.Now().Add(grace)
	for st.open.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, srv := range servers {
		srv.Close()
	}
}

// httpServer is what serves a listener: package http1 on plain
// connections, net/http over TLS (which may negotiate HTTP/2).
type httpServer interface {
	Serve(net.Listener) error
	Close() error
}

// serveListener stacks the per-connection wrappers on a gated listener,
// bottom up: [PROXY protocol] → TLS (when on) → HTTP/1 guard.
func serveListener(gl *gatedListener, pp *proxyproto.Options, tlsCfg *tls.Config, guard *httpguard.Config, log *slog.Logger) net.Listener {
	var l net.Listener = proxyproto.NewListener(gl, pp)
	if tlsCfg != nil {
		l = tlsconf.NewListener(l, tlsCfg, log)
	}
	l = &httpguard.Listener{Listener: l, Config: guard}
	return l
}

// reopenLogs reopens the access log, points this worker's standard error
// at a fresh open of the error log, and tells the runtime to do the same.
func reopenLogs(cfg *config.Config, access *accessLog, sup *supervisor, log *slog.Logger) {
	if access != nil && access.w != nil {
		if err := access.w.Reopen(); err != nil {
			log.Error("Cannot reopen the access log", "err", err)
		}
	}
	if cfg.ErrorLog != "" && cfg.ErrorLog != "-" {
		fd, err := unix.Open(cfg.ErrorLog, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			log.Error("Cannot reopen the error log", "err", err)
		} else {
			unix.Dup3(fd, 2, 0)
			if cfg.CaptureOutput {
				unix.Dup3(fd, 1, 0) // --capture-output: standard output is the error log too
			}
			unix.Close(fd)
		}
	}
	if rt := sup.current(); rt != nil {
		rt.send(protocol.AppendFrame(nil, protocol.ReopenLogs, 0, 0, nil))
	}
}

// state is what the handlers of all listeners share.
type state struct {
	slots       *slots
	draining    atomic.Bool  // answer with Connection: close
	open        atomic.Int64 // open client connections
	served      atomic.Int64 // requests completed
	maxRequests int64
	tired       chan struct{} // closed once maxRequests is reached
	tiredOnce   sync.Once

	maxConns int64         // --worker-connections
	closed   chan struct{} // a connection closed (capacity 1)
	seat     *balance.Seat // this worker's line on the balance board; nil: alone
	connsMu  sync.Mutex
	conns    map[*slotConn]struct{} // the open HTTP/1 connections, for sweepIdle and waitRoom
}

// A slotConn's idle word (slotConn.idle) is 0 while the connection is not
// idle; while it is, it holds when it went idle, in nanoseconds of
// monoClock, shifted left by one, and in its lowest bit whether the
// balance board has stopped counting it (see sweepIdle). Each request
// sets it twice with one atomic operation each, and takes no lock.
const idleUncountedBit = 1

// monoEpoch is the origin of monoClock.
var monoEpoch = time.Now()

// monoClock returns the monotonic clock in nanoseconds since monoEpoch:
// one clock read, where time.Now makes two.
func monoClock() int64 { return int64(time.Since(monoEpoch)) }

// idleWord is the idle word of a connection idle since t (monoClock).
func idleWord(t int64) int64 { return max(t, 1) << 1 }

// idleSince is when a connection whose idle word is w went idle
// (monoClock).
func idleSince(w int64) int64 { return w >> 1 }

// idleUncounted is how long a keep-alive connection stays idle before the
// balance board stops counting it as this worker's load: a connection that
// has sent nothing for a second (a health check's, a spare in a proxy's
// keep-alive pool) must not push new busy connections onto the other
// workers. Shorter idle spells count: a client between two requests is
// still the worker's load.
const idleUncounted = time.Second

// idleSweepEvery is how often a balanced worker looks for connections idle
// longer than idleUncounted.
const idleSweepEvery = idleUncounted / 4

// requestDone counts a completed request against --max-requests.
func (s *state) requestDone() {
	if n := s.served.Add(1); s.maxRequests > 0 && n >= s.maxRequests {
		s.tiredOnce.Do(func() { close(s.tired) })
	}
}

// connState counts open connections, keeps the set of open HTTP/1
// connections, marks them idle or not, and lets the accept loop go on when
// a connection closes before its first request.
func (s *state) connState(c net.Conn, cs http.ConnState) {
	switch cs {
	case http.StateNew:
		s.open.Add(1)
		s.seat.AddConns(1)
		// HTTP/2 (over TLS): net/http's HTTP/2 server reports Idle and
		// Active with a conn value of its own, never Closed, so it is not
		// tracked. It closes when idle for --keep-alive anyway.
		if sc := findSlotConn(c); sc != nil {
			s.connsMu.Lock()
			if s.conns == nil {
				s.conns = make(map[*slotConn]struct{})
			}
			s.conns[sc] = struct{}{}
			s.connsMu.Unlock()
		}
	case http.StateIdle:
		if sc := findSlotConn(c); sc != nil {
			sc.idle.Store(idleWord(monoClock()))
		}
	case http.StateActive:
		if sc := findSlotConn(c); sc != nil {
			s.unidle(sc)
		}
	case http.StateClosed, http.StateHijacked:
		sc := findSlotConn(c)
		if sc != nil {
			s.unidle(sc)
			s.connsMu.Lock()
			delete(s.conns, sc)
			s.connsMu.Unlock()
		}
		s.open.Add(-1)
		s.seat.AddConns(-1)
		select {
		case s.closed <- struct{}{}:
		default:
		}
		if sc != nil {
			sc.begin()
		}
	}
}

// unidle marks sc not idle; if the balance board had stopped counting it,
// it counts again.
func (s *state) unidle(sc *slotConn) {
	if w := sc.idle.Swap(0); w&idleUncountedBit != 0 {
		s.seat.AddConns(1)
	}
}

// sweepIdle stops counting, on the balance board, the keep-alive
// connections that have been idle for idleUncounted at now; unidle counts
// them again.
func (s *state) sweepIdle(now time.Time) {
	at := int64(now.Sub(monoEpoch))
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	for sc := range s.conns {
		w := sc.idle.Load()
		if w != 0 && w&idleUncountedBit == 0 && at-idleSince(w) >= int64(idleUncounted) &&
			sc.idle.CompareAndSwap(w, w|idleUncountedBit) { // else it just went active
			s.seat.AddConns(-1)
		}
	}
}

// waitRoom returns once the worker has fewer than --worker-connections
// connections open; while it has not, it closes the longest-idle
// keep-alive connection, so idle clients cannot crowd out new ones.
func (s *state) waitRoom(ctx context.Context) error {
	for s.maxConns > 0 && s.open.Load() >= s.maxConns {
		s.connsMu.Lock()
		var oldest *slotConn
		var since int64
		for sc := range s.conns {
			if w := sc.idle.Load(); w != 0 && (oldest == nil || idleSince(w) < since) {
				oldest, since = sc, idleSince(w)
			}
		}
		s.connsMu.Unlock()
		if oldest != nil {
			s.unidle(oldest)
			oldest.Close()
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-s.closed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
	return nil
}

// readHeaderTimeout bounds how long a connection may take to send its
// request headers (--header-timeout; 0 disables).
func readHeaderTimeout(cfg *config.Config) time.Duration { return cfg.HeaderTimeout }

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

// pipelineDepth is how many requests beyond --threads a worker may queue
// in its runtime, so Python finds its next request already there instead
// of idling while Go works, and both sides read and write in batches.
// Only requests on connections the worker already has queue there: new
// connections are accepted only while fewer than --threads requests are
// in, and only the first --threads + bodyQueue carry the start of their
// body. The default is 32, or --threads if larger (docs/performance.md,
// entries 2, 20 and 21). $GORN_PIPELINE, read from env, overrides it (0
// disables).
func pipelineDepth(threads int, env func(string) string) int {
	if v, err := strconv.Atoi(env("GORN_PIPELINE")); err == nil && v >= 0 {
		return v
	}
	return max(defaultPipeline, threads)
}

// defaultPipeline is pipelineDepth's default, in requests.
const defaultPipeline = 32
