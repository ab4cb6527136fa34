// Command gorn is a pre-fork server for Python WSGI applications, with
// gunicorn's command line:
//
//	gorn [flags] APP
//
// The same binary runs as a worker when the master re-executes it with the
// GORN_WORKER environment variable set.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/logs"
	"github.com/gorn-project/gorn/master"
	"github.com/gorn-project/gorn/proxyproto"
	"github.com/gorn-project/gorn/sdnotify"
	"github.com/gorn-project/gorn/statsd"
	"github.com/gorn-project/gorn/tlsconf"
	"github.com/gorn-project/gorn/worker"
)

// cli is the command line. Flag names, meanings and defaults are
// gunicorn's; durations are in seconds as in gunicorn, with Go duration
// syntax ("500ms") also accepted.
type cli struct {
	App string `arg:"" optional:"" name:"APP" help:"The WSGI application: module, module:attr or module:factory(args)."`

	// hooksFile is the configuration file read (absolute, or
	// python:MODULE, imported from hooksPath) when it defines server hooks
	// gorn runs, hooks their names.
	hooksFile string   `kong:"-"`
	hooksPath string   `kong:"-"`
	hooks     []string `kong:"-"`

	Config string `short:"c" name:"config" placeholder:"CONFIG" help:"A gunicorn configuration file (Python) whose settings apply unless the command line sets them. Default ./gunicorn.conf.py, if it exists."`

	Bind                          []string `short:"b" name:"bind" sep:"none" placeholder:"ADDRESS" help:"The socket to bind: HOST, HOST:PORT, [IPv6]:PORT, unix:PATH or fd://FD. Repeatable. Default 127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set."`
	Workers                       int      `short:"w" name:"workers" env:"WEB_CONCURRENCY" default:"1" placeholder:"INT" help:"The number of worker processes. Default 1, or $WEB_CONCURRENCY."`
	Threads                       int      `name:"threads" default:"1" placeholder:"INT" help:"The number of requests one worker runs at once in its Python runtime."`
	WorkerClass                   string   `short:"k" name:"worker-class" default:"sync" placeholder:"STRING" help:"Accepted for gunicorn compatibility: sync or gthread, both served on --threads threads per worker. Other classes (gevent, uvicorn, ...) are an error."`
	Backlog                       int      `name:"backlog" default:"2048" placeholder:"INT" help:"The maximum number of pending connections."`
	Chdir                         string   `name:"chdir" group:"Server mechanics" placeholder:"DIR" help:"Change directory to DIR before loading the app."`
	PythonPath                    string   `name:"pythonpath" group:"Server mechanics" placeholder:"STRING" help:"Comma-separated directories to add to the Python path, e.g. '/home/djangoprojects/myproject,/home/python/mylibrary'."`
	Env                           []string `short:"e" name:"env" group:"Server mechanics" sep:"none" placeholder:"ENV" help:"Set environment variable (key=value). Repeatable."`
	Timeout                       seconds  `short:"t" name:"timeout" default:"30" placeholder:"INT" help:"Requests running in Python longer than this many seconds are killed. 0 disables."`
	GracefulTimeout               seconds  `name:"graceful-timeout" default:"30" placeholder:"INT" help:"Seconds stopping workers get to finish their requests before they are killed."`
	KeepAlive                     seconds  `name:"keep-alive" default:"2" placeholder:"INT" help:"Seconds to wait for the next request on a keep-alive connection. 0 disables keep-alive."`
	HeaderTimeout                 seconds  `name:"header-timeout" default:"10" placeholder:"INT" help:"Seconds a client may take to send a request's headers."`
	BodyTimeout                   seconds  `name:"body-timeout" default:"30" placeholder:"INT" help:"Seconds the app may wait for each piece of a request body from the client."`
	WorkerConnections             int      `name:"worker-connections" default:"1000" placeholder:"INT" help:"The maximum number of client connections one worker keeps open."`
	BootTimeout                   seconds  `name:"boot-timeout" default:"120" placeholder:"INT" help:"Seconds a worker's runtime may take to import the app."`
	MaxRequests                   int      `name:"max-requests" default:"0" placeholder:"INT" help:"Replace a worker after it has served this many requests (its replacement is ready first). 0 disables."`
	MaxRequestsJitter             int      `name:"max-requests-jitter" default:"0" placeholder:"INT" help:"Add a random 0..INT to --max-requests per worker, so workers are not all replaced at once."`
	MaxWorkerMemory               string   `name:"max-worker-memory" default:"0" placeholder:"SIZE" help:"Replace a worker whose resident memory (worker plus its Python runtime) exceeds SIZE, e.g. 512M or 2G. 0 disables."`
	AccessLogfile                 string   `name:"access-logfile" group:"Logging" placeholder:"FILE" help:"The access log file to write to. '-' means log to stdout."`
	AccessLogFormat               string   `name:"access-logformat" group:"Logging" placeholder:"STRING" help:"The access log format, with gunicorn's atoms: e.g. '%(h)s %(t)s \"%(r)s\" %(s)s %(D)s'. Default: the Apache combined format."`
	ErrorLogfile                  string   `name:"error-logfile" group:"Logging" aliases:"log-file" default:"-" placeholder:"FILE" help:"The error log file to write to. '-' means log to stderr."`
	Reload                        bool     `name:"reload" group:"Debugging" help:"Reload the workers (as on HUP) when a Python file under --chdir or --pythonpath changes. For development."`
	ReloadExtraFile               []string `name:"reload-extra-file" group:"Debugging" sep:"none" placeholder:"FILE" help:"A file --reload watches as well, such as a template or a settings file. Repeatable."`
	ReloadEngine                  string   `name:"reload-engine" group:"Debugging" default:"auto" enum:"auto,poll,inotify" placeholder:"STRING" help:"Accepted for gunicorn compatibility: gorn polls the files every second."`
	StatsdHost                    string   `name:"statsd-host" group:"Metrics" placeholder:"STRING" help:"Send gunicorn's statsd metrics (requests, durations, statuses, workers, log warnings and errors) to this HOST:PORT over UDP."`
	StatsdPrefix                  string   `name:"statsd-prefix" group:"Metrics" placeholder:"STRING" help:"A prefix for the statsd metric names (a '.' is added)."`
	DogstatsdTags                 string   `name:"dogstatsd-tags" group:"Metrics" placeholder:"DOGSTATSD_TAGS" help:"DogStatsD tags added to every statsd line, e.g. env:prod,app:shop."`
	PrintConfig                   bool     `name:"print-config" group:"Debugging" help:"Print the settings, one name = value line each (gunicorn's names), check that the app imports, and exit."`
	Spew                          bool     `name:"spew" group:"Debugging" help:"Print every line of Python each worker's runtime executes (the app's and gorn's), with its module and line number, to standard output, as gunicorn's --spew. The nuclear option: for debugging only."`
	CheckConfig                   bool     `name:"check-config" group:"Debugging" help:"Check the configuration and that the app imports, then exit: 0 if both are good, else 1 with the reason."`
	Daemon                        bool     `short:"D" name:"daemon" group:"Server mechanics" help:"Daemonize the gorn process: it detaches from the terminal and its session, and the command returns at once. Log to files (--error-logfile) and write a --pid file."`
	EnableStdioInheritance        bool     `short:"R" name:"enable-stdio-inheritance" group:"Server mechanics" help:"With --daemon, keep standard output and error (unless they are a terminal) instead of /dev/null."`
	ReusePort                     bool     `name:"reuse-port" group:"Server mechanics" help:"Set SO_REUSEPORT on the TCP sockets gorn binds, so another server (another gorn, during a deploy) may bind the same address; the kernel spreads connections over both."`
	LogSyslog                     bool     `name:"log-syslog" group:"Logging" help:"Send the error log, and the access log, to syslog as well (gunicorn's tags: gunicorn.NAME.error and .access)."`
	LogSyslogTo                   string   `name:"log-syslog-to" group:"Logging" default:"udp://localhost:514" placeholder:"SYSLOG_ADDR" help:"Where --log-syslog sends: udp://HOST:PORT, tcp://HOST:PORT or unix://PATH[#dgram|#stream]."`
	LogSyslogPrefix               string   `name:"log-syslog-prefix" group:"Logging" placeholder:"SYSLOG_PREFIX" help:"The NAME in the syslog tags. Default: --name."`
	LogSyslogFacility             string   `name:"log-syslog-facility" group:"Logging" default:"user" placeholder:"SYSLOG_FACILITY" help:"The syslog facility: user, daemon, local0 ... local7, ..."`
	DisableRedirectAccessToSyslog bool     `name:"disable-redirect-access-to-syslog" group:"Logging" help:"With --log-syslog, keep the access log out of syslog."`
	LogConfig                     string   `name:"log-config" group:"Logging" placeholder:"FILE" help:"A Python logging configuration file (ini) applied in each app runtime before the app is imported (logging.config.fileConfig)."`
	LogConfigJSON                 string   `name:"log-config-json" group:"Logging" placeholder:"FILE" help:"A Python logging configuration in a JSON file (logging.config.dictConfig), laid over gunicorn's logging defaults and applied as --log-config is. It takes precedence over --log-config."`
	LoggerClass                   string   `name:"logger-class" group:"Logging" placeholder:"STRING" help:"A Python logger class (module.Class, usually a subclass of gunicorn.glogging.Logger) that each worker's Python runtime logs the app's requests and its own error lines through, as gunicorn's --logger-class. gunicorn.glogging.Logger, 'simple' and gunicorn.instrument.statsd.Statsd mean gorn's own logging, the default."`
	LogConfigDict                 string   `name:"log-config-dict" group:"Logging" placeholder:"JSON" help:"A Python logging configuration as a JSON object, as gunicorn.conf.py's logconfig_dict: laid over gunicorn's logging defaults and applied as --log-config is. It takes precedence over --log-config-json, which takes precedence over --log-config."`
	Paste                         string   `name:"paste" group:"Server mechanics" aliases:"paster" placeholder:"STRING" help:"Load the app from a PasteDeploy ini file (FILE or FILE#name) instead of APP; its [loggers], if any, configure the app's logging."`
	PasteGlobal                   []string `name:"paste-global" group:"Server mechanics" sep:"none" placeholder:"CONF" help:"A KEY=VALUE of --paste's global configuration. Repeatable."`
	CaptureOutput                 bool     `name:"capture-output" group:"Logging" help:"Redirect the standard output of the workers and the app to the file in --error-logfile (their standard error goes there anyway)."`
	NoSendfile                    bool     `name:"no-sendfile" group:"Server mechanics" help:"Accepted for gunicorn compatibility: gorn never uses sendfile(2)."`
	Sendfile                      bool     `name:"sendfile" group:"Server mechanics" help:"Accepted for gunicorn compatibility: gorn never uses sendfile(2)."`
	WorkerTmpDir                  string   `name:"worker-tmp-dir" group:"Server mechanics" placeholder:"DIR" help:"Accepted for gunicorn compatibility and unused: gorn's workers keep no heartbeat files."`
	Preload                       bool     `name:"preload" group:"Server mechanics" help:"Accepted for gunicorn compatibility: every gorn worker's Python runtime imports the app itself (a warning says so)."`
	LogLevel                      string   `name:"log-level" group:"Logging" default:"info" placeholder:"LEVEL" help:"The granularity of error log outputs: debug, info, warning, error, critical."`
	Name                          string   `short:"n" name:"name" group:"Server mechanics" placeholder:"STRING" help:"A base to use for process names (ps, top). Default gorn."`
	Pid                           string   `short:"p" name:"pid" group:"Server mechanics" placeholder:"FILE" help:"A filename to use for the PID file."`
	User                          string   `short:"u" name:"user" group:"Server mechanics" placeholder:"USER" help:"Switch worker processes to run as this user (a name or a numeric id). Default: the user gorn runs as."`
	Group                         string   `short:"g" name:"group" group:"Server mechanics" placeholder:"GROUP" help:"Switch worker processes to run as this group (a name or a numeric id). Default: the primary group of --user, else gorn's."`
	Umask                         string   `short:"m" name:"umask" group:"Server mechanics" default:"0" placeholder:"INT" help:"A bit mask for the file mode of the unix sockets gorn binds, e.g. 0o007. Default 0 (as gunicorn: anyone may connect)."`
	Initgroups                    bool     `name:"initgroups" group:"Server mechanics" help:"Accepted for gunicorn compatibility: workers started with --user always get that user's supplementary groups."`
	Python                        string   `name:"python" placeholder:"PATH" help:"The Python interpreter that runs the app. Default $VIRTUAL_ENV/bin/python, else python3 on PATH."`
	MetricsBind                   string   `name:"metrics-bind" group:"Metrics" placeholder:"ADDRESS" help:"Serve Prometheus /metrics, /healthz and /readyz on this address (HOST:PORT, unix:PATH), never an app --bind. Default: off."`
	Version                       bool     `short:"v" name:"version" help:"Show program's version number and exit."`

	CertFile             string `name:"certfile" group:"SSL" placeholder:"FILE" help:"SSL certificate file (PEM, with its chain). Serves TLS, and HTTP/2 by ALPN, on every bind."`
	KeyFile              string `name:"keyfile" group:"SSL" placeholder:"FILE" help:"SSL key file (PEM). Default: the key is in --certfile."`
	CACerts              string `name:"ca-certs" group:"SSL" placeholder:"FILE" help:"CA certificates file (PEM) that client certificates are verified against."`
	CertReqs             int    `name:"cert-reqs" group:"SSL" default:"0" placeholder:"INT" help:"Whether a client certificate is asked for: 0 no, 1 optional (verified if sent), 2 required."`
	Ciphers              string `name:"ciphers" group:"SSL" placeholder:"STRING" help:"OpenSSL cipher list for TLS 1.2, e.g. ECDHE+AESGCM:!aNULL. Default: Go's. TLS 1.3 suites are not configurable."`
	SSLVersion           string `name:"ssl-version" group:"SSL" placeholder:"VERSION" help:"Deprecated and ignored, as in gunicorn: TLS 1.2 and 1.3 are negotiated."`
	DoHandshakeOnConnect bool   `name:"do-handshake-on-connect" group:"SSL" help:"Accepted for gunicorn compatibility; the handshake always runs in the connection's goroutine."`
	SuppressRaggedEOFs   bool   `name:"suppress-ragged-eofs" group:"SSL" default:"true" help:"Accepted for gunicorn compatibility (the default): a TLS connection closed without close_notify ends quietly."`

	ForwardedAllowIPs   string    `name:"forwarded-allow-ips" group:"Proxies" env:"FORWARDED_ALLOW_IPS" default:"127.0.0.1,::1" placeholder:"STRING" help:"Front-end IPs or CIDR networks (comma-separated, or '*') whose X-Forwarded-Proto, X-Forwarded-Protocol and X-Forwarded-Ssl headers set wsgi.url_scheme. Default 127.0.0.1,::1, or $FORWARDED_ALLOW_IPS."`
	ProxyProtocol       proxyMode `name:"proxy-protocol" group:"Proxies" default:"off" placeholder:"MODE" help:"Read a PROXY protocol header (HAProxy, stunnel, load balancers) from --proxy-allow-from peers: off, v1, v2 or auto. Without a value: auto."`
	ProxyAllowFrom      string    `name:"proxy-allow-from" group:"Proxies" default:"127.0.0.1,::1" placeholder:"STRING" help:"Front-end IPs or CIDR networks (comma-separated, or '*') allowed to send a PROXY protocol header."`
	SecureSchemeHeaders string    `name:"secure-scheme-headers" group:"Proxies" placeholder:"JSON" help:"The headers, and values meaning https, by which --forwarded-allow-ips peers set wsgi.url_scheme: a JSON object (gunicorn's secure_scheme_headers). Default {\"X-FORWARDED-PROTOCOL\": \"ssl\", \"X-FORWARDED-PROTO\": \"https\", \"X-FORWARDED-SSL\": \"on\"}; {} for none."`
	ForwarderHeaders    string    `name:"forwarder-headers" group:"Proxies" default:"SCRIPT_NAME,PATH_INFO" placeholder:"STRING" help:"Header names containing '_' (comma-separated, or '*') that --forwarded-allow-ips peers may pass to the app whatever --header-map says; a SCRIPT_NAME header sets SCRIPT_NAME. Empty: none."`

	LimitRequestLine      int    `name:"limit-request-line" group:"Security" default:"4094" placeholder:"INT" help:"The largest request line, in bytes; longer get 400. 0 means unlimited; at most 8190."`
	LimitRequestFields    int    `name:"limit-request-fields" group:"Security" default:"100" placeholder:"INT" help:"The most header fields a request may have; more get 431. At most 32768."`
	LimitRequestFieldSize int    `name:"limit-request-field_size" group:"Security" default:"8190" placeholder:"INT" help:"The largest header field, in bytes; larger get 431. 0 means unlimited."`
	LimitRequestBody      int64  `name:"limit-request-body" group:"Security" default:"0" placeholder:"INT" help:"The largest request body, in bytes; larger get 413. 0 (the default) means unlimited."`
	HeaderMap             string `name:"header-map" group:"Security" default:"drop" enum:"drop,refuse,dangerous" placeholder:"MODE" help:"Header names containing '_': drop (from the environ), refuse (400) or dangerous (map them like '-', as HTTP_ variables)."`
	PermitObsoleteFolding bool   `name:"permit-obsolete-folding" group:"Security" help:"Accept obsolete line folding in request headers (refused with 400 by default)."`
}

// proxyMode is --proxy-protocol's value. As in gunicorn, the flag alone
// means auto, and a value may follow it as the next argument when it is
// one of the modes.
type proxyMode string

// Decode implements kong.MapperValue.
func (m *proxyMode) Decode(ctx *kong.DecodeContext) error {
	t := ctx.Scan.Peek()
	if v, ok := t.Value.(string); ok {
		if _, err := proxyproto.ParseMode(v); t.Type == kong.FlagValueToken || (err == nil && v != "" && t.IsValue()) {
			ctx.Scan.Pop()
			if err != nil {
				return err
			}
			*m = proxyMode(v)
			return nil
		}
	}
	*m = "auto"
	return nil
}

// IsBool tells kong that the flag needs no value.
func (m *proxyMode) IsBool() bool { return true }

// seconds is a duration given as gunicorn does, in (possibly fractional)
// seconds, or as a Go duration.
type seconds time.Duration

// UnmarshalText implements encoding.TextUnmarshaler for kong.
func (s *seconds) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	if f, err := strconv.ParseFloat(text, 64); err == nil {
		// NaN, ±Inf and values past ~292 years have no Duration; the
		// conversion would silently give a garbage (negative) value.
		ns := f * float64(time.Second)
		if math.IsNaN(ns) || ns >= math.MaxInt64 || ns <= math.MinInt64 {
			return fmt.Errorf("expected seconds, not %q", text)
		}
		*s = seconds(time.Duration(ns))
		return nil
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return fmt.Errorf("expected seconds, not %q", text)
	}
	*s = seconds(d)
	return nil
}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if spec := os.Getenv(worker.SpecEnv); spec != "" {
		return runWorker(spec)
	}
	c, confPath, confWarnings, code, done := load(args[1:], stdout, stderr, stdout, stderr)
	if done {
		return code
	}
	if c.Version {
		fmt.Fprintf(stdout, "gorn (version %s)\n", config.Version)
		return 0
	}
	var err error
	if systemdBinds, err = takeListenFDs(); err != nil {
		fmt.Fprintf(stderr, "gorn: error: %v\n", err)
		return 1
	}
	// Type=notify units: taken out of the environment before anything is
	// started, so only the master tells systemd.
	notifier := sdnotify.TakeEnv()
	cfg, err := c.config()
	if err != nil {
		fmt.Fprintf(stderr, "gorn: error: %v\n", err)
		return 1
	}
	if c.PrintConfig {
		cfg.Print(stdout)
	}
	if c.CheckConfig || c.PrintConfig {
		if err := worker.CheckApp(cfg, args); err != nil {
			fmt.Fprintf(stderr, "gorn: error: the app does not load:\n%v\n", err)
			return 1
		}
		return 0
	}
	if c.Daemon && !daemonized() {
		if err := daemonize(args, c.EnableStdioInheritance); err != nil {
			fmt.Fprintf(stderr, "gorn: error: --daemon: %v\n", err)
			return 1
		}
		return 0
	}
	errFile, err := logs.OpenFile(cfg.ErrorLog, os.Stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gorn: error: --error-logfile: %v\n", err)
		return 1
	}
	// Each worker opens the access log; as gunicorn, which opens it in its
	// master, refuse to start when it cannot be opened. (With --user the
	// master hands the file over, and says so, as it starts.)
	if p := cfg.AccessLog; p != "" && p != "-" && cfg.UID < 0 {
		f, err := logs.Open(p, os.Stdout)
		if err != nil {
			fmt.Fprintf(stderr, "gorn: error: --access-logfile: %v\n", err)
			return 1
		}
		f.Close()
	}
	var stats *statsd.Client
	if cfg.StatsdHost != "" {
		if stats, err = statsd.Dial(cfg.StatsdHost, cfg.StatsdPrefix, cfg.DogstatsdTags); err != nil {
			fmt.Fprintf(stderr, "gorn: error: %v\n", err)
			return 1
		}
		defer stats.Close()
	}
	var syslog *logs.Syslog
	if cfg.Syslog {
		if syslog, err = logs.DialSyslog(cfg.SyslogTo, cfg.SyslogFacility); err != nil {
			fmt.Fprintf(stderr, "gorn: error: %v\n", err)
			return 1
		}
		defer syslog.Close()
	}
	logLevel.Set(logs.ParseLevel(cfg.LogLevel))
	var handler slog.Handler = logs.NewHandler(errFile, &logLevel, os.Getpid())
	handler = logs.NewSyslogHandler(handler, syslog, logs.SyslogTag(cfg.SyslogPrefix, cfg.Name, "error"), os.Getpid())
	log := slog.New(statsd.NewLogHandler(handler, stats))
	if confPath != "" {
		log.Info("Configuration read from " + confPath)
	}
	for _, w := range confWarnings {
		log.Warn(confPath + ": " + w)
	}
	tlsWarnings, _ := tlsconf.Check(cfg) // errors were reported by c.config
	for _, w := range tlsWarnings {
		log.Warn(w)
	}
	if len(systemdBinds) > 0 && len(c.Bind) > 0 && !slices.Equal(c.Bind, systemdBinds) {
		log.Warn(fmt.Sprintf("--bind %s is ignored: serving the %d socket(s) systemd passed (LISTEN_FDS)", strings.Join(c.Bind, ","), len(systemdBinds)))
	}
	if c.Preload {
		log.Warn("--preload is ignored: each worker's Python runtime imports the app itself, and HUP reloads the code")
	}
	if c.SSLVersion != "" {
		log.Warn("--ssl-version is deprecated and ignored: gorn negotiates TLS 1.2 or 1.3")
	}
	hooks, ok := startHooks(cfg, errFile, log)
	if !ok {
		return 1
	}
	reload := func() (*config.Config, error) { return reloadConfig(args) }
	m, err := master.New(cfg, master.Options{Log: log, ErrorLog: errFile, Argv: args, Reload: reload, Dir: startDir, Terminal: hasTerminal, Activated: len(systemdBinds) > 0, Statsd: stats, Hooks: hooks, Notify: notifier.Notify})
	if err != nil {
		log.Error(err.Error())
		if hooks != nil {
			hooks.Close()
		}
		return 1
	}
	return m.Run()
}

// startHooks starts the process that runs the master's server hooks of
// the configuration file, when it defines any, and runs the first ones, as
// gunicorn's master runs them before it binds: nworkers_changed (from None
// to --workers), then on_starting. ok is false when they cannot run or
// on_starting raised: gorn then exits with code 1.
func startHooks(cfg *config.Config, errFile *logs.File, log *slog.Logger) (hooks master.Hooks, ok bool) {
	if !cfg.HasHook(config.MasterHooks...) {
		return nil, true
	}
	runner, err := master.StartHooks(cfg, errFile.File(), log)
	if err != nil {
		log.Error(err.Error())
		return nil, false
	}
	server := master.HookServer{Pid: os.Getpid(), NumWorkers: cfg.Workers}
	if cfg.HasHook("nworkers_changed") {
		runner.Call(master.HookCall{Hook: "nworkers_changed", Server: server, Extra: []any{cfg.Workers, nil}}, false)
	}
	if cfg.HasHook("on_starting") && !runner.Call(master.HookCall{Hook: "on_starting", Server: server}, true) {
		log.Error("Shutting down: the on_starting hook failed")
		runner.Close()
		return nil, false
	}
	return runner, true
}

type exitCode int

// CmdArgsEnv is the environment variable whose arguments come before the
// command line's, as gunicorn reads it.
const CmdArgsEnv = "GUNICORN_CMD_ARGS"

// load reads the settings from their three sources, each overriding the
// one before, as gunicorn does: the configuration file (-c, else
// ./gunicorn.conf.py), $GUNICORN_CMD_ARGS and the command line args. A
// later source's --bind or -e replaces all of an earlier one's. done means
// the process should exit with code (help, a bad setting: one line on
// stderr and exit 1); confPath is the file read, "" for none. What the
// file writes to its standard output and error goes to fileOut and fileErr.
func load(args []string, stdout, stderr, fileOut, fileErr io.Writer) (c *cli, confPath string, warnings []string, code int, done bool) {
	envArgs, err := splitArgs(os.Getenv(CmdArgsEnv))
	if err != nil {
		fmt.Fprintf(stderr, "gorn: error: %s: %v\n", CmdArgsEnv, err)
		return nil, "", nil, 1, true
	}
	if len(envArgs) > 0 {
		if code, done := parse(&cli{}, envArgs, io.Discard, &prefixed{w: stderr, prefix: CmdArgsEnv + ": "}); done {
			return nil, "", nil, code, true
		}
	}
	for _, f := range [][2]string{{"b", "bind"}, {"e", "env"}} {
		if hasFlag(args, f[0], f[1]) {
			envArgs = dropFlag(envArgs, f[0], f[1])
		}
	}
	args = append(envArgs[:len(envArgs):len(envArgs)], args...)
	c = &cli{}
	if code, done := parse(c, args, stdout, stderr); done || c.Version {
		return c, "", nil, code, done
	}
	conf, err := configFile(c)
	if err != nil {
		fmt.Fprintf(stderr, "gorn: error: %v\n", err)
		return nil, "", nil, 1, true
	}
	fileOut.Write(conf.stdout)
	fileErr.Write(conf.stderr)
	if conf.path == "" {
		return c, "", nil, 0, false
	}
	if code, done := parse(&cli{}, conf.args, io.Discard, &prefixed{w: stderr, prefix: conf.path + ": "}); done {
		return nil, "", nil, code, true
	}
	c = &cli{hooksFile: conf.hooksFile, hooksPath: conf.hooksPath, hooks: conf.hooks}
	if code, done := parse(c, append(conf.args, args...), stdout, stderr); done {
		return nil, "", nil, code, true
	}
	return c, conf.path, conf.warnings, 0, false
}

// newParser is kong's parser of the command line into c.
func newParser(c *cli, stdout, stderr io.Writer) (*kong.Kong, error) {
	return kong.New(c,
		kong.Name("gorn"),
		kong.Description("A pre-fork server for Python WSGI applications, with gunicorn's flags.\n\nExample: gorn -w 4 -b 0.0.0.0:8000 myproject.wsgi:application"),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitCode(code)) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: true}),
	)
}

// prefixed writes each message with a prefix after "gorn: error: ".
type prefixed struct {
	w      io.Writer
	prefix string
}

func (p *prefixed) Write(b []byte) (int, error) {
	s := string(b)
	if rest, ok := strings.CutPrefix(s, "gorn: error: "); ok {
		s = "gorn: error: " + p.prefix + rest
	}
	if _, err := io.WriteString(p.w, s); err != nil {
		return 0, err
	}
	return len(b), nil
}

// confFile is what configFile read.
type confFile struct {
	path string   // as -c gave it, or gunicorn.conf.py; "" for none
	args []string // the arguments its settings make
	// hooksFile and hooksPath say where the runtimes and the master hooks'
	// process find the server hooks, hooks, and the file's logger class:
	// the file's absolute path, or python:MODULE and the directory to
	// import it from.
	hooksFile, hooksPath string
	hooks                []string
	warnings             []string
	// stdout and stderr are what the file wrote to them.
	stdout, stderr []byte
}

// configFile reads the gunicorn configuration file c names (-c), else
// ./gunicorn.conf.py if there is one, with the interpreter --python (or
// its default) names. Its arguments are to be parsed before the command
// line. The command line's --bind, --env and APP replace the file's bind,
// raw_env and wsgi_app.
func configFile(c *cli) (*confFile, error) {
	conf := &confFile{path: c.Config}
	if conf.path == "" {
		if fi, err := os.Stat(config.GunicornFile); err != nil || !fi.Mode().IsRegular() {
			return conf, nil
		}
		conf.path = config.GunicornFile
	}
	python, err := config.FindPython(c.Python, os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", conf.path, err)
	}
	fs, err := config.ReadGunicornFile(python, conf.path)
	if err != nil {
		return nil, err
	}
	conf.args, conf.warnings, err = fs.Args(map[string]bool{"bind": len(c.Bind) > 0, "raw_env": len(c.Env) > 0, "wsgi_app": c.App != ""})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", conf.path, err)
	}
	// The runtimes and the hooks' process (for the server hooks, or a
	// logger class the file defines) run from --chdir: they take the file
	// by its absolute path, a module from where it was found.
	conf.stdout, conf.stderr = fs.Stdout, fs.Stderr
	conf.hooks = fs.RunHooks()
	conf.hooksFile = fs.File
	if fs.Module != "" {
		conf.hooksFile, conf.hooksPath = "python:"+fs.Module, fs.ImportPath
	}
	return conf, nil
}

// parse parses args into c; done means the process should exit with code
// (help, or a bad command line: one line on stderr and exit 1).
func parse(c *cli, args []string, stdout, stderr io.Writer) (code int, done bool) {
	parser, err := newParser(c, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gorn: error: %v\n", err)
		return 1, true
	}
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			code, done = int(c), true
		}
	}()
	ctx, err := parser.Parse(args)
	if err != nil {
		var pe *kong.ParseError
		if flag, why := loosenedParsing(args); flag != "" {
			fmt.Fprintf(stderr, "gorn: error: %s is gunicorn's, and gorn does not take it: %s (see docs/security.md)\n", flag, why)
		} else if errors.As(err, &pe) {
			fmt.Fprintf(stderr, "gorn: error: %v (see gorn --help)\n", pe.Unwrap())
		} else {
			fmt.Fprintf(stderr, "gorn: error: %v\n", err)
		}
		return 1, true
	}
	_ = ctx
	return 0, false
}

// loosenedFlags are gunicorn's flags that loosen its request parsing,
// which gorn does not have, with what gorn does instead: a command line
// that has one gets that rather than "unknown flag".
var loosenedFlags = map[string]string{
	"--strip-header-spaces":                "gorn refuses a header with whitespace before its colon (400), a request smuggling vector",
	"--tolerate-dangerous-framing":         "gorn refuses a request with both Content-Length and Transfer-Encoding (400), a request smuggling vector",
	"--casefold-http-method":               "gorn refuses a method that is not in upper case (400), as gunicorn does without it",
	"--permit-unconventional-http-method":  "gorn refuses a method that is not in upper case or longer than 20 characters (400), as gunicorn does without it",
	"--permit-unconventional-http-version": "gorn refuses a version other than HTTP/1.0 and HTTP/1.1 (400)",
}

// loosenedParsing returns the first of loosenedFlags in args, alone or as
// --flag=value, with its reason; "" if there is none.
func loosenedParsing(args []string) (flag, why string) {
	for _, a := range args {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(a, "=")
		if why, ok := loosenedFlags[name]; ok {
			return name, why
		}
	}
	return "", ""
}

// runWorker is the worker mode of the binary.
func runWorker(specText string) int {
	os.Unsetenv(worker.SpecEnv)
	spec, err := worker.DecodeSpec(specText)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gorn worker: %v\n", err)
		return 1
	}
	log := slog.New(logs.NewHandler(os.Stderr, logs.ParseLevel(spec.Config.LogLevel), os.Getpid()))
	return worker.Main(spec, log)
}

// config builds the configuration from the parsed command line and the
// environment. A --chdir is applied here, as gunicorn does before loading.
func (c *cli) config() (*config.Config, error) {
	if !slices.Contains(config.WorkerClasses, c.WorkerClass) {
		return nil, fmt.Errorf("--worker-class %q is not supported: gorn serves WSGI apps, on --threads threads per worker (sync or gthread)", c.WorkerClass)
	}
	mem, err := config.ParseSize(c.MaxWorkerMemory)
	if err != nil {
		return nil, fmt.Errorf("--max-worker-memory: %w", err)
	}
	umask, err := config.ParseUmask(c.Umask)
	if err != nil {
		return nil, err
	}
	binds, asked := c.Bind, []string(nil)
	if len(systemdBinds) > 0 {
		binds, asked = systemdBinds, c.Bind
	} else {
		// A bind that cannot parse is a bad value like any other: one line
		// and exit 1 (and --check-config sees it), not a log line at bind
		// time.
		for _, b := range binds {
			if _, _, err := master.ParseBind(b); err != nil {
				return nil, err
			}
		}
	}
	cfg := &config.Config{
		App:                           c.App,
		Binds:                         binds,
		AskedBinds:                    asked,
		Workers:                       c.Workers,
		Threads:                       c.Threads,
		Backlog:                       c.Backlog,
		Chdir:                         c.Chdir,
		Env:                           c.Env,
		Timeout:                       time.Duration(c.Timeout),
		GracefulTimeout:               time.Duration(c.GracefulTimeout),
		KeepAlive:                     time.Duration(c.KeepAlive),
		BootTimeout:                   time.Duration(c.BootTimeout),
		HeaderTimeout:                 time.Duration(c.HeaderTimeout),
		BodyTimeout:                   time.Duration(c.BodyTimeout),
		WorkerConnections:             c.WorkerConnections,
		MaxRequests:                   c.MaxRequests,
		MaxRequestsJitter:             c.MaxRequestsJitter,
		MaxWorkerMemory:               mem,
		AccessLog:                     c.AccessLogfile,
		AccessLogFormat:               c.AccessLogFormat,
		CaptureOutput:                 c.CaptureOutput,
		ReusePort:                     c.ReusePort,
		LogConfig:                     c.LogConfig,
		LogConfigJSON:                 c.LogConfigJSON,
		LogConfigDict:                 c.LogConfigDict,
		LoggerClass:                   c.LoggerClass,
		Spew:                          c.Spew,
		HooksFile:                     c.hooksFile,
		HooksPath:                     c.hooksPath,
		Hooks:                         c.hooks,
		Paste:                         c.Paste,
		PasteGlobal:                   c.PasteGlobal,
		Syslog:                        c.LogSyslog,
		SyslogTo:                      c.LogSyslogTo,
		SyslogPrefix:                  c.LogSyslogPrefix,
		SyslogFacility:                c.LogSyslogFacility,
		DisableRedirectAccessToSyslog: c.DisableRedirectAccessToSyslog,
		ThreadWorker:                  strings.Contains(c.WorkerClass, "gthread") || strings.HasSuffix(c.WorkerClass, "ThreadWorker"),
		StatsdHost:                    c.StatsdHost,
		StatsdPrefix:                  c.StatsdPrefix,
		DogstatsdTags:                 c.DogstatsdTags,
		Reload:                        c.Reload,
		ReloadExtraFiles:              c.ReloadExtraFile,
		ErrorLog:                      c.ErrorLogfile,
		LogLevel:                      c.LogLevel,
		Name:                          c.Name,
		PidFile:                       c.Pid,
		User:                          c.User,
		Group:                         c.Group,
		Umask:                         umask,
		Python:                        c.Python,
		MetricsBind:                   c.MetricsBind,
		CertFile:                      c.CertFile,
		KeyFile:                       c.KeyFile,
		CACerts:                       c.CACerts,
		CertReqs:                      c.CertReqs,
		Ciphers:                       c.Ciphers,
		ForwardedAllowIPs:             c.ForwardedAllowIPs,
		ProxyProtocol:                 string(c.ProxyProtocol),
		ProxyAllowFrom:                c.ProxyAllowFrom,
		ForwarderHeaders:              c.ForwarderHeaders,
		SecureSchemeHeaders:           c.SecureSchemeHeaders,
		LimitRequestLine:              c.LimitRequestLine,
		LimitRequestFields:            c.LimitRequestFields,
		LimitRequestFieldSize:         c.LimitRequestFieldSize,
		LimitRequestBody:              c.LimitRequestBody,
		HeaderMap:                     c.HeaderMap,
		PermitObsoleteFolding:         c.PermitObsoleteFolding,
	}
	for _, p := range strings.Split(c.PythonPath, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.PythonPath = append(cfg.PythonPath, p)
		}
	}
	if cfg.Chdir != "" {
		if err := os.Chdir(cfg.Chdir); err != nil {
			return nil, fmt.Errorf("--chdir: %w", err)
		}
	}
	// --env applies to the master's environment, which workers and the
	// app inherit; set before Finish so it may name VIRTUAL_ENV or PATH.
	for _, kv := range cfg.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			os.Setenv(k, v)
		}
	}
	if err := cfg.Finish(os.Getenv); err != nil {
		return nil, err
	}
	if cfg.AccessLogFormat != "" {
		if _, err := logs.ParseAccessFormat(cfg.AccessLogFormat); err != nil {
			return nil, fmt.Errorf("--access-logformat: %w", err)
		}
	}
	// The TLS files are read here, by the master, at startup and on HUP:
	// a missing, unreadable or mismatched file is one line and exit 1.
	if _, err := tlsconf.Check(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// systemdBinds are the sockets systemd passed (socket activation), read
// once at start by takeListenFDs; they replace --bind, as in gunicorn.
var systemdBinds []string

// takeListenFDs reads the sockets systemd passed to this process and
// removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the environment,
// so that neither workers nor the app take them for their own.
func takeListenFDs() ([]string, error) {
	binds, err := master.ListenFDs(os.Getenv, os.Getpid())
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			os.Unsetenv(k)
		}
	}
	return binds, err
}

// logLevel is the master's --log-level, which a reload may change.
var logLevel slog.LevelVar

// startDir is the directory gorn started in; a reload resolves a relative
// --chdir from it again.
var startDir, _ = os.Getwd()

// reloadConfig reads the command line and the environment again, for HUP.
// It reads them from the start directory, as at start, and leaves the
// master in the new --chdir with the new --env set; when they no longer
// parse, it returns to the directory and the environment it had, which the
// current workers' successors start with.
func reloadConfig(args []string) (cfg *config.Config, err error) {
	env := os.Environ()
	wd, werr := os.Getwd()
	defer func() {
		if err == nil {
			return
		}
		os.Clearenv()
		for _, kv := range env {
			if k, v, ok := strings.Cut(kv, "="); ok {
				os.Setenv(k, v)
			}
		}
		if werr == nil {
			if cerr := os.Chdir(wd); cerr != nil {
				err = fmt.Errorf("%w (and returning to %s: %v)", err, wd, cerr)
			}
		}
	}()
	if startDir != "" {
		if err := os.Chdir(startDir); err != nil {
			return nil, fmt.Errorf("returning to the start directory: %w", err)
		}
	}
	// The configuration file is read again, as gunicorn reads it on HUP,
	// and what it prints shows again.
	var msg strings.Builder
	c, _, _, _, done := load(args[1:], io.Discard, &msg, os.Stdout, os.Stderr)
	if done {
		return nil, fmt.Errorf("the settings no longer parse: %s", strings.TrimPrefix(strings.TrimSpace(msg.String()), "gorn: error: "))
	}
	if cfg, err = c.config(); err == nil {
		logLevel.Set(logs.ParseLevel(cfg.LogLevel)) // the workers take it from cfg
	}
	return cfg, err
}
