package config

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// GunicornFile is the configuration file read from the current directory
// when no -c/--config names one, as gunicorn reads it.
const GunicornFile = "gunicorn.conf.py"

// readGunicornConf runs a configuration file and prints its settings as
// JSON (read_gunicorn_conf.py).
//
//go:embed read_gunicorn_conf.py
var readGunicornConf string

// fileTimeout bounds how long a configuration file may run.
const fileTimeout = 30 * time.Second

// FileSettings are what a gunicorn configuration file set: its top-level
// names bound to data, those bound to functions (server hooks, or
// helpers), and those bound to other Python objects (classes, streams, or
// dicts holding them), which cannot be read as settings.
type FileSettings struct {
	// File is the file read, an absolute path: for a python:MODULE
	// location, the module's file ("" if it has none).
	File string `json:"file"`
	// Module is the module a python:MODULE location imported, ImportPath
	// the sys.path directory it came from; both empty for a file.
	Module     string         `json:"module"`
	ImportPath string         `json:"import_path"`
	Settings   map[string]any `json:"settings"`
	Hooks      []string       `json:"hooks"`
	Objects    []string       `json:"objects"`
	// Stdout and Stderr are what the file wrote to standard output and
	// standard error, for the caller to pass on as gunicorn, which runs
	// the file in its own process, shows them.
	Stdout, Stderr []byte `json:"-"`
}

// ReadGunicornFile runs the configuration file at path with the Python
// interpreter python, as gunicorn runs it, and returns what it set. As in
// gunicorn, path may also be file:PATH, or python:MODULE, a module
// imported from the current directory or the interpreter's sys.path. An
// exception in the file is an error that ends with the exception's line.
func ReadGunicornFile(python, path string) (*FileSettings, error) {
	ctx, cancel := context.WithTimeout(context.Background(), fileTimeout)
	defer cancel()
	// The result comes back in a memory file, descriptor 3: standard
	// output is the file's.
	fd, err := unix.MemfdCreate("gorn-conf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("%s: a memory file for its settings: %w", path, err)
	}
	result := os.NewFile(uintptr(fd), "gorn-conf")
	defer result.Close()
	cmd := exec.CommandContext(ctx, python, "-c", readGunicornConf, path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.ExtraFiles = []*os.File{result}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: still running after %s", path, fileTimeout)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if last := lines[len(lines)-1]; last != "" {
			return nil, fmt.Errorf("%s: %s", path, last)
		}
		return nil, fmt.Errorf("%s: %s: %w", path, python, err)
	}
	var fs FileSettings
	b, err := io.ReadAll(io.NewSectionReader(result, 0, math.MaxInt64))
	if err == nil {
		err = json.Unmarshal(b, &fs)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: reading its settings: %w", path, err)
	}
	fs.Stdout, fs.Stderr = stdout.Bytes(), stderr.Bytes()
	return &fs, nil
}

// fileFlag is how a gunicorn setting becomes a gorn flag.
type fileFlag struct {
	flag string
	kind byte // 'i' integer, 'n' number, 's' string, 'b' bool, 'l' list (the flag repeated), 'c' list joined by commas, 'p' --proxy-protocol, 'd' dict (as JSON)
}

// fileFlags are the gunicorn settings gorn has, and their flags.
var fileFlags = map[string]fileFlag{
	"bind":                              {"bind", 'l'},
	"backlog":                           {"backlog", 'i'},
	"workers":                           {"workers", 'i'},
	"threads":                           {"threads", 'i'},
	"worker_connections":                {"worker-connections", 'i'},
	"max_requests":                      {"max-requests", 'i'},
	"max_requests_jitter":               {"max-requests-jitter", 'i'},
	"timeout":                           {"timeout", 'n'},
	"graceful_timeout":                  {"graceful-timeout", 'n'},
	"keepalive":                         {"keep-alive", 'n'},
	"limit_request_line":                {"limit-request-line", 'i'},
	"limit_request_fields":              {"limit-request-fields", 'i'},
	"limit_request_field_size":          {"limit-request-field_size", 'i'},
	"chdir":                             {"chdir", 's'},
	"raw_env":                           {"env", 'l'},
	"pidfile":                           {"pid", 's'},
	"forwarded_allow_ips":               {"forwarded-allow-ips", 'c'},
	"accesslog":                         {"access-logfile", 's'},
	"access_log_format":                 {"access-logformat", 's'},
	"errorlog":                          {"error-logfile", 's'},
	"loglevel":                          {"log-level", 's'},
	"proc_name":                         {"name", 's'},
	"pythonpath":                        {"pythonpath", 's'},
	"proxy_protocol":                    {"proxy-protocol", 'p'},
	"proxy_allow_ips":                   {"proxy-allow-from", 'c'},
	"forwarder_headers":                 {"forwarder-headers", 'c'},
	"secure_scheme_headers":             {"secure-scheme-headers", 'd'},
	"keyfile":                           {"keyfile", 's'},
	"certfile":                          {"certfile", 's'},
	"ca_certs":                          {"ca-certs", 's'},
	"cert_reqs":                         {"cert-reqs", 'i'},
	"ciphers":                           {"ciphers", 's'},
	"ssl_version":                       {"ssl-version", 's'},
	"suppress_ragged_eofs":              {"suppress-ragged-eofs", 'b'},
	"do_handshake_on_connect":           {"do-handshake-on-connect", 'b'},
	"header_map":                        {"header-map", 's'},
	"permit_obsolete_folding":           {"permit-obsolete-folding", 'b'},
	"capture_output":                    {"capture-output", 'b'},
	"reload":                            {"reload", 'b'},
	"reload_extra_files":                {"reload-extra-file", 'l'},
	"reload_engine":                     {"reload-engine", 's'},
	"statsd_host":                       {"statsd-host", 's'},
	"statsd_prefix":                     {"statsd-prefix", 's'},
	"dogstatsd_tags":                    {"dogstatsd-tags", 's'},
	"daemon":                            {"daemon", 'b'},
	"reuse_port":                        {"reuse-port", 'b'},
	"logconfig":                         {"log-config", 's'},
	"logconfig_json":                    {"log-config-json", 's'},
	"logconfig_dict":                    {"log-config-dict", 'd'},
	"logger_class":                      {"logger-class", 's'},
	"spew":                              {"spew", 'b'},
	"paste":                             {"paste", 's'},
	"check_config":                      {"check-config", 'b'},
	"print_config":                      {"print-config", 'b'},
	"raw_paste_global_conf":             {"paste-global", 'l'},
	"syslog":                            {"log-syslog", 'b'},
	"syslog_addr":                       {"log-syslog-to", 's'},
	"syslog_prefix":                     {"log-syslog-prefix", 's'},
	"syslog_facility":                   {"log-syslog-facility", 's'},
	"disable_redirect_access_to_syslog": {"disable-redirect-access-to-syslog", 'b'},
	"enable_stdio_inheritance":          {"enable-stdio-inheritance", 'b'},
	"user":                              {"user", 's'},
	"group":                             {"group", 's'},
	"umask":                             {"umask", 'i'},
	"initgroups":                        {"initgroups", 'b'},
}

// fileIgnored are gunicorn settings gorn lacks that it can do without, with
// their gunicorn defaults (nil: None, False, 0, "" or empty): set to
// anything else, they are ignored with a warning.
var fileIgnored = map[string]any{
	// Runtime behaviour gorn has no equivalent for.
	"preload_app": nil, "sendfile": nil, "tmp_upload_dir": nil, "default_proc_name": nil,
	// Request handling: gorn's is fixed (and strict).
	"strip_header_spaces":                nil,
	"tolerate_dangerous_framing":         nil,
	"permit_unconventional_http_method":  nil,
	"permit_unconventional_http_version": nil,
	"casefold_http_method":               nil,
}

// RuntimeHooks are the server hooks gorn runs in each app runtime (the
// process the app runs in, where gunicorn runs them in its worker).
var RuntimeHooks = []string{"post_fork", "post_worker_init", "pre_request", "post_request", "worker_exit", "worker_int", "worker_abort"}

// MasterHooks are the server hooks gunicorn runs in its master, which gorn's
// master runs in a Python process of their own.
var MasterHooks = []string{"on_starting", "when_ready", "on_reload", "pre_fork", "child_exit", "nworkers_changed", "pre_exec", "on_exit"}

// fileHooks are gunicorn's other server hooks, which gorn does not run:
// ssl_context, which builds gunicorn's TLS context (gorn's TLS is Go's).
var fileHooks = []string{"ssl_context"}

// WorkerClasses are the worker classes (-k, worker_class) gorn serves as
// they are meant: one request at a time per thread, --threads threads per
// worker.
var WorkerClasses = []string{"sync", "gthread", "gunicorn.workers.sync.SyncWorker", "gunicorn.workers.gthread.ThreadWorker"}

// Args turns the settings into gorn's command-line arguments ("--flag=value",
// with wsgi_app last, as the APP argument), to be parsed before the real
// command line, which overrides them. Settings named in skip are left out
// (the command line sets them: a --bind replaces every bind of the file).
// It also returns warnings for what gorn ignores; a setting gorn cannot
// honour, or a value of the wrong type, is an error.
func (fs *FileSettings) Args(skip map[string]bool) (args, warnings []string, err error) {
	names := make([]string, 0, len(fs.Settings))
	for name := range fs.Settings {
		names = append(names, name)
	}
	slices.Sort(names)
	var ignored, errs []string
	for _, name := range names {
		v := fs.Settings[name]
		if skip[name] {
			continue
		}
		if f, ok := fileFlags[name]; ok {
			values, err := flagValues(f.kind, v)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			}
			for _, s := range values {
				args = append(args, "--"+f.flag+"="+s)
			}
			continue
		}
		switch def, ignoredName := fileIgnored[name]; {
		case name == "wsgi_app":
			// Added last, below.
		case name == "worker_class":
			if s, ok := v.(string); ok && !slices.Contains(WorkerClasses, s) {
				errs = append(errs, fmt.Sprintf("worker_class %q is not supported: gorn serves WSGI apps, on --threads threads per worker", s))
			}
		case ignoredName:
			if !isDefault(v, def) {
				ignored = append(ignored, name)
			}
		}
	}
	if slices.Contains(fs.Objects, "logger_class") {
		// A class the file defines: the runtimes take it from the file.
		args = append(args, "--logger-class=__config__.logger_class")
	}
	if app, ok := fs.Settings["wsgi_app"]; ok && !skip["wsgi_app"] && app != nil {
		s, ok := app.(string)
		if !ok {
			errs = append(errs, "wsgi_app: must be a string")
		} else {
			args = append(args, s)
		}
	}
	if len(errs) > 0 {
		return nil, nil, errors.New(strings.Join(errs, "; "))
	}
	if len(ignored) > 0 {
		warnings = append(warnings, "Settings gorn does not have are ignored: "+strings.Join(ignored, ", "))
	}
	var objects []string
	for _, name := range fs.Objects {
		_, flag := fileFlags[name]
		_, ignored := fileIgnored[name]
		if (flag || ignored || name == "wsgi_app" || name == "worker_class") && name != "logger_class" && !skip[name] {
			objects = append(objects, name)
		}
	}
	if len(objects) > 0 {
		warnings = append(warnings, "Settings holding Python objects are ignored (gorn reads str, int, float, bool, None, and lists and dicts of them): "+strings.Join(objects, ", "))
	}
	var hooks []string
	for _, h := range fs.Hooks {
		if slices.Contains(fileHooks, h) {
			hooks = append(hooks, h)
		}
	}
	if len(hooks) > 0 {
		warnings = append(warnings, "Server hooks gorn does not run: "+strings.Join(hooks, ", "))
	}
	return args, warnings, nil
}

// flagValues formats a setting's JSON value as the flag's values: none
// for None.
func flagValues(kind byte, v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	switch kind {
	case 'l', 'c':
		var items []string
		switch v := v.(type) {
		case string:
			items = []string{v}
		case []any:
			for _, x := range v {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("must be a list of strings, not %v", v)
				}
				items = append(items, s)
			}
		default:
			return nil, fmt.Errorf("must be a string or a list of strings, not %v", v)
		}
		if kind == 'c' {
			return []string{strings.Join(items, ",")}, nil
		}
		return items, nil
	case 'b':
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("must be True or False, not %v", v)
		}
		return []string{strconv.FormatBool(b)}, nil
	case 'd':
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("must be a dict, not %v", v)
		}
		if len(m) == 0 {
			return nil, nil // gunicorn's default
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		return []string{string(b)}, nil
	case 'p':
		switch v := v.(type) {
		case bool:
			if v {
				return []string{"auto"}, nil
			}
			return []string{"off"}, nil
		case string:
			return []string{v}, nil
		}
		return nil, fmt.Errorf("must be True, False or a mode, not %v", v)
	}
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case float64:
		if kind == 'i' && (v != math.Trunc(v) || math.Abs(v) > 1<<53) {
			return nil, fmt.Errorf("must be a whole number, not %v", v)
		}
		return []string{strconv.FormatFloat(v, 'f', -1, 64)}, nil
	}
	if kind == 's' {
		return nil, fmt.Errorf("must be a string, not %v", v)
	}
	return nil, fmt.Errorf("must be a number, not %v", v)
}

// isDefault reports whether a setting's value is its gunicorn default:
// def, or for a nil def None, False, 0, "" or an empty list or dict.
func isDefault(v, def any) bool {
	if def != nil {
		a, _ := json.Marshal(v)
		b, _ := json.Marshal(def)
		return bytes.Equal(a, b)
	}
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case float64:
		return v == 0
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// RunHooks are the server hooks the file defines that gorn runs (of
// RuntimeHooks and MasterHooks).
func (fs *FileSettings) RunHooks() []string {
	var hooks []string
	for _, h := range fs.Hooks {
		if slices.Contains(RuntimeHooks, h) || slices.Contains(MasterHooks, h) {
			hooks = append(hooks, h)
		}
	}
	return hooks
}
