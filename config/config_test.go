package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeExecutable creates an executable file at path (and its directory).
func fakeExecutable(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// wantLogger checks Config.LoggerClass after Finish.
func wantLogger(want string) func(t *testing.T, c *Config) {
	return func(t *testing.T, c *Config) {
		if c.LoggerClass != want {
			t.Errorf("LoggerClass = %q, want %q", c.LoggerClass, want)
		}
	}
}

func TestFinish(t *testing.T) {
	python := fakeExecutable(t, filepath.Join(t.TempDir(), "python"))
	base := func() *Config {
		return &Config{
			App:             "app:app",
			Workers:         1,
			Threads:         1,
			Backlog:         2048,
			Timeout:         30 * time.Second,
			GracefulTimeout: 30 * time.Second,
			KeepAlive:       2 * time.Second,
			BootTimeout:     120 * time.Second,
			LogLevel:        "info",
			Python:          python,
		}
	}
	tests := []struct {
		name    string
		edit    func(c *Config)
		env     map[string]string
		wantErr string // substring; empty means success
		check   func(t *testing.T, c *Config)
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c *Config) {
				if !reflect.DeepEqual(c.Binds, []string{"127.0.0.1:8000"}) {
					t.Errorf("Binds = %q, want [127.0.0.1:8000]", c.Binds)
				}
				if c.Name != "gorn" {
					t.Errorf("Name = %q, want gorn", c.Name)
				}
				if c.LogLevel != "info" {
					t.Errorf("LogLevel = %q, want info", c.LogLevel)
				}
				if c.Python != python {
					t.Errorf("Python = %q, want %q", c.Python, python)
				}
			},
		},
		{
			name: "PORT sets the default bind",
			env:  map[string]string{"PORT": "5000"},
			check: func(t *testing.T, c *Config) {
				if !reflect.DeepEqual(c.Binds, []string{"0.0.0.0:5000"}) {
					t.Errorf("Binds = %q, want [0.0.0.0:5000]", c.Binds)
				}
			},
		},
		{
			name: "explicit binds win over PORT",
			edit: func(c *Config) { c.Binds = []string{"unix:/tmp/a.sock", "[::1]:9000"} },
			env:  map[string]string{"PORT": "5000"},
			check: func(t *testing.T, c *Config) {
				if !reflect.DeepEqual(c.Binds, []string{"unix:/tmp/a.sock", "[::1]:9000"}) {
					t.Errorf("Binds = %q", c.Binds)
				}
			},
		},
		{
			name: "name kept",
			edit: func(c *Config) { c.Name = "myapp" },
			check: func(t *testing.T, c *Config) {
				if c.Name != "myapp" {
					t.Errorf("Name = %q, want myapp", c.Name)
				}
			},
		},
		{name: "no app", edit: func(c *Config) { c.App = "" }, wantErr: "no application module specified"},
		{name: "zero workers", edit: func(c *Config) { c.Workers = 0 }, wantErr: "--workers must be at least 1, not 0"},
		{name: "negative workers", edit: func(c *Config) { c.Workers = -3 }, wantErr: "--workers must be at least 1, not -3"},
		{name: "zero threads", edit: func(c *Config) { c.Threads = 0 }, wantErr: "--threads must be at least 1, not 0"},
		{name: "zero backlog", edit: func(c *Config) { c.Backlog = 0 }, wantErr: "--backlog must be at least 1, not 0"},
		{name: "secure scheme headers not an object", edit: func(c *Config) { c.SecureSchemeHeaders = `"https"` }, wantErr: `--secure-scheme-headers: want a JSON object`},
		{name: "forwarder header not a name", edit: func(c *Config) { c.ForwarderHeaders = "SCRIPT_NAME,X:Y" }, wantErr: `--forwarder-headers: invalid header name "X:Y"`},
		{name: "many workers and threads", edit: func(c *Config) { c.Workers, c.Threads, c.Backlog = 64, 32, 1 }},
		{name: "negative timeout", edit: func(c *Config) { c.Timeout = -time.Second }, wantErr: "--timeout must not be negative"},
		{name: "negative graceful timeout", edit: func(c *Config) { c.GracefulTimeout = -1 }, wantErr: "--graceful-timeout must not be negative"},
		{name: "negative keep-alive", edit: func(c *Config) { c.KeepAlive = -time.Millisecond }, wantErr: "--keep-alive must not be negative"},
		{name: "negative boot timeout", edit: func(c *Config) { c.BootTimeout = -time.Hour }, wantErr: "--boot-timeout must not be negative"},
		{name: "zero durations", edit: func(c *Config) { c.Timeout, c.GracefulTimeout, c.KeepAlive, c.BootTimeout = 0, 0, 0, 0 }},
		{name: "log level debug", edit: func(c *Config) { c.LogLevel = "debug" }, check: wantLevel("debug")},
		{name: "log level warning", edit: func(c *Config) { c.LogLevel = "warning" }, check: wantLevel("warning")},
		{name: "log level warn", edit: func(c *Config) { c.LogLevel = "warn" }, check: wantLevel("warning")},
		{name: "log level WARN", edit: func(c *Config) { c.LogLevel = "WARN" }, check: wantLevel("warning")},
		{name: "log level ERROR", edit: func(c *Config) { c.LogLevel = "ERROR" }, check: wantLevel("error")},
		{name: "log level Critical", edit: func(c *Config) { c.LogLevel = "Critical" }, check: wantLevel("critical")},
		{name: "log level unknown", edit: func(c *Config) { c.LogLevel = "verbose" }, wantErr: `--log-level must be one of debug, info, warning, error, critical, not "verbose"`},
		{name: "log level empty", edit: func(c *Config) { c.LogLevel = "" }, wantErr: "--log-level must be one of"},
		{name: "env ok", edit: func(c *Config) { c.Env = []string{"A=1", "B=", "C=x=y"} }},
		{name: "env without =", edit: func(c *Config) { c.Env = []string{"A=1", "B"} }, wantErr: `--env wants KEY=VALUE, not "B"`},
		{name: "env without key", edit: func(c *Config) { c.Env = []string{"=1"} }, wantErr: `--env wants KEY=VALUE, not "=1"`},
		{
			name: "pythonpath made absolute",
			edit: func(c *Config) { c.PythonPath = []string{"lib", "/abs/dir"} },
			check: func(t *testing.T, c *Config) {
				wd, err := os.Getwd()
				if err != nil {
					t.Fatal(err)
				}
				want := []string{filepath.Join(wd, "lib"), "/abs/dir"}
				if !reflect.DeepEqual(c.PythonPath, want) {
					t.Errorf("PythonPath = %q, want %q", c.PythonPath, want)
				}
			},
		},
		{name: "log config dict", edit: func(c *Config) { c.LogConfigDict = `{"version": 1, "root": {"level": "DEBUG"}}` }},
		{name: "log config dict not an object", edit: func(c *Config) { c.LogConfigDict = `["version", 1]` }, wantErr: "--log-config-dict: not a JSON object"},
		{name: "log config dict null", edit: func(c *Config) { c.LogConfigDict = `null` }, wantErr: "--log-config-dict: not a JSON object: null"},
		{name: "log config dict not JSON", edit: func(c *Config) { c.LogConfigDict = `{'version': 1}` }, wantErr: "--log-config-dict: not a JSON object: invalid character"},
		{name: "log config json", edit: func(c *Config) { c.LogConfigJSON = writeFile(t, `{"version": 1}`) }},
		{name: "log config json not JSON", edit: func(c *Config) { c.LogConfigJSON = writeFile(t, "version = 1\n") }, wantErr: "--log-config-json: not a JSON object: invalid character"},
		{name: "log config json missing", edit: func(c *Config) { c.LogConfigJSON = filepath.Join(t.TempDir(), "none.json") }, wantErr: "--log-config-json: stat "},
		{name: "logger class", edit: func(c *Config) { c.LoggerClass = "myapp.log.JSONLogger" }, check: wantLogger("myapp.log.JSONLogger")},
		{name: "logger class gunicorn's", edit: func(c *Config) { c.LoggerClass = "gunicorn.glogging.Logger" }, check: wantLogger("")},
		{name: "logger class simple", edit: func(c *Config) { c.LoggerClass = "simple" }, check: wantLogger("")},
		{name: "logger class statsd", edit: func(c *Config) { c.LoggerClass = "gunicorn.instrument.statsd.Statsd" }, check: wantLogger("")},
		{name: "logger class in the file", edit: func(c *Config) { c.LoggerClass, c.HooksFile = "__config__.logger_class", "/srv/gunicorn.conf.py" }, check: wantLogger("__config__.logger_class")},
		{name: "logger class in no file", edit: func(c *Config) { c.LoggerClass = "__config__.logger_class" }, wantErr: "--logger-class __config__.logger_class names the configuration file, and none was read"},
		{name: "logger class without module", edit: func(c *Config) { c.LoggerClass = "JSONLogger" }, wantErr: `--logger-class "JSONLogger": not a Python module.Class path`},
		{name: "logger class not a path", edit: func(c *Config) { c.LoggerClass = "myapp:JSONLogger" }, wantErr: `--logger-class "myapp:JSONLogger": not a Python module.Class path`},
		{name: "logger class empty part", edit: func(c *Config) { c.LoggerClass = "myapp..Logger" }, wantErr: `not a Python module.Class path`},
		{name: "logger class digit first", edit: func(c *Config) { c.LoggerClass = "myapp.2Logger" }, wantErr: `not a Python module.Class path`},
		{name: "python missing", edit: func(c *Config) { c.Python = filepath.Join(t.TempDir(), "nope") }, wantErr: "cannot find the Python interpreter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			if tt.edit != nil {
				tt.edit(c)
			}
			err := c.Finish(env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Finish() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Finish() = %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func wantLevel(level string) func(*testing.T, *Config) {
	return func(t *testing.T, c *Config) {
		t.Helper()
		if c.LogLevel != level {
			t.Errorf("LogLevel = %q, want %q", c.LogLevel, level)
		}
	}
}

func TestFindPython(t *testing.T) {
	dir := t.TempDir()
	explicit := fakeExecutable(t, filepath.Join(dir, "explicit", "python3.12"))
	venv := filepath.Join(dir, "venv")
	venvPython := fakeExecutable(t, filepath.Join(venv, "bin", "python"))
	pathDir := filepath.Join(dir, "path")
	pathPython := fakeExecutable(t, filepath.Join(pathDir, "python3"))
	emptyDir := filepath.Join(dir, "empty")
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "notexec")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A relative --python is resolved against the working directory.
	t.Chdir(filepath.Join(dir, "explicit"))

	tests := []struct {
		name     string
		explicit string
		env      map[string]string
		path     string
		want     string
		wantErr  string
	}{
		{name: "explicit path", explicit: explicit, env: map[string]string{"VIRTUAL_ENV": venv}, path: pathDir, want: explicit},
		{name: "explicit relative path", explicit: "./python3.12", path: pathDir, want: explicit},
		{name: "explicit name on PATH", explicit: "python3", path: pathDir, want: pathPython},
		{name: "explicit missing", explicit: filepath.Join(dir, "missing"), path: pathDir, wantErr: "missing"},
		{name: "explicit not executable", explicit: notExec, path: pathDir, wantErr: "notexec"},
		{name: "VIRTUAL_ENV", env: map[string]string{"VIRTUAL_ENV": venv}, path: pathDir, want: venvPython},
		{name: "VIRTUAL_ENV without python", env: map[string]string{"VIRTUAL_ENV": emptyDir}, path: pathDir, wantErr: filepath.Join(emptyDir, "bin", "python")},
		{name: "python3 on PATH", path: pathDir, want: pathPython},
		{name: "python3 on PATH, later entry", path: emptyDir + string(os.PathListSeparator) + pathDir, want: pathPython},
		{name: "not found", path: emptyDir, wantErr: `cannot find the Python interpreter "python3" (set --python)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path)
			got, err := FindPython(tt.explicit, env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FindPython() = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("FindPython() = %v", err)
			}
			if got != tt.want {
				t.Errorf("FindPython() = %q, want %q", got, tt.want)
			}
			if !filepath.IsAbs(got) {
				t.Errorf("FindPython() = %q, not absolute", got)
			}
		})
	}
}

func TestResolveOwner(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	nobodyUID, _ := strconv.Atoi(nobody.Uid)
	nobodyGID, _ := strconv.Atoi(nobody.Gid)
	rootGroup, err := user.LookupGroupId("0")
	if err != nil {
		t.Skip("no group 0")
	}
	tests := []struct {
		user, group        string
		uid, gid           int
		wantGroups, wantOK bool
		err                string
	}{
		{"", "", -1, -1, false, true, ""},
		{"nobody", "", nobodyUID, nobodyGID, true, true, ""}, // the user's primary group
		{nobody.Uid, "", nobodyUID, nobodyGID, true, true, ""},
		{"nobody", rootGroup.Name, nobodyUID, 0, true, true, ""},
		{"nobody", "4242", nobodyUID, 4242, true, true, ""},
		{"54321", "", 54321, os.Getgid(), false, true, ""}, // an id in no database
		{"", "4242", os.Getuid(), 4242, false, true, ""},
		{"no-such-user-here", "", 0, 0, false, false, `--user: no user "no-such-user-here"`},
		{"nobody", "no-such-group-here", 0, 0, false, false, `--group: no group "no-such-group-here"`},
	}
	for _, tt := range tests {
		c := &Config{User: tt.user, Group: tt.group}
		err := c.resolveOwner()
		if !tt.wantOK {
			if err == nil || err.Error() != tt.err {
				t.Errorf("user %q group %q: error %v, want %q", tt.user, tt.group, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("user %q group %q: %v", tt.user, tt.group, err)
			continue
		}
		if c.UID != tt.uid || c.GID != tt.gid || (len(c.Groups) > 0) != tt.wantGroups {
			t.Errorf("user %q group %q: uid %d gid %d groups %v, want %d %d (groups: %v)", tt.user, tt.group, c.UID, c.GID, c.Groups, tt.uid, tt.gid, tt.wantGroups)
		}
	}
}

func TestParseUmask(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 0, true}, {"022", 0o22, true}, {"0o027", 0o27, true}, {"0x1f", 0x1f, true}, {"18", 18, true},
		{"0777", 0o777, true}, {"0o1000", 0, false}, {"-1", 0, false}, {"rwx", 0, false}, {"", 0, false}, {"089", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseUmask(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseUmask(%q) = %#o, %v; want %#o (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestPrint(t *testing.T) {
	c := &Config{
		App: "shop.wsgi", Binds: []string{"0.0.0.0:80", "unix:/run/it's.sock"}, Workers: 4, Threads: 1, ThreadWorker: true,
		Timeout: 1500 * time.Millisecond, Env: []string{"A=1"}, ForwardedAllowIPs: "10.0.0.1,10.0.0.2", ErrorLog: "-",
		ProxyAllowFrom: "", ForwarderHeaders: "SCRIPT_NAME, remote_user,",
		AccessLogFormat: "", DogstatsdTags: "", LogLevel: "info", UID: -1, GID: -1, PasteGlobal: []string{"k=v"},
		LogConfigDict: `{"version": 1, "root": {"level": "DEBUG", "handlers": ["h"], "x": null, "y": [true, 1.5]}}`,
		Hooks:         []string{"when_ready", "post_fork"},
	}
	var b strings.Builder
	if err := c.Print(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if !slices.IsSorted(lines) {
		t.Errorf("lines are not sorted:\n%s", b.String())
	}
	width := strings.Index(lines[0], " = ")
	for _, line := range lines {
		if strings.Index(line, " = ") != width {
			t.Errorf("line %q is not aligned at column %d", line, width)
		}
	}
	settings := c.Settings()
	if len(settings)+len(c.Hooks) != len(lines) {
		t.Errorf("%d lines for %d settings and %d hooks", len(lines), len(settings), len(c.Hooks))
	}
	for _, hook := range c.Hooks {
		if want := fmt.Sprintf("%-*s = <function %s>", width, hook, hook); !slices.Contains(lines, want) {
			t.Errorf("no line %q in:\n%s", want, b.String())
		}
		if _, ok := settings[hook]; ok {
			t.Errorf("Settings has the hook %s, which is not a Python literal", hook)
		}
	}
	for _, tt := range []struct{ name, value string }{
		{"access_log_format", `'%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'`},
		{"bind", `['0.0.0.0:80', 'unix:/run/it\'s.sock']`},
		{"certfile", `None`},
		{"dogstatsd_tags", `''`},
		{"forwarded_allow_ips", `['10.0.0.1', '10.0.0.2']`},
		{"forwarder_headers", `['SCRIPT_NAME', 'remote_user']`},
		{"secure_scheme_headers", `{'X-FORWARDED-PROTO': 'https', 'X-FORWARDED-PROTOCOL': 'ssl', 'X-FORWARDED-SSL': 'on'}`},
		{"proxy_allow_ips", `[]`},
		{"logconfig", `None`},
		{"logconfig_dict", `{'root': {'handlers': ['h'], 'level': 'DEBUG', 'x': None, 'y': [True, 1.5]}, 'version': 1}`},
		{"raw_env", `['A=1']`},
		{"reload", `False`},
		{"timeout", `1.5`},
		{"worker_class", `'gthread'`},
		{"workers", `4`},
		{"wsgi_app", `'shop.wsgi'`},
		// gunicorn's defaults: the effective ids, the local syslog.
		{"user", strconv.Itoa(os.Geteuid())},
		{"group", strconv.Itoa(os.Getegid())},
		{"syslog", `False`},
		{"syslog_addr", `'udp://localhost:514'`},
		{"syslog_facility", `'user'`},
		{"raw_paste_global_conf", `['k=v']`},
	} {
		if got := settings[tt.name]; got != tt.value {
			t.Errorf("setting %s = %s, want %s", tt.name, got, tt.value)
		}
		if want := fmt.Sprintf("%-*s = %s", width, tt.name, tt.value); !slices.Contains(lines, want) {
			t.Errorf("no line %q in:\n%s", want, b.String())
		}
	}
	c.UID, c.GID = 33, 34
	if got := c.Settings(); got["user"] != "33" || got["group"] != "34" {
		t.Errorf("with --user: user %s, group %s; want 33, 34", got["user"], got["group"])
	}
}

// writeFile writes text to a new file and returns its path.
func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHasHook(t *testing.T) {
	c := &Config{Hooks: []string{"post_fork", "when_ready"}}
	for _, tt := range []struct {
		names []string
		want  bool
	}{
		{nil, false},
		{[]string{"on_exit"}, false},
		{[]string{"when_ready"}, true},
		{RuntimeHooks, true},
		{MasterHooks, true},
		{[]string{"pre_request", "post_request"}, false},
	} {
		if got := c.HasHook(tt.names...); got != tt.want {
			t.Errorf("HasHook(%q) = %v, want %v", tt.names, got, tt.want)
		}
	}
	if (&Config{}).HasHook(MasterHooks...) {
		t.Error("a configuration without hooks has one")
	}
}

// TestSettingsArePythonLiterals: every value Settings gives is a Python
// literal (the runtime's server.cfg reads them with ast.literal_eval),
// for a configuration with every kind of value set, and for the defaults.
func TestSettingsArePythonLiterals(t *testing.T) {
	py := testPython(t)
	full := &Config{
		App: "shop.wsgi:app", Binds: []string{"0.0.0.0:80", "unix:/run/it's.sock"}, Workers: 4, Threads: 8,
		Env: []string{"A=1", "B=\"quoted\"\n"}, Timeout: 1500 * time.Millisecond, ForwardedAllowIPs: "*",
		AccessLog: "-", AccessLogFormat: `%(h)s "%(r)s" \ %%`, ErrorLog: "/var/log/é.log", LogLevel: "debug",
		LogConfigDict:       `{"version": 1, "root": {"level": "DEBUG", "x": null, "y": [true, 1.5, 1e300]}}`,
		SecureSchemeHeaders: `{"X-Scheme": "https"}`, StatsdPrefix: "\x00\t", UID: 33, GID: 34,
		LoggerClass: "myapp.JSONLogger", Spew: true, Syslog: true, PasteGlobal: []string{"k=v"},
	}
	for _, c := range []*Config{full, {UID: -1, GID: -1}} {
		js, err := json.Marshal(c.Settings())
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(py, "-c", `import ast, json, sys
for name, literal in json.load(sys.stdin).items():
    try:
        ast.literal_eval(literal)
    except (ValueError, SyntaxError) as e:
        print("%s = %s: %s" % (name, literal, e))`)
		cmd.Stdin = bytes.NewReader(js)
		out, err := cmd.CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("settings that are not Python literals (%v):\n%s", err, out)
		}
	}
}
