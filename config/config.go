// Package config holds gorn's settings: what the command line parsed, after
// defaults from the environment, in the form the master hands to every
// worker.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gorn-project/gorn/forwarded"
	"github.com/gorn-project/gorn/httpguard"
	"github.com/gorn-project/gorn/logs"
	"github.com/gorn-project/gorn/proxyproto"
	"github.com/gorn-project/gorn/statsd"
)

// Version is gorn's version, printed by --version and in "Starting gorn".
const Version = "0.1.0"

// Config is the whole configuration. The zero value is not usable; the
// command line fills it and Finish applies the rules that depend on the
// environment. It is serialized as JSON to hand it to workers.
type Config struct {
	// App is the WSGI application: "module", "module:attr" or
	// "module:factory(literal args)". Required.
	App string `json:"app"`
	// Binds are the addresses to listen on: HOST:PORT, [V6]:PORT,
	// unix:PATH or fd://N. Default 127.0.0.1:8000, or 0.0.0.0:$PORT when
	// PORT is set.
	Binds []string `json:"binds"`
	// AskedBinds are the --bind values as given when Binds are instead the
	// sockets systemd passed (socket activation), so that a reload can
	// tell they changed; nil otherwise.
	AskedBinds []string `json:"-"`
	// Workers is the number of worker processes. Default 1, or
	// $WEB_CONCURRENCY.
	Workers int `json:"workers"`
	// Threads is how many requests one worker runs at once in its runtime.
	// Default 1.
	Threads int `json:"threads"`
	// Backlog is the listen(2) backlog of every TCP and unix listener.
	// Default 2048.
	Backlog int `json:"backlog"`
	// Chdir is the directory the master changes to before loading the app.
	Chdir string `json:"chdir"`
	// PythonPath are directories put at the front of sys.path, in order.
	PythonPath []string `json:"pythonpath"`
	// Env are KEY=VALUE pairs set in the environment of the app.
	Env []string `json:"env"`
	// Timeout bounds one request in Python; 0 disables. Default 30s.
	Timeout time.Duration `json:"timeout"`
	// GracefulTimeout is how long a stopping worker may finish its
	// in-flight requests before it is killed. Default 30s.
	GracefulTimeout time.Duration `json:"graceful_timeout"`
	// KeepAlive is how long an idle keep-alive connection stays open;
	// 0 disables keep-alive. Default 2s.
	KeepAlive time.Duration `json:"keep_alive"`
	// BootTimeout bounds the import of the app in a new runtime. Default
	// 120s.
	BootTimeout time.Duration `json:"boot_timeout"`
	// HeaderTimeout bounds the time a client may take to send a request's
	// head, from the connection's start or its first byte after idling.
	// Default 10s.
	HeaderTimeout time.Duration `json:"header_timeout"`
	// BodyTimeout bounds each wait for request body bytes while the app
	// reads the body. Default 30s.
	BodyTimeout time.Duration `json:"body_timeout"`
	// WorkerConnections is the most client connections one worker keeps
	// open; past it the worker stops accepting and closes its longest-idle
	// keep-alive connection. Default (and what 0 means) 1000.
	WorkerConnections int `json:"worker_connections"`
	// MaxRequests is how many requests a worker serves before it is
	// replaced by a fresh one; 0 (the default) disables recycling.
	MaxRequests int `json:"max_requests"`
	// MaxRequestsJitter adds a random 0..N to each worker's MaxRequests so
	// workers are not all recycled at once. Default 0.
	MaxRequestsJitter int `json:"max_requests_jitter"`
	// MaxWorkerMemory is the resident size, in bytes, of a worker plus its
	// runtime above which the worker is replaced; 0 (the default) disables.
	MaxWorkerMemory int64 `json:"max_worker_memory"`
	// AccessLog is the access log path; "-" is standard output, empty
	// disables it (the default).
	AccessLog string `json:"access_log"`
	// AccessLogFormat is --access-logformat: gunicorn's atoms, such as
	// %(h)s, in Python's %-mapping syntax (package logs). Empty is
	// gunicorn's default format.
	AccessLogFormat string `json:"access_log_format,omitempty"`
	// ErrorLog is the error log path; "-" (the default) is standard error.
	ErrorLog string `json:"error_log"`
	// LogLevel is debug, info, warning, error or critical. Default info.
	LogLevel string `json:"log_level"`
	// Name is the process name shown in ps and in the runtime's sys.argv.
	// Default "gorn".
	Name string `json:"name"`
	// Reload is --reload: the master reloads the workers when a Python
	// file of the app (or one of ReloadExtraFiles) changes.
	Reload           bool     `json:"reload,omitempty"`
	ReloadExtraFiles []string `json:"reload_extra_files,omitempty"`
	// StatsdHost is --statsd-host (HOST:PORT; "" for none): the master and
	// the workers send gunicorn's statsd metrics there, with StatsdPrefix
	// (--statsd-prefix) before each name and DogstatsdTags
	// (--dogstatsd-tags) after each line.
	StatsdHost    string `json:"statsd_host,omitempty"`
	StatsdPrefix  string `json:"statsd_prefix,omitempty"`
	DogstatsdTags string `json:"dogstatsd_tags,omitempty"`
	// ThreadWorker is -k gthread: only the "Using worker:" line says so
	// (gunicorn's gthread worker with one thread runs as gorn's does).
	ThreadWorker bool `json:"thread_worker,omitempty"`
	// ReusePort is --reuse-port: the TCP sockets gorn binds get
	// SO_REUSEPORT, so another server may bind the same address.
	ReusePort bool `json:"reuse_port,omitempty"`
	// Syslog is --log-syslog: the error log, and unless
	// DisableRedirectAccessToSyslog the access log, also go to the syslog
	// server at SyslogTo (--log-syslog-to, logs.ParseSyslogAddr) with
	// SyslogFacility, tagged gunicorn.SyslogPrefix.error and .access.
	Syslog                        bool   `json:"syslog,omitempty"`
	SyslogTo                      string `json:"syslog_to,omitempty"`
	SyslogPrefix                  string `json:"syslog_prefix,omitempty"`
	SyslogFacility                string `json:"syslog_facility,omitempty"`
	DisableRedirectAccessToSyslog bool   `json:"disable_redirect_access_to_syslog,omitempty"`
	// Paste is --paste: a PasteDeploy ini file (FILE or FILE#name), an
	// absolute path after Finish, that the app is loaded from instead of
	// App; PasteGlobal are --paste-global KEY=VALUE pairs, its global
	// configuration.
	Paste       string   `json:"paste,omitempty"`
	PasteGlobal []string `json:"paste_global,omitempty"`
	// LogConfig is --log-config: a Python logging ini file, applied in
	// each runtime (logging.config.fileConfig) before the app is imported;
	// LogConfigJSON is --log-config-json, a file holding a JSON dict for
	// dictConfig; both are absolute paths after Finish. LogConfigDict is
	// --log-config-dict (gunicorn.conf.py's logconfig_dict), the JSON dict
	// itself. The runtime applies one: LogConfigDict, else LogConfigJSON,
	// else LogConfig, as gunicorn picks. They configure the app's Python
	// loggers; gorn's own logs are not Python's.
	LogConfig     string `json:"log_config,omitempty"`
	LogConfigJSON string `json:"log_config_json,omitempty"`
	LogConfigDict string `json:"log_config_dict,omitempty"`
	// LoggerClass is --logger-class (gunicorn.conf.py's logger_class): a
	// Python class, module.Class, that each runtime instantiates with the
	// settings, as gunicorn's arbiter does, and logs the app's requests
	// through (its access method) and the runtime's gunicorn.error lines;
	// __config__.NAME is NAME in the configuration file. "" (after
	// Finish, also for gunicorn's own gunicorn.glogging.Logger, "simple"
	// and gunicorn.instrument.statsd.Statsd): gorn's own logging.
	LoggerClass string `json:"logger_class,omitempty"`
	// Spew is --spew: each runtime traces every line of Python it runs to
	// standard output (sys.settrace), as gunicorn's workers do.
	Spew bool `json:"spew,omitempty"`
	// HooksFile is the gunicorn configuration file read (an absolute
	// path, or python:MODULE for a module imported from the directory
	// HooksPath), whose server hooks gorn runs, Hooks their names:
	// RuntimeHooks in each app runtime, MasterHooks in the master's hook
	// process. Empty when no file was read.
	HooksFile string   `json:"hooks_file,omitempty"`
	HooksPath string   `json:"hooks_path,omitempty"`
	Hooks     []string `json:"hooks,omitempty"`
	// CaptureOutput is --capture-output: the workers' and the app's
	// standard output goes to ErrorLog too, when it is a file.
	CaptureOutput bool `json:"capture_output,omitempty"`
	// PidFile is where the master writes its pid; empty for none.
	PidFile string `json:"pid_file"`
	// User and Group are --user and --group (a name or a numeric id; ""
	// for none): the workers, and their runtimes, run as this user and
	// group, the master as it was started.
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	// UID, GID and Groups are User and Group resolved by Finish: the
	// workers' user and group ids (-1: the master's) and supplementary
	// groups (User's, from the group database; none without User).
	UID    int   `json:"-"`
	GID    int   `json:"-"`
	Groups []int `json:"-"`
	// Umask is --umask: the mode bits unix sockets gorn binds are created
	// without (their mode is 0777 &^ Umask). Default 0, as gunicorn's.
	Umask int `json:"umask,omitempty"`
	// Python is the interpreter that runs the app runtime. Default
	// $VIRTUAL_ENV/bin/python, else python3 on PATH.
	Python string `json:"python"`
	// MetricsBind is where the master serves /metrics, /healthz and
	// /readyz: HOST:PORT, [V6]:PORT, unix:PATH or fd://N, as Binds. It
	// must not be one of Binds. Empty (the default) serves no metrics and
	// counts nothing.
	MetricsBind string `json:"metrics_bind"`
	// ForwardedAllowIPs are the peers (comma-separated IPs, CIDR networks
	// or "*") whose secure scheme headers (X-Forwarded-Proto: https and
	// the like) set wsgi.url_scheme; unix socket peers are always
	// trusted. The command line's default is "127.0.0.1,::1", or
	// $FORWARDED_ALLOW_IPS; empty trusts no IP peer.
	ForwardedAllowIPs string `json:"forwarded_allow_ips"`
	// ProxyProtocol is gunicorn's --proxy-protocol: "off" (the default;
	// empty means off), "v1", "v2" or "auto", the PROXY protocol header
	// versions looked for at the start of connections from
	// ProxyAllowFrom.
	ProxyProtocol string `json:"proxy_protocol,omitempty"`
	// ProxyAllowFrom are the peers (as ForwardedAllowIPs) whose PROXY
	// protocol header is honoured. The command line's default is
	// "127.0.0.1,::1".
	ProxyAllowFrom string `json:"proxy_allow_from,omitempty"`
	// SecureSchemeHeaders are the headers by which a ForwardedAllowIPs peer
	// sets wsgi.url_scheme (gunicorn's secure_scheme_headers): a JSON
	// object of header names (any case) to the value meaning https; any
	// other value means http. Empty means gunicorn's default,
	// {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https",
	// "X-FORWARDED-SSL": "on"}; "{}" none.
	SecureSchemeHeaders string `json:"secure_scheme_headers,omitempty"`
	// ForwarderHeaders are the request header names containing "_"
	// (comma-separated, any case, or "*") that a ForwardedAllowIPs peer
	// may pass to the app whatever HeaderMap says (gunicorn's
	// forwarder_headers); such a SCRIPT_NAME header sets the request's
	// SCRIPT_NAME. The command line's default is "SCRIPT_NAME,PATH_INFO";
	// empty allows none.
	ForwarderHeaders string `json:"forwarder_headers,omitempty"`
	// CertFile is the PEM server certificate (chain); setting it, or
	// KeyFile, makes every bind serve TLS. Empty (the default): no TLS.
	CertFile string `json:"certfile,omitempty"`
	// KeyFile is the PEM private key; empty means it is in CertFile.
	KeyFile string `json:"keyfile,omitempty"`
	// CACerts is a PEM bundle of the CAs that sign client certificates.
	CACerts string `json:"ca_certs,omitempty"`
	// CertReqs is gunicorn's --cert-reqs: 0 asks no client certificate
	// (the default), 1 verifies one if sent, 2 requires one.
	CertReqs int `json:"cert_reqs,omitempty"`
	// Ciphers is an OpenSSL-style cipher string restricting the TLS 1.2
	// cipher suites; empty keeps Go's defaults (see docs/tls.md).
	Ciphers string `json:"ciphers,omitempty"`
	// LimitRequestLine is the longest request line in bytes (gunicorn's
	// --limit-request-line); longer get 400. The command line's default is
	// 4094; 0 means unlimited (within a 1 MiB head) and values over 8190
	// mean 8190, as in gunicorn.
	LimitRequestLine int `json:"limit_request_line"`
	// LimitRequestFields is the most header fields a request may have
	// (--limit-request-fields); more get 431. The command line's default
	// is 100; 0 or over 32768 means 32768.
	LimitRequestFields int `json:"limit_request_fields"`
	// LimitRequestFieldSize is the largest header field in bytes, CRLF
	// included (--limit-request-field_size); larger get 431. The command
	// line's default is 8190; 0 means unlimited (within a 1 MiB head).
	LimitRequestFieldSize int `json:"limit_request_field_size"`
	// LimitRequestBody is the largest request body in bytes
	// (--limit-request-body); larger get 413. 0, the default, is
	// unlimited.
	LimitRequestBody int64 `json:"limit_request_body,omitempty"`
	// HeaderMap is what becomes of request header names containing "_"
	// (--header-map): "drop" (the default; empty means drop) leaves them
	// out of the environ, "refuse" answers 400, "dangerous" maps them like
	// "-" names.
	HeaderMap string `json:"header_map,omitempty"`
	// PermitObsoleteFolding accepts obs-fold header continuation lines
	// (--permit-obsolete-folding); by default they get 400.
	PermitObsoleteFolding bool `json:"permit_obsolete_folding,omitempty"`
}

// AccessToSyslog says the access log goes to syslog too: --log-syslog
// without --disable-redirect-access-to-syslog.
func (c *Config) AccessToSyslog() bool {
	return c.Syslog && !c.DisableRedirectAccessToSyslog
}

// URLScheme is wsgi.url_scheme for requests on this configuration's
// binds: "https" when TLS is on (gunicorn serves TLS on every bind).
func (c *Config) URLScheme() string {
	if c.CertFile != "" || c.KeyFile != "" {
		return "https"
	}
	return "http"
}

// LogLevels are the accepted values of LogLevel.
var LogLevels = []string{"debug", "info", "warning", "error", "critical"}

// Finish fills what depends on the environment, resolves paths and checks
// the configuration. getenv is os.Getenv in production.
func (c *Config) Finish(getenv func(string) string) error {
	if c.Paste != "" {
		if err := c.finishPaste(); err != nil {
			return err
		}
	} else if c.App == "" {
		return errors.New("no application module specified")
	}
	if len(c.Binds) == 0 {
		if port := getenv("PORT"); port != "" {
			c.Binds = []string{"0.0.0.0:" + port}
		} else {
			c.Binds = []string{"127.0.0.1:8000"}
		}
	}
	if c.Workers < 1 {
		return fmt.Errorf("--workers must be at least 1, not %d", c.Workers)
	}
	if c.Threads < 1 {
		return fmt.Errorf("--threads must be at least 1, not %d", c.Threads)
	}
	if c.WorkerConnections == 0 {
		c.WorkerConnections = 1000
	}
	if c.WorkerConnections < 1 {
		return fmt.Errorf("--worker-connections must be at least 1, not %d", c.WorkerConnections)
	}
	if c.Backlog < 1 {
		return fmt.Errorf("--backlog must be at least 1, not %d", c.Backlog)
	}
	if c.MaxRequests < 0 || c.MaxRequestsJitter < 0 || c.MaxWorkerMemory < 0 {
		return errors.New("--max-requests, --max-requests-jitter and --max-worker-memory must not be negative")
	}
	for name, d := range map[string]time.Duration{"--timeout": c.Timeout, "--graceful-timeout": c.GracefulTimeout, "--keep-alive": c.KeepAlive, "--boot-timeout": c.BootTimeout, "--header-timeout": c.HeaderTimeout, "--body-timeout": c.BodyTimeout} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	level := strings.ToLower(c.LogLevel)
	if level == "warn" {
		level = "warning"
	}
	ok := false
	for _, l := range LogLevels {
		ok = ok || l == level
	}
	if !ok {
		return fmt.Errorf("--log-level must be one of %s, not %q", strings.Join(LogLevels, ", "), c.LogLevel)
	}
	c.LogLevel = level
	if _, err := forwarded.ParseAllowList(c.ForwardedAllowIPs); err != nil {
		return fmt.Errorf("--forwarded-allow-ips: %w", err)
	}
	if _, err := forwarded.ParseAllowList(c.ProxyAllowFrom); err != nil {
		return fmt.Errorf("--proxy-allow-from: %w", err)
	}
	if _, err := forwarded.ParseSchemeHeaders(c.SecureSchemeHeaders); err != nil {
		return fmt.Errorf("--secure-scheme-headers: %w", err)
	}
	if _, err := forwarded.ParseHeaderNames(c.ForwarderHeaders); err != nil {
		return fmt.Errorf("--forwarder-headers: %w", err)
	}
	if _, err := proxyproto.ParseMode(c.ProxyProtocol); err != nil {
		return fmt.Errorf("--proxy-protocol: %w", err)
	}
	if c.LimitRequestLine < 0 || c.LimitRequestFields < 0 || c.LimitRequestFieldSize < 0 || c.LimitRequestBody < 0 {
		return errors.New("--limit-request-line, --limit-request-fields, --limit-request-field_size and --limit-request-body must not be negative")
	}
	hm, err := httpguard.ParseHeaderMap(c.HeaderMap)
	if err != nil {
		return err
	}
	c.HeaderMap = string(hm)
	if err := c.finishLoggerClass(); err != nil {
		return err
	}
	for _, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--env wants KEY=VALUE, not %q", kv)
		}
	}
	if c.Name == "" {
		c.Name = "gorn"
	}
	if c.StatsdHost != "" {
		if err := statsd.ParseHost(c.StatsdHost); err != nil {
			return err
		}
	}
	if c.Syslog {
		if _, _, err := logs.ParseSyslogAddr(c.SyslogTo); err != nil {
			return err
		}
		if _, err := logs.ParseSyslogFacility(c.SyslogFacility); err != nil {
			return err
		}
	}
	for name, p := range map[string]*string{"--log-config": &c.LogConfig, "--log-config-json": &c.LogConfigJSON} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		*p = abs
	}
	if c.LogConfigJSON != "" {
		b, err := os.ReadFile(c.LogConfigJSON)
		if err == nil {
			err = jsonObject(b)
		}
		if err != nil {
			return fmt.Errorf("--log-config-json: %w", err)
		}
	}
	if c.LogConfigDict != "" {
		if err := jsonObject([]byte(c.LogConfigDict)); err != nil {
			return fmt.Errorf("--log-config-dict: %w", err)
		}
	}
	if err := c.resolveOwner(); err != nil {
		return err
	}
	if c.Umask < 0 || c.Umask > 0o777 {
		return fmt.Errorf("--umask must be a mode from 0 to 0o777, not %#o", c.Umask)
	}
	python, err := FindPython(c.Python, getenv)
	if err != nil {
		return err
	}
	c.Python = python
	for i, p := range c.PythonPath {
		if abs, err := filepath.Abs(p); err == nil {
			c.PythonPath[i] = abs
		}
	}
	return nil
}

// FindPython picks the interpreter for the app runtime: explicit if set,
// else $VIRTUAL_ENV/bin/python, else python3 on PATH. It returns an
// absolute path.
func FindPython(explicit string, getenv func(string) string) (string, error) {
	candidate := explicit
	if candidate == "" {
		if venv := getenv("VIRTUAL_ENV"); venv != "" {
			candidate = filepath.Join(venv, "bin", "python")
		} else {
			candidate = "python3"
		}
	}
	path, err := exec.LookPath(candidate)
	if err != nil {
		return "", fmt.Errorf("cannot find the Python interpreter %q (set --python): %w", candidate, err)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, nil
}

// ParseSize parses a memory size: a number of bytes, or a number with a
// binary unit K, M, G (or KB, MB, GB, KiB, MiB, GiB; case-insensitive).
func ParseSize(text string) (int64, error) {
	s := strings.ToUpper(strings.TrimSpace(text))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || !(n >= 0) || n*float64(mult) >= 1<<62 { // NaN fails n >= 0
		return 0, fmt.Errorf("invalid size %q: want bytes or a number with K, M or G", text)
	}
	return int64(n * float64(mult)), nil
}

// jsonObject checks that b is one JSON object (a dict for dictConfig).
func jsonObject(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil {
		return errors.New("not a JSON object: null")
	}
	return nil
}

// gunicornLoggers are the --logger-class values that name gunicorn's own
// Logger, which gorn's logging is (statsd included).
var gunicornLoggers = []string{"simple", "egg:gunicorn#simple", "gunicorn.glogging.Logger", "gunicorn.instrument.statsd.Statsd"}

// finishLoggerClass checks --logger-class: a dotted path of Python names,
// one in the configuration file (__config__.NAME) only when one was read.
// gunicorn's own Logger becomes "".
func (c *Config) finishLoggerClass() error {
	if slices.Contains(gunicornLoggers, c.LoggerClass) {
		c.LoggerClass = ""
	}
	if c.LoggerClass == "" {
		return nil
	}
	parts := strings.Split(c.LoggerClass, ".")
	for _, part := range parts {
		if !pythonName(part) {
			return fmt.Errorf("--logger-class %q: not a Python module.Class path", c.LoggerClass)
		}
	}
	if len(parts) < 2 {
		return fmt.Errorf("--logger-class %q: not a Python module.Class path", c.LoggerClass)
	}
	if parts[0] == "__config__" && c.HooksFile == "" {
		return fmt.Errorf("--logger-class %s names the configuration file, and none was read", c.LoggerClass)
	}
	return nil
}

// pythonName reports whether s looks like a Python identifier (letters,
// digits and "_", not starting with a digit).
func pythonName(s string) bool {
	for i, r := range s {
		if !(r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)) {
			return false
		}
	}
	return s != ""
}

// HasHook reports whether the configuration file defines one of names.
func (c *Config) HasHook(names ...string) bool {
	return slices.ContainsFunc(c.Hooks, func(h string) bool { return slices.Contains(names, h) })
}
