package config

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFileSettingsArgs(t *testing.T) {
	tests := []struct {
		name     string
		settings map[string]any
		hooks    []string
		objects  []string
		skip     map[string]bool
		want     []string
		warnings []string
		err      string
	}{
		{name: "empty"},
		{
			name: "flags",
			settings: map[string]any{
				"bind": []any{"0.0.0.0:80", "unix:/run/g.sock"}, "workers": 4.0, "threads": "2", "timeout": 20.5,
				"keepalive": 5.0, "raw_env": []any{"A=1", "B=2"}, "pidfile": "/run/g.pid", "accesslog": "-",
				"access_log_format": "%(h)s %(D)s", "loglevel": "debug", "proc_name": "shop", "chdir": "/srv",
				"forwarded_allow_ips": []any{"10.0.0.1", "10.0.0.2"}, "proxy_allow_ips": "*",
				"forwarder_headers":        []any{"SCRIPT_NAME", "REMOTE_USER"},
				"limit_request_field_size": 0.0, "suppress_ragged_eofs": false, "cert_reqs": 2.0,
				"wsgi_app": "shop.wsgi:application",
			},
			want: []string{
				// In the order of the settings' names.
				"--access-logformat=%(h)s %(D)s", "--access-logfile=-", "--bind=0.0.0.0:80", "--bind=unix:/run/g.sock",
				"--cert-reqs=2", "--chdir=/srv", "--forwarded-allow-ips=10.0.0.1,10.0.0.2",
				"--forwarder-headers=SCRIPT_NAME,REMOTE_USER", "--keep-alive=5",
				"--limit-request-field_size=0", "--log-level=debug", "--pid=/run/g.pid", "--name=shop",
				"--proxy-allow-from=*", "--env=A=1", "--env=B=2", "--suppress-ragged-eofs=false", "--threads=2",
				"--timeout=20.5", "--workers=4", "shop.wsgi:application",
			},
		},
		{
			name:     "None is the default",
			settings: map[string]any{"accesslog": nil, "pidfile": nil, "bind": nil, "wsgi_app": nil},
		},
		{
			name:     "the command line replaces bind, raw_env and wsgi_app",
			settings: map[string]any{"bind": "0.0.0.0:80", "raw_env": "A=1", "wsgi_app": "a:b", "workers": 3.0},
			skip:     map[string]bool{"bind": true, "raw_env": true, "wsgi_app": true},
			want:     []string{"--workers=3"},
		},
		{
			name:     "secure_scheme_headers",
			settings: map[string]any{"secure_scheme_headers": map[string]any{"X-SCHEME": "https"}},
			want:     []string{`--secure-scheme-headers={"X-SCHEME":"https"}`},
		},
		{
			name:     "proxy_protocol",
			settings: map[string]any{"proxy_protocol": true},
			want:     []string{"--proxy-protocol=auto"},
		},
		{
			name:     "worker classes gorn serves",
			settings: map[string]any{"worker_class": "gthread"},
		},
		{
			name:     "settings at their defaults say nothing",
			settings: map[string]any{"user": nil, "group": nil, "paste": nil, "worker_class": "sync", "preload_app": false, "helper_value": 7.0},
		},
		{
			name:     "settings gorn can do without are ignored, with a warning",
			settings: map[string]any{"preload_app": true, "worker_tmp_dir": "/dev/shm", "sendfile": false},
			warnings: []string{"Settings gorn does not have are ignored: preload_app"}, // worker_tmp_dir means nothing to gorn
		},
		{
			name:     "logconfig_dict, as JSON",
			settings: map[string]any{"logconfig_dict": map[string]any{"version": 1.0, "root": map[string]any{"level": "DEBUG", "handlers": []any{}}}},
			want:     []string{`--log-config-dict={"root":{"handlers":[],"level":"DEBUG"},"version":1}`},
		},
		{
			name:     "an empty logconfig_dict is gunicorn's default",
			settings: map[string]any{"logconfig_dict": map[string]any{}},
		},
		{
			name:     "settings holding Python objects are ignored, with a warning",
			objects:  []string{"Helper", "bind", "logconfig_dict"},
			skip:     map[string]bool{"bind": true},
			warnings: []string{"Settings holding Python objects are ignored (gorn reads str, int, float, bool, None, and lists and dicts of them): logconfig_dict"},
		},
		{
			name:     "logger_class by name",
			settings: map[string]any{"logger_class": "myapp.log.JSONLogger", "wsgi_app": "app:app"},
			want:     []string{"--logger-class=myapp.log.JSONLogger", "app:app"},
		},
		{
			name:     "logger_class, a class the file defines, before the app",
			settings: map[string]any{"wsgi_app": "app:app"},
			objects:  []string{"logger_class"},
			want:     []string{"--logger-class=__config__.logger_class", "app:app"},
		},
		{
			name:     "ssl_context is not run",
			hooks:    []string{"helper", "post_fork", "pre_request", "when_ready", "worker_abort", "ssl_context"},
			warnings: []string{"Server hooks gorn does not run: ssl_context"},
		},
		{
			name:     "user, group and umask",
			settings: map[string]any{"user": "www-data", "group": "www-data", "umask": 23.0, "initgroups": true},
			want:     []string{"--group=www-data", "--initgroups=true", "--umask=23", "--user=www-data"},
		},
		{
			name:     "syslog",
			settings: map[string]any{"syslog": true, "syslog_addr": "udp://10.0.0.1:514", "syslog_prefix": "shop", "syslog_facility": "local0", "disable_redirect_access_to_syslog": true},
			want:     []string{"--disable-redirect-access-to-syslog=true", "--log-syslog=true", "--log-syslog-to=udp://10.0.0.1:514", "--log-syslog-facility=local0", "--log-syslog-prefix=shop"},
		},
		{
			name:     "statsd",
			settings: map[string]any{"statsd_host": "localhost:8125", "statsd_prefix": "shop", "dogstatsd_tags": "env:prod"},
			want:     []string{"--dogstatsd-tags=env:prod", "--statsd-host=localhost:8125", "--statsd-prefix=shop"},
		},
		{
			name:     "check_config and print_config",
			settings: map[string]any{"check_config": true, "print_config": false},
			want:     []string{"--check-config=true", "--print-config=false"},
		},
		{
			name:     "capture_output and reload",
			settings: map[string]any{"capture_output": true, "reload": true, "reload_extra_files": []any{"a.html", "b.toml"}, "reload_engine": "poll"},
			want:     []string{"--capture-output=true", "--reload=true", "--reload-engine=poll", "--reload-extra-file=a.html", "--reload-extra-file=b.toml"},
		},
		{
			name:     "paste",
			settings: map[string]any{"paste": "development.ini#api", "raw_paste_global_conf": []any{"region=eu"}},
			want:     []string{"--paste=development.ini#api", "--paste-global=region=eu"},
		},
		{
			name:     "daemon",
			settings: map[string]any{"daemon": true, "enable_stdio_inheritance": false},
			want:     []string{"--daemon=true", "--enable-stdio-inheritance=false"},
		},
		{
			name:     "other worker classes",
			settings: map[string]any{"worker_class": "uvicorn.workers.UvicornWorker"},
			err:      `worker_class "uvicorn.workers.UvicornWorker" is not supported`,
		},
		{
			name:     "wrong types",
			settings: map[string]any{"workers": 2.5, "bind": 80.0, "suppress_ragged_eofs": "yes", "chdir": true, "raw_env": []any{1.0}, "wsgi_app": 3.0, "logconfig_dict": "logging.ini"},
			err:      "bind: must be a string or a list of strings, not 80; chdir: must be a string, not true; logconfig_dict: must be a dict, not logging.ini; raw_env: must be a list of strings, not [1]; suppress_ragged_eofs: must be True or False, not yes; workers: must be a whole number, not 2.5; wsgi_app: must be a string",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := &FileSettings{Settings: tt.settings, Hooks: tt.hooks, Objects: tt.objects}
			got, warnings, err := fs.Args(tt.skip)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Args() error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Args() error = %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Args() =\n%q\nwant\n%q", got, tt.want)
			}
			if !slices.Equal(warnings, tt.warnings) {
				t.Errorf("warnings = %q, want %q", warnings, tt.warnings)
			}
		})
	}
}

// testPython is python3, for running configuration files; the test is
// skipped without one (outside CI).
func testPython(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no python3")
		}
		t.Skip("no python3")
	}
	return py
}

func TestReadGunicornFile(t *testing.T) {
	py := testPython(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	path := write("gunicorn.conf.py", `import multiprocessing, os, sys
print("printed while loading")
sys.stderr.write("written to stderr while loading\n")
bind = ("0.0.0.0:80",)
workers = multiprocessing.cpu_count() * 0 + 3
timeout = 1.5
raw_env = ["A=" + os.path.basename(__file__)]
secure_scheme_headers = {"X-PROTO": "https"}
nothing = None
def post_fork(server, worker):
    pass
class Helper:
    pass
_private = lambda: 1
logconfig_dict = {"handlers": {"out": {"class": "logging.StreamHandler", "stream": sys.stdout}}}
logger_class = Helper
`)
	fs, err := ReadGunicornFile(py, path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"bind": `[0.0.0.0:80]`, "workers": "3", "timeout": "1.5", "raw_env": "[A=gunicorn.conf.py]", "secure_scheme_headers": "map[X-PROTO:https]", "nothing": "<nil>"}
	for k, v := range want {
		if got := fmt.Sprint(fs.Settings[k]); got != v {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	for _, k := range []string{"multiprocessing", "os", "Helper", "post_fork"} {
		if _, ok := fs.Settings[k]; ok {
			t.Errorf("%s is a setting", k)
		}
	}
	if fs.File != path {
		t.Errorf("file = %q, want %q", fs.File, path)
	}
	// What the file wrote is the caller's to show, each where it went.
	if got := string(fs.Stdout); got != "printed while loading\n" {
		t.Errorf("stdout = %q, want the file's print", got)
	}
	if got := string(fs.Stderr); got != "written to stderr while loading\n" {
		t.Errorf("stderr = %q, want the file's write", got)
	}
	if !slices.Equal(fs.Hooks, []string{"_private", "post_fork"}) {
		t.Errorf("hooks = %q, want _private and post_fork", fs.Hooks)
	}
	// Modules are neither settings nor objects.
	if want := []string{"Helper", "logconfig_dict", "logger_class"}; !slices.Equal(fs.Objects, want) {
		t.Errorf("objects = %q, want %q", fs.Objects, want)
	}

	errs := []struct{ text, want string }{
		{"workers = 1/0\n", "ZeroDivisionError: division by zero"},
		{"workers = (\n", "SyntaxError"},
		{"import no_such_module_here\n", "ModuleNotFoundError: No module named 'no_such_module_here'"},
	}
	for i, tt := range errs {
		p := write("bad"+string(rune('0'+i))+".py", tt.text)
		if _, err := ReadGunicornFile(py, p); err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), p+": ") {
			t.Errorf("%q: error %v, want %q", tt.text, err, tt.want)
		}
	}
	if _, err := ReadGunicornFile(py, filepath.Join(dir, "missing.py")); err == nil || !strings.Contains(err.Error(), "No such file") {
		t.Errorf("a missing file: %v", err)
	}
}

// TestReadGunicornFileLocations: file:PATH names a file, and
// python:MODULE imports a module from the current directory, as gunicorn
// does; a package's module may import its siblings relatively.
func TestReadGunicornFileLocations(t *testing.T) {
	py := testPython(t)
	dir := t.TempDir()
	for name, text := range map[string]string{
		"deploy/__init__.py": "",
		"deploy/base.py":     "WORKERS = 4\n",
		"deploy/gunicorn.py": "from .base import WORKERS\nworkers = WORKERS\ndef when_ready(server):\n    pass\n",
		"plain.conf":         "workers = 5\n",
	} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	tests := []struct {
		location, file string
		workers        float64
		hooks          []string
		err            string
	}{
		{location: "python:deploy.gunicorn", file: filepath.Join(dir, "deploy", "gunicorn.py"), workers: 4, hooks: []string{"when_ready"}},
		{location: "file:plain.conf", file: filepath.Join(dir, "plain.conf"), workers: 5},
		{location: "plain.conf", file: filepath.Join(dir, "plain.conf"), workers: 5},
		{location: "python:deploy.missing", err: "ModuleNotFoundError: No module named 'deploy.missing'"},
		{location: "file:missing.conf", err: "No such file"},
	}
	for _, tt := range tests {
		fs, err := ReadGunicornFile(py, tt.location)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), tt.location+": ") {
				t.Errorf("%s: error %v, want %q", tt.location, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.location, err)
		}
		if fs.File != tt.file || fs.Settings["workers"] != tt.workers || !slices.Equal(fs.Hooks, tt.hooks) {
			t.Errorf("%s: file %q, workers %v, hooks %q; want %q, %v, %q", tt.location, fs.File, fs.Settings["workers"], fs.Hooks, tt.file, tt.workers, tt.hooks)
		}
	}
}

func TestRunHooks(t *testing.T) {
	for _, tt := range []struct {
		hooks []string
		want  []string
	}{
		{nil, nil},
		{[]string{"helper", "ssl_context"}, nil},
		{[]string{"when_ready", "helper", "post_fork", "ssl_context", "worker_int"}, []string{"when_ready", "post_fork", "worker_int"}},
		{append(slices.Clone(RuntimeHooks), MasterHooks...), append(slices.Clone(RuntimeHooks), MasterHooks...)},
	} {
		fs := &FileSettings{Hooks: tt.hooks}
		if got := fs.RunHooks(); !slices.Equal(got, tt.want) {
			t.Errorf("RunHooks(%q) = %q, want %q", tt.hooks, got, tt.want)
		}
	}
}
