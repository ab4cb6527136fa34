package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/internal/proc"
	"github.com/gorn-project/gorn/internal/rawio"
	"github.com/gorn-project/gorn/logs"
	"github.com/gorn-project/gorn/protocol"
	pyruntime "github.com/gorn-project/gorn/worker/runtime"
)

// BootError is an app that failed to load: Code is gunicorn's exit code (3
// when importing the module raised, 4 when it holds no usable app) and
// Message the traceback or reason.
type BootError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *BootError) Error() string { return e.Message }

// ReadyInfo is the payload of the runtime's Ready frame.
type ReadyInfo struct {
	Protocol int    `json:"protocol"`
	Python   string `json:"python"`
	Pid      int    `json:"pid"`
	// Access says the runtime logs the requests its app answers through
	// Python's gunicorn.access logger (a logging configuration gives that
	// logger somewhere to write): the worker logs only those it answers
	// itself.
	Access bool `json:"access,omitempty"`
}

// runtimeProc is one running app runtime: the python3 child and the two
// pipes to it. Its reader goroutine owns the frames coming back and hands
// each to the call it belongs to.
type runtimeProc struct {
	cmd    *exec.Cmd
	pipes  *pipes
	info   ReadyInfo
	log    *slog.Logger
	shared *sharedBodies // nil if it could not be made: bodies go through the pipes

	wmu      sync.Mutex // guards out, spare and flushing; see send
	out      []byte     // frames waiting to be written
	spare    []byte     // the last written buffer, for reuse
	flushing bool       // a sender is writing out; it writes what others add

	timeoutOnce sync.Once
	// abortGrace and intGrace are how long the runtime may take to exit
	// after dumpSignal (--timeout) and SIGINT (a quick stop) before it is
	// killed: longer when the configuration file's worker_abort or
	// worker_int hook, or its worker_exit, runs then.
	abortGrace, intGrace time.Duration

	mu      sync.Mutex // guards calls, order and nextID
	calls   map[uint32]*call
	order   []*call // outstanding calls, oldest first: the runtime starts them in this order
	nextID  uint32
	threads int // how many calls the runtime runs at once (--threads)

	done   chan struct{} // closed when the reader stops: the runtime is gone
	exited chan struct{} // closed once cmd.Wait has returned
	status error         // cmd.Wait's result, set before exited is closed
}

// call is one request's stream on a runtime.
type call struct {
	id     uint32
	shared *sharedBodies // the runtime's, for freeing Shared frames' slots
	mu     sync.Mutex
	events []protocol.Frame
	first  [1]protocol.Frame // events' first backing array: most calls get one frame at a time
	closed bool              // the handler is done: frames are freed, not queued
	// bodySlot is 1 + the shared body slot holding the stream's last
	// SharedBody, 0 if none: the handler sets it, the reader frees it when
	// the runtime is done with the bytes (its next Read, or the end). Not
	// before, even when the handler has left: the app may still be reading
	// the body. The handler sets it only while answering a Read, when the
	// runtime is waiting for the bytes and cannot end the stream unless
	// the handler cancels it, which it does only on its way out.
	bodySlot atomic.Uint32
	notify   chan struct{} // capacity 1: "events has something" (or running changed)
	release  func()        // frees the worker slot: through releaseSlot, once
	released atomic.Bool
	// running is set once the call is among the --threads oldest the
	// runtime has: from then on it runs in Python rather than waiting in
	// the runtime's queue, and --timeout counts.
	running atomic.Bool
}

// releaseSlot frees the call's worker slot; only the first call acts.
func (c *call) releaseSlot() {
	if c.released.CompareAndSwap(false, true) {
		c.release()
	}
}

func (c *call) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// push queues a frame for the handler; a frame for a closed call is
// freed instead.
func (c *call) push(f protocol.Frame) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.free(f)
		return
	}
	c.events = append(c.events, f)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// free gives a frame's resources back once it has been handled (or will
// never be): a Shared frame's slot to the runtime, a pooled payload to
// the pool.
func (c *call) free(f protocol.Frame) { freeFrame(c.shared, f) }

// freeFrame gives a frame's resources back: a Shared frame's slot in s,
// a pooled payload to the pool.
func freeFrame(s *sharedBodies, f protocol.Frame) {
	if f.Type == protocol.Shared {
		s.release(f.Payload)
	}
	protocol.PutPayload(f.Payload)
}

// recycle frees handled frames and returns events emptied.
func (c *call) recycle(events []protocol.Frame) []protocol.Frame {
	for _, f := range events {
		c.free(f)
	}
	clear(events)
	return events[:0]
}

// releaseBody frees the body slot of the stream's last SharedBody, if it
// holds one.
func (c *call) releaseBody() {
	if s := c.bodySlot.Swap(0); s != 0 {
		c.shared.releaseBodySlot(s - 1)
	}
}

// close marks the handler done with the call: frames still queued, and
// any that arrive later (the runtime ending a cancelled stream), are
// freed.
func (c *call) close() {
	c.mu.Lock()
	c.closed = true
	left := c.events
	c.events = nil
	c.mu.Unlock()
	c.recycle(left)
}

func (c *call) take(dst []protocol.Frame) []protocol.Frame {
	c.mu.Lock()
	dst = append(dst, c.events...)
	clear(c.events)
	c.events = c.events[:0]
	c.mu.Unlock()
	return dst
}

// runtimeConfig is the JSON the runtime reads from its argv.
type runtimeConfig struct {
	App          string   `json:"app"`
	Threads      int      `json:"threads"`
	PythonPath   []string `json:"pythonpath"`
	LogLevel     string   `json:"log_level"`
	LogPid       int      `json:"log_pid"`
	Multiprocess bool     `json:"multiprocess"`
	URLScheme    string   `json:"url_scheme"`
	Argv         []string `json:"argv"`
	ErrorLog     string   `json:"error_log"`
	// CaptureOutput: standard output is the error log too (USR1 reopens it).
	CaptureOutput bool `json:"capture_output,omitempty"`
	InFD          int  `json:"in_fd"`  // the runtime reads frames from the worker here
	OutFD         int  `json:"out_fd"` // and writes its frames to the worker here
	// LogConfig, LogConfigJSON and LogConfigDict are --log-config,
	// --log-config-json and --log-config-dict.
	LogConfig     string          `json:"log_config,omitempty"`
	LogConfigJSON string          `json:"log_config_json,omitempty"`
	LogConfigDict json.RawMessage `json:"log_config_dict,omitempty"`
	// HooksFile is the configuration file whose server hooks the runtime
	// runs (config.RuntimeHooks); MasterPid and Workers are what the hooks'
	// server argument says of the master.
	HooksFile string `json:"hooks_file,omitempty"`
	// HooksPath is the directory a python:MODULE HooksFile is imported
	// from (added to the end of sys.path).
	HooksPath string `json:"hooks_path,omitempty"`
	// LoggerClass is --logger-class; ConfigFile the configuration file a
	// __config__.NAME class is in (config.Config.HooksFile).
	LoggerClass string `json:"logger_class,omitempty"`
	ConfigFile  string `json:"config_file,omitempty"`
	// Settings are the settings by gunicorn's names, as Python literals
	// (config.Config.Settings): the hooks' server.cfg and worker.cfg, and
	// the logger class's cfg. Only with HooksFile or LoggerClass.
	Settings  map[string]string `json:"settings,omitempty"`
	MasterPid int               `json:"master_pid,omitempty"`
	Workers   int               `json:"workers,omitempty"`
	WorkerAge int               `json:"worker_age,omitempty"`
	// Syslog is where --log-syslog sends the runtime's error log lines;
	// nil without --log-syslog.
	Syslog *runtimeSyslog `json:"syslog,omitempty"`
	// AccessLog, AccessLogFormat and AccessSyslog are --access-logfile,
	// the --access-logformat in effect, and where --log-syslog sends
	// access lines: set only with a logging configuration, which has the
	// runtime log requests through the gunicorn.access logger.
	AccessLog       string         `json:"access_log,omitempty"`
	AccessLogFormat string         `json:"access_log_format,omitempty"`
	AccessSyslog    *runtimeSyslog `json:"access_syslog,omitempty"`
	// Paste and PasteGlobal are --paste and --paste-global.
	Paste       string            `json:"paste,omitempty"`
	PasteGlobal map[string]string `json:"paste_global,omitempty"`
	// Spew: trace every line of Python to standard output (--spew).
	Spew bool `json:"spew,omitempty"`
	// Check: import the app and exit (--check-config).
	Check bool `json:"check,omitempty"`
	// The shared body memory (see sharedBodies); SharedFD 0 if none.
	SharedFD        int `json:"shared_fd,omitempty"`
	SharedHeader    int `json:"shared_header,omitempty"`
	SharedSlots     int `json:"shared_slots,omitempty"`
	SharedBodySlots int `json:"shared_body_slots,omitempty"`
	SharedSlotSize  int `json:"shared_slot_size,omitempty"`
}

// hookSignalGrace is how long a runtime may run its worker_int or
// worker_abort hook before it is killed: 1 second.
const hookSignalGrace = time.Second

// runtimeSyslog is --log-syslog for the runtime: the address as
// logs.ParseSyslogAddr reads it, the facility's number, and the error log's
// tag.
type runtimeSyslog struct {
	Network  string `json:"network"` // udp, tcp, unixgram, unix, or unix* for either
	Address  string `json:"address"` // HOST:PORT, or a path
	Facility int    `json:"facility"`
	Tag      string `json:"tag"`
}

// newRuntimeSyslog is cfg's --log-syslog for the runtime, nil when off.
// Finish has checked the address and the facility.
func newRuntimeSyslog(cfg *config.Config) *runtimeSyslog {
	if !cfg.Syslog {
		return nil
	}
	network, address, err := logs.ParseSyslogAddr(cfg.SyslogTo)
	if err != nil {
		return nil
	}
	facility, err := logs.ParseSyslogFacility(cfg.SyslogFacility)
	if err != nil {
		return nil
	}
	return &runtimeSyslog{Network: network, Address: address, Facility: facility, Tag: logs.SyslogTag(cfg.SyslogPrefix, cfg.Name, "error")}
}

// runtimeHooksFile is the configuration file for the runtime to take its
// server hooks from: "" unless it defines one of config.RuntimeHooks (the
// runtime would run the file for nothing).
func runtimeHooksFile(cfg *config.Config) string {
	if !cfg.HasHook(config.RuntimeHooks...) {
		return ""
	}
	return cfg.HooksFile
}

// StartHooksProcess starts the Python process that runs the master's server
// hooks (config.MasterHooks) of cfg.HooksFile: the runtime's program in its
// master_hooks mode, which reads one call per line on stdin and answers
// each on stdout, and writes its log lines to stderr (the error log). pid
// is the master's, for those lines. The caller waits for the process.
func StartHooksProcess(cfg *config.Config, pid int, stdin, stdout, stderr *os.File) (*exec.Cmd, error) {
	rc := pythonConfig(cfg, pid)
	rc.HooksFile, rc.Settings = cfg.HooksFile, cfg.Settings()
	boot, err := bootFile(struct {
		runtimeConfig
		MasterHooks bool `json:"master_hooks"`
	}{rc, true})
	if err != nil {
		return nil, err
	}
	defer boot.Close()
	cmd := exec.Command(cfg.Python, "-c", pyruntime.Loader, "3")
	cmd.ExtraFiles = []*os.File{boot}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := proc.Start(cmd); err != nil {
		return nil, fmt.Errorf("starting %s for the master's server hooks: %w", cfg.Python, err)
	}
	return cmd, nil
}

// pythonConfig is what every Python process gorn starts with cfg is told
// (a runtime, --check-config's, the master hooks'): where to import from,
// and how to log, with pid in its error log lines.
func pythonConfig(cfg *config.Config, pid int) runtimeConfig {
	return runtimeConfig{
		PythonPath: cfg.PythonPath, LogLevel: cfg.LogLevel, LogPid: pid, ErrorLog: cfg.ErrorLog, Workers: cfg.Workers, HooksPath: cfg.HooksPath,
		LogConfig: cfg.LogConfig, LogConfigJSON: cfg.LogConfigJSON, LogConfigDict: logConfigDict(cfg), Syslog: newRuntimeSyslog(cfg),
	}
}

// logConfigDict is --log-config-dict as JSON for the runtime; nil for none
// (Finish has checked that it is a JSON object).
func logConfigDict(cfg *config.Config) json.RawMessage {
	if !json.Valid([]byte(cfg.LogConfigDict)) {
		return nil
	}
	return json.RawMessage(cfg.LogConfigDict)
}

// startRuntime starts a runtime and waits, up to cfg.BootTimeout, for it to
// import the app. A *BootError says the app failed to load.
//
// started, if not nil, is called with the process as soon as it runs, so a
// boot can be aborted by killing it.
func startRuntime(cfg *config.Config, log *slog.Logger, argv []string, age int, started func(*runtimeProc)) (*runtimeProc, error) {
	pp, childIn, childOut, err := openPipes()
	if err != nil {
		return nil, err
	}
	// On early returns; closed right after the start.
	defer childIn.Close()
	defer childOut.Close()

	rc := pythonConfig(cfg, os.Getpid())
	rc.App = cfg.App
	rc.Threads = cfg.Threads
	rc.Multiprocess = cfg.Workers > 1
	rc.URLScheme = cfg.URLScheme()
	rc.Argv = argv
	rc.CaptureOutput = cfg.CaptureOutput
	rc.HooksFile = runtimeHooksFile(cfg)
	rc.Spew = cfg.Spew
	if rc.LoggerClass = cfg.LoggerClass; strings.HasPrefix(rc.LoggerClass, "__config__.") {
		rc.ConfigFile = cfg.HooksFile
	}
	if rc.HooksFile != "" || rc.LoggerClass != "" {
		rc.Settings = cfg.Settings()
	}
	if cfg.LogConfig != "" || cfg.LogConfigJSON != "" || cfg.LogConfigDict != "" {
		rc.AccessLog, rc.AccessLogFormat = cfg.AccessLog, cfg.AccessLogFormat
		if rc.AccessLogFormat == "" {
			rc.AccessLogFormat = logs.DefaultAccessFormat
		}
		if cfg.AccessToSyslog() && rc.Syslog != nil {
			as := *rc.Syslog
			as.Tag = logs.SyslogTag(cfg.SyslogPrefix, cfg.Name, "access")
			rc.AccessSyslog = &as
		}
	}
	rc.MasterPid = os.Getppid()
	rc.WorkerAge = age
	rc.Paste = cfg.Paste
	rc.PasteGlobal = pasteGlobal(cfg.PasteGlobal)
	rc.InFD, rc.OutFD = 3, 5
	files := []*os.File{childIn, nil, childOut} // 4: the boot file
	shared, sharedFile, err := newSharedBodies()
	if err != nil {
		log.Warn("Bodies go through the runtime pipes only", "err", err)
	} else {
		defer sharedFile.Close()
		files = append(files, sharedFile)
		rc.SharedFD, rc.SharedHeader, rc.SharedSlots, rc.SharedBodySlots, rc.SharedSlotSize = 6, sharedHeader, sharedSlots, sharedBodySlots, sharedSlotSize
	}
	boot, err := bootFile(rc)
	if err != nil {
		pp.Close()
		return nil, err
	}
	defer boot.Close()
	files[1] = boot
	cmd := exec.Command(cfg.Python, "-c", pyruntime.Loader, "4")
	cmd.ExtraFiles = files
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = proc.Start(cmd)
	// Only the runtime may hold the other ends: its exit must read as EOF.
	childIn.Close()
	childOut.Close()
	boot.Close()
	if err != nil {
		pp.Close()
		if errors.Is(err, fs.ErrPermission) {
			// Typically a --user that cannot reach an interpreter in
			// root's home (a pyenv or a virtualenv under /root).
			return nil, fmt.Errorf("starting the app runtime %s: %w (the workers run as uid %d, gid %d: that user must be able to run the interpreter; give it access, or pick one it can run with --python)",
				cfg.Python, err, os.Getuid(), os.Getgid())
		}
		return nil, fmt.Errorf("starting the app runtime %s: %w", cfg.Python, err)
	}
	rt := &runtimeProc{
		cmd:        cmd,
		pipes:      pp,
		shared:     shared,
		log:        log,
		threads:    max(cfg.Threads, 1),
		abortGrace: 200 * time.Millisecond,
		calls:      make(map[uint32]*call),
		done:       make(chan struct{}),
		exited:     make(chan struct{}),
	}
	// The runtime runs worker_exit after worker_abort and worker_int, as
	// gunicorn's worker: any of them gives it a moment before the kill.
	if cfg.HasHook("worker_abort", "worker_exit") {
		rt.abortGrace = hookSignalGrace
	}
	if cfg.HasHook("worker_int", "worker_exit") {
		rt.intGrace = hookSignalGrace
	}
	go func() {
		rt.status = cmd.Wait()
		close(rt.exited)
		rt.afterExit()
	}()
	if started != nil {
		started(rt)
	}

	r := protocol.NewReader(pp.rfd)
	if cfg.BootTimeout > 0 {
		pp.fromRT.SetReadDeadline(time.Now().Add(cfg.BootTimeout))
	}
	f, err := r.ReadFrame()
	pp.fromRT.SetReadDeadline(time.Time{})
	if err != nil {
		exited := rt.hasExited() // before the kill: a deadline may be afterExit's
		rt.kill()
		pp.Close()
		<-rt.exited
		if errors.Is(err, os.ErrDeadlineExceeded) && !exited {
			return nil, fmt.Errorf("the app did not load within --boot-timeout %s", cfg.BootTimeout)
		}
		if exited || err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("the app runtime exited before it was ready: %s", describeExit(rt.status))
		}
		return nil, fmt.Errorf("reading the runtime handshake: %w", err)
	}
	switch f.Type {
	case protocol.Ready:
		if err := json.Unmarshal(f.Payload, &rt.info); err != nil || rt.info.Protocol != protocol.Version {
			rt.kill()
			pp.Close()
			<-rt.exited
			return nil, fmt.Errorf("the app runtime speaks another protocol: %q", f.Payload)
		}
	case protocol.BootError:
		be := &BootError{Code: 3}
		if err := json.Unmarshal(f.Payload, be); err != nil {
			be.Message = string(f.Payload)
		}
		pp.Close()
		select {
		case <-rt.exited:
		case <-time.After(5 * time.Second):
			rt.kill()
			<-rt.exited
		}
		return nil, be
	default:
		rt.kill()
		pp.Close()
		<-rt.exited
		return nil, fmt.Errorf("the app runtime sent %s before ready", f.Type)
	}
	if rt.hasExited() { // the handshake's deadline reset may have undone afterExit's
		rt.afterExit()
	}
	go rt.readLoop(r)
	return rt, nil
}

// hasExited reports whether cmd.Wait has returned.
func (rt *runtimeProc) hasExited() bool { return isClosed(rt.exited) }

// isClosed reports whether ch, a channel that is only ever closed, is.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// exitDrain is how long the worker keeps reading the runtime's pipe once
// the runtime has exited (1 s).
const exitDrain = time.Second

// afterExit bounds the reading of the pipe from a runtime that has
// exited. EOF normally ends it at once; but a process the app forked
// keeps the runtime's end of the pipe open, and EOF would then not come
// before that process exits. So the read gets a deadline: what the runtime
// wrote before it exited is read within exitDrain, then the read fails and
// the runtime counts as gone.
func (rt *runtimeProc) afterExit() {
	rt.pipes.fromRT.SetReadDeadline(time.Now().Add(exitDrain))
}

// pipes are the worker's ends of the two pipes to a runtime: frames go to
// the runtime on toRT and come back on fromRT. Both are non-blocking, in
// Go's poller, and read and written with raw system calls (package rawio).
//
// Two pipes rather than one socketpair, because a pipe write is the cheaper
// system call: a small write(2) to a pipe costs the runtime less than half
// of a send(2) on a Unix socket, which allocates a buffer (an skb) per call,
// and the runtime makes one per response (docs/architecture.md).
type pipes struct {
	toRT, fromRT *os.File
	wfd, rfd     *rawio.FD // toRT's and fromRT's descriptors, for raw calls
}

// openPipes creates the two pipes and returns the worker's ends, and the
// runtime's: childIn (it reads frames there) and childOut (it writes
// frames there). The runtime's ends stay blocking, as its os.read and
// os.write calls expect; all four are close-on-exec (exec.Cmd's ExtraFiles
// passes on the child's two).
func openPipes() (p *pipes, childIn, childOut *os.File, err error) {
	var in, out [2]int // [read end, write end]
	if err := unix.Pipe2(in[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, nil, fmt.Errorf("creating the pipe to the runtime: %w", err)
	}
	if err := unix.Pipe2(out[:], unix.O_CLOEXEC); err != nil {
		unix.Close(in[0])
		unix.Close(in[1])
		return nil, nil, nil, fmt.Errorf("creating the pipe from the runtime: %w", err)
	}
	// Non-blocking before os.NewFile, which then puts them in the poller.
	errW, errR := unix.SetNonblock(in[1], true), unix.SetNonblock(out[0], true)
	p = &pipes{toRT: os.NewFile(uintptr(in[1]), "to-runtime"), fromRT: os.NewFile(uintptr(out[0]), "from-runtime")}
	childIn, childOut = os.NewFile(uintptr(in[0]), "runtime-in"), os.NewFile(uintptr(out[1]), "runtime-out")
	if err = errors.Join(errW, errR); err == nil {
		if p.wfd, err = rawio.New(p.toRT); err == nil {
			p.rfd, err = rawio.New(p.fromRT)
		}
	}
	if err != nil {
		p.Close()
		childIn.Close()
		childOut.Close()
		return nil, nil, nil, fmt.Errorf("setting up the runtime pipes: %w", err)
	}
	return p, childIn, childOut, nil
}

// Close closes the worker's ends: the runtime reads EOF (and exits), and a
// Read or Write waiting in the poller returns net.ErrClosed.
func (p *pipes) Close() {
	p.toRT.Close()
	p.fromRT.Close()
}

// pasteGlobal turns --paste-global's KEY=VALUE pairs into a map.
func pasteGlobal(kvs []string) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// CheckApp imports the app as a worker's runtime does, in a runtime of its
// own that exits once it has (--check-config): nil when the app loads,
// else an error holding the traceback or gunicorn's message. Bounded by
// --boot-timeout.
func CheckApp(cfg *config.Config, argv []string) error {
	rc := pythonConfig(cfg, os.Getpid())
	rc.App, rc.Argv, rc.Paste, rc.PasteGlobal = cfg.App, argv, cfg.Paste, pasteGlobal(cfg.PasteGlobal)
	rc.Check = true
	boot, err := bootFile(rc)
	if err != nil {
		return err
	}
	defer boot.Close()
	ctx := context.Background()
	if cfg.BootTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.BootTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, cfg.Python, "-c", pyruntime.Loader, "3")
	cmd.ExtraFiles = []*os.File{boot}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = os.Stdout, &stderr
	err = cmd.Run()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("the app did not load within --boot-timeout (%s)", cfg.BootTimeout)
	case strings.TrimSpace(stderr.String()) != "":
		return errors.New(strings.TrimSpace(stderr.String()))
	}
	return fmt.Errorf("%s: %s", cfg.Python, describeExit(err))
}

// bootFile returns a memfd, positioned at 0, holding what a Python process
// gorn starts reads first (pyruntime.Loader): its configuration rc as one
// line of JSON, then the runtime's source. Nothing is written to disk, and
// the configuration stays out of the process's argv, which every user of
// the machine can read (ps, /proc/PID/cmdline): a logging configuration or
// the settings server hooks see may hold secrets.
func bootFile(rc any) (*os.File, error) {
	js, err := json.Marshal(rc)
	if err != nil {
		return nil, fmt.Errorf("encoding the runtime's configuration: %w", err)
	}
	fd, err := unix.MemfdCreate("gorn_runtime.py", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating a memfd for the runtime: %w", err)
	}
	f := os.NewFile(uintptr(fd), "gorn_runtime.py")
	if _, err := f.Write(append(js, '\n')); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing the runtime's configuration: %w", err)
	}
	if _, err := f.Write(pyruntime.Source); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing the runtime: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("rewinding the runtime: %w", err)
	}
	return f, nil
}

func describeExit(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + unix.SignalName(ws.Signal())
		}
		return fmt.Sprintf("exit code %d", ee.ExitCode())
	}
	if err == nil {
		return "exit code 0"
	}
	return err.Error()
}

// readLoop owns the pipe from the runtime until it fails; then it
// marks the runtime gone and releases every call's slot.
func (rt *runtimeProc) readLoop(r *protocol.Reader) {
	defer rt.fail()
	for {
		f, err := r.ReadFramePooled()
		if err != nil {
			// EOF is the runtime gone (or killed by a quick stop), which
			// the supervisor reports; so is the deadline afterExit sets.
			if err != io.EOF && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				rt.log.Error("Reading from the app runtime failed", "pid", rt.info.Pid, "err", err)
			}
			return
		}
		switch f.Type {
		case protocol.Start, protocol.Data, protocol.Read, protocol.Error:
		case protocol.Shared:
			if rt.shared == nil {
				rt.log.Error("The app runtime sent a shared frame without shared memory", "pid", rt.info.Pid)
				rt.kill()
				return
			}
			if err := rt.shared.check(f.Payload); err != nil {
				rt.log.Error("The app runtime sent a bad shared frame", "pid", rt.info.Pid, "err", err)
				rt.kill()
				return
			}
		default:
			rt.log.Error("The app runtime sent an unexpected frame", "pid", rt.info.Pid, "type", f.Type.String())
			rt.kill()
			return
		}
		terminal := f.Type == protocol.Error || (f.End() && f.Type != protocol.Read)
		var started *call
		rt.mu.Lock()
		c := rt.calls[f.ID]
		if terminal && c != nil {
			delete(rt.calls, f.ID)
			started = rt.dequeue(c)
		}
		rt.mu.Unlock()
		if started != nil {
			started.wake()
		}
		if c == nil {
			freeFrame(rt.shared, f)
			continue
		}
		if f.Type == protocol.Read || terminal {
			c.releaseBody() // the runtime has taken the body bytes it asked for
		}
		c.push(f)
		if terminal {
			c.releaseSlot()
		}
	}
}

// dequeue removes a finished call from order and returns the call that
// this lets start running, if any. Called with rt.mu held.
func (rt *runtimeProc) dequeue(c *call) *call {
	for i, o := range rt.order {
		if o == c {
			rt.order = append(rt.order[:i], rt.order[i+1:]...)
			break
		}
	}
	if len(rt.order) >= rt.threads {
		if next := rt.order[rt.threads-1]; !next.running.Load() {
			next.running.Store(true)
			return next
		}
	}
	return nil
}

// fail marks the runtime gone: every outstanding call's slot is released and
// its handler sees done closed.
func (rt *runtimeProc) fail() {
	rt.mu.Lock()
	calls := rt.calls
	rt.calls = nil
	rt.order = nil
	rt.mu.Unlock()
	close(rt.done)
	for _, c := range calls {
		c.releaseSlot()
	}
	rt.pipes.Close()
}

// newCall registers a stream; release is called once when the runtime ends
// the stream or dies. It returns nil if the runtime is already gone.
func (rt *runtimeProc) newCall(release func()) *call {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.calls == nil {
		return nil
	}
	rt.nextID++
	c := &call{id: rt.nextID, shared: rt.shared, notify: make(chan struct{}, 1), release: release}
	c.events = c.first[:0]
	rt.calls[c.id] = c
	return c
}

// send writes frames to the runtime, coalescing the frames of concurrent
// requests into one write: the first sender yields once, so every handler
// that is ready to send adds its frame, then writes them all, and keeps
// writing what others add meanwhile. A sender whose frame another writes
// gets nil; a failed write surfaces as the runtime being gone.
//
// A write cannot block for long: the runtime reads whenever it waits for a
// frame from us, and the large frames we send (Body) are bounded by what it
// asked for with Read.
func (rt *runtimeProc) send(b []byte) error {
	rt.wmu.Lock()
	return rt.sendLocked(b)
}

// sendRequest sends c's Request frame. The call joins order in the same
// step its frame joins the output, so order is the order in which the
// runtime receives (and starts) its requests.
func (rt *runtimeProc) sendRequest(c *call, frame []byte) error {
	rt.mu.Lock()
	if rt.calls == nil {
		rt.mu.Unlock()
		return net.ErrClosed
	}
	rt.order = append(rt.order, c)
	if len(rt.order) <= rt.threads {
		c.running.Store(true)
	}
	rt.wmu.Lock()
	rt.mu.Unlock()
	return rt.sendLocked(frame)
}

// directWrite is the frame size, in bytes, from which a sender that finds
// nobody writing writes its frame itself rather than copying it into the
// shared buffer (a request with its body, a body chunk).
const directWrite = 16 << 10

// sendLocked is send with wmu held; it releases it.
func (rt *runtimeProc) sendLocked(b []byte) error {
	var err error
	if !rt.flushing && len(b) >= directWrite {
		// Nobody is writing, so nothing is queued before it: write it as
		// it is, then whatever others queue meanwhile.
		rt.flushing = true
		rt.wmu.Unlock()
		_, err = rt.pipes.wfd.Write(b)
		rt.wmu.Lock()
	} else {
		rt.out = append(rt.out, b...)
		if rt.flushing {
			rt.wmu.Unlock()
			return nil
		}
		rt.flushing = true
		rt.wmu.Unlock()
		runtime.Gosched() // let other ready senders add their frames first
		rt.wmu.Lock()
	}
	for len(rt.out) > 0 {
		buf := rt.out
		rt.out = rt.spare[:0]
		rt.wmu.Unlock()
		_, werr := rt.pipes.wfd.Write(buf)
		rt.wmu.Lock()
		if werr != nil && err == nil {
			err = werr
		}
		if cap(buf) <= 256<<10 {
			rt.spare = buf[:0]
		} else {
			rt.spare = nil
		}
	}
	rt.flushing = false
	rt.wmu.Unlock()
	return err
}

// alive reports whether the runtime is still serving.
func (rt *runtimeProc) alive() bool { return !isClosed(rt.done) }

func (rt *runtimeProc) pid() int { return rt.cmd.Process.Pid }

func (rt *runtimeProc) kill() { rt.cmd.Process.Signal(syscall.SIGKILL) }

// dumpSignal makes the runtime write every thread's Python stack to the
// error log (faulthandler; it works even while the app holds the
// interpreter in C code) and run the worker_abort hook. Not SIGUSR1, which
// logrotate may send to every process of the tree (systemctl kill) to
// reopen the logs; the runtime ignores that one.
const dumpSignal = syscall.SIGUSR2

// killForTimeout makes the runtime dump every thread's Python stack to the
// error log and run worker_abort (dumpSignal), then kills it. Only the
// first call acts.
func (rt *runtimeProc) killForTimeout() {
	rt.timeoutOnce.Do(func() { rt.signalThenKill(dumpSignal, rt.abortGrace) })
}

// interrupt ends the runtime at a quick stop: SIGINT first when the
// worker_int hook is to run, then SIGKILL.
func (rt *runtimeProc) interrupt() {
	if rt.intGrace > 0 {
		rt.signalThenKill(syscall.SIGINT, rt.intGrace)
		return
	}
	rt.kill()
}

// signalThenKill sends sig and kills the runtime unless it exits within
// grace.
func (rt *runtimeProc) signalThenKill(sig syscall.Signal, grace time.Duration) {
	rt.cmd.Process.Signal(sig)
	select {
	case <-rt.exited:
	case <-time.After(grace):
	}
	rt.kill()
}

// stop asks the runtime to exit once its requests are done and waits up to
// grace for it, then kills it.
func (rt *runtimeProc) stop(grace time.Duration) {
	rt.send(protocol.AppendFrame(nil, protocol.Shutdown, 0, 0, nil))
	select {
	case <-rt.exited:
	case <-time.After(grace):
		rt.kill()
		<-rt.exited
	}
	rt.pipes.Close()
}
