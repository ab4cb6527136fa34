package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/worker"
)

func TestSeconds(t *testing.T) {
	tests := []struct {
		text    string
		want    time.Duration
		wantErr bool
	}{
		{text: "30", want: 30 * time.Second},
		{text: "0", want: 0},
		{text: "0.5", want: 500 * time.Millisecond},
		{text: ".25", want: 250 * time.Millisecond},
		{text: " 2 ", want: 2 * time.Second},
		{text: "1e3", want: 1000 * time.Second},
		{text: "-1", want: -time.Second},
		{text: "500ms", want: 500 * time.Millisecond},
		{text: "1m30s", want: 90 * time.Second},
		{text: "2h", want: 2 * time.Hour},
		{text: "-3s", want: -3 * time.Second},
		{text: "", wantErr: true},
		{text: "abc", wantErr: true},
		{text: "10 s", wantErr: true},
		{text: "5x", wantErr: true},
		{text: "NaN", wantErr: true},
		{text: "inf", wantErr: true},
		{text: "-Inf", wantErr: true},
		{text: "1e300", wantErr: true},
		{text: "-1e300", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			s := seconds(-42)
			err := s.UnmarshalText([]byte(tt.text))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("UnmarshalText(%q) = %v, want an error", tt.text, time.Duration(s))
				}
				if want := `expected seconds, not "` + strings.TrimSpace(tt.text) + `"`; err.Error() != want {
					t.Errorf("error = %q, want %q", err, want)
				}
				if s != -42 {
					t.Errorf("a failed UnmarshalText changed the value to %v", time.Duration(s))
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalText(%q) = %v", tt.text, err)
			}
			if time.Duration(s) != tt.want {
				t.Errorf("UnmarshalText(%q) = %v, want %v", tt.text, time.Duration(s), tt.want)
			}
		})
	}
}

// cleanEnv unsets the variables that change what run does.
func cleanEnv(t *testing.T) {
	for _, k := range []string{worker.SpecEnv, "WEB_CONCURRENCY", "PORT", CmdArgsEnv} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// TestRunBadCommandLine checks gunicorn's behaviour for a bad command
// line: exit status 1 and exactly one line on standard error. Every case
// also binds a unix socket in a missing directory, so that a wrongly
// accepted command line fails fast (and is caught: that error goes to the
// error log, not to the stderr writer) instead of serving.
func TestRunBadCommandLine(t *testing.T) {
	const noBind = "unix:/nonexistent-gorn-dir/gorn.sock"
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // substring of the line
	}{
		{name: "unknown flag", args: []string{"--nope", "app:app"}, want: "unknown flag --nope"},
		{name: "unknown short flag", args: []string{"-Z", "app:app"}, want: "-Z"},
		{name: "workers not a number", args: []string{"-w", "abc", "app:app"}, want: "--workers"},
		{name: "missing flag value", args: []string{"app:app", "--threads"}, want: "--threads"},
		{name: "timeout not seconds", args: []string{"--timeout", "soon", "app:app"}, want: `expected seconds, not "soon"`},
		{name: "timeout infinite", args: []string{"-t", "inf", "app:app"}, want: `expected seconds, not "inf"`},
		{name: "two apps", args: []string{"a:app", "b:app"}, want: "b:app"},
		{name: "no app", args: []string{}, want: "no application module specified"},
		{name: "zero workers", args: []string{"-w", "0", "app:app"}, want: "--workers must be at least 1, not 0"},
		{name: "WEB_CONCURRENCY zero", args: []string{"app:app"}, env: map[string]string{"WEB_CONCURRENCY": "0"}, want: "--workers must be at least 1, not 0"},
		{name: "WEB_CONCURRENCY not a number", args: []string{"app:app"}, env: map[string]string{"WEB_CONCURRENCY": "many"}, want: "many"},
		{name: "zero threads", args: []string{"--threads", "0", "app:app"}, want: "--threads must be at least 1, not 0"},
		{name: "zero backlog", args: []string{"--backlog=0", "app:app"}, want: "--backlog must be at least 1, not 0"},
		{name: "negative timeout", args: []string{"--timeout=-1", "app:app"}, want: "--timeout must not be negative"},
		{name: "negative timeout as a separate argument", args: []string{"--timeout", "-1", "app:app"}, want: "--timeout"},
		{name: "negative graceful timeout", args: []string{"--graceful-timeout=-5", "app:app"}, want: "--graceful-timeout must not be negative"},
		{name: "bad log level", args: []string{"--log-level", "loud", "app:app"}, want: `--log-level must be one of debug, info, warning, error, critical, not "loud"`},
		{name: "bad env", args: []string{"-e", "NOVALUE", "app:app"}, want: `--env wants KEY=VALUE, not "NOVALUE"`},
		{name: "missing python", args: []string{"--python", "/nonexistent/python3", "app:app"}, want: `cannot find the Python interpreter "/nonexistent/python3"`},
		{name: "unknown user", args: []string{"-u", "no-such-user-here", "app:app"}, want: `--user: no user "no-such-user-here"`},
		{name: "unknown group", args: []string{"-g", "no-such-group-here", "app:app"}, want: `--group: no group "no-such-group-here"`},
		{name: "bad umask", args: []string{"-m", "rwx", "app:app"}, want: `--umask wants a mode such as 0o027 or 022, not "rwx"`},
		{name: "bad GUNICORN_CMD_ARGS value", args: []string{"app:app"}, env: map[string]string{CmdArgsEnv: "--workers=abc"}, want: "gorn: error: GUNICORN_CMD_ARGS: --workers: expected"},
		{name: "GUNICORN_CMD_ARGS unterminated", args: []string{"app:app"}, env: map[string]string{CmdArgsEnv: `--name "x`}, want: "gorn: error: GUNICORN_CMD_ARGS: no closing quotation"},
		{name: "gunicorn's flag that loosens parsing", args: []string{"--strip-header-spaces", "app:app"}, want: "--strip-header-spaces is gunicorn's, and gorn does not take it: gorn refuses a header with whitespace before its colon"},
		{name: "gunicorn's flag that loosens parsing, with a value", args: []string{"app:app", "--casefold-http-method=true"}, want: "--casefold-http-method is gunicorn's, and gorn does not take it"},
		{name: "gunicorn's flag that loosens parsing, after another error", args: []string{"--nope", "--permit-unconventional-http-version", "app:app"}, want: "--permit-unconventional-http-version is gunicorn's"},
		{name: "GUNICORN_CMD_ARGS gunicorn's flag that loosens parsing", args: []string{"app:app"}, env: map[string]string{CmdArgsEnv: "--tolerate-dangerous-framing"}, want: "gorn: error: GUNICORN_CMD_ARGS: --tolerate-dangerous-framing is gunicorn's"},
		{name: "GUNICORN_CMD_ARGS unknown flag", args: []string{"app:app"}, env: map[string]string{CmdArgsEnv: "--nope"}, want: "gorn: error: GUNICORN_CMD_ARGS: unknown flag --nope"},
		{name: "bind not an address", args: []string{"-b", "127.0.0.1:99999", "app:app"}, want: `invalid bind "127.0.0.1:99999": bad port "99999"`},
		{name: "bind not an address, checked", args: []string{"--check-config", "-b", "::1:8000", "app:app"}, want: `invalid bind "::1:8000": put an IPv6 address in brackets`},
		{name: "access log that cannot be opened", args: []string{"--access-logfile", "/nonexistent-gorn-dir/access.log", "app:app"}, want: "--access-logfile: opening log file: open /nonexistent-gorn-dir/access.log: no such file or directory"},
		{name: "bad statsd host", args: []string{"--statsd-host", "localhost", "app:app"}, want: `--statsd-host wants HOST:PORT, not "localhost"`},
		{name: "worker class gorn does not have", args: []string{"-k", "gevent", "app:app"}, want: `--worker-class "gevent" is not supported`},
		{name: "missing configuration file", args: []string{"-c", "/nonexistent/gunicorn.conf.py", "app:app"}, want: `/nonexistent/gunicorn.conf.py: FileNotFoundError`},
		{name: "missing configuration module", args: []string{"-c", "python:shop.conf", "app:app"}, want: `python:shop.conf: ModuleNotFoundError: No module named 'shop'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			args := append([]string{"gorn", "-b", noBind}, tt.args...)
			code := run(args, &stdout, &stderr)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
			errText := stderr.String()
			if !strings.HasSuffix(errText, "\n") || strings.Count(errText, "\n") != 1 {
				t.Fatalf("stderr = %q, want exactly one line", errText)
			}
			if !strings.HasPrefix(errText, "gorn: error: ") || !strings.Contains(errText, tt.want) {
				t.Errorf("stderr = %q, want \"gorn: error: ...%s...\"", errText, tt.want)
			}
		})
	}
}

func TestRunVersion(t *testing.T) {
	want := "gorn (version " + config.Version + ")\n"
	for _, args := range [][]string{{"--version"}, {"-v"}, {"--version", "app:app"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			cleanEnv(t)
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"gorn"}, args...), &stdout, &stderr); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
			if stdout.String() != want || stderr.Len() != 0 {
				t.Errorf("stdout %q, stderr %q; want %q on stdout", stdout.String(), stderr.String(), want)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"--help", "app:app"}, {"-w", "4", "--help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			cleanEnv(t)
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"gorn"}, args...), &stdout, &stderr); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr = %q, want nothing", stderr.String())
			}
			help := stdout.String()
			for _, want := range []string{"Usage: gorn", "--workers", "--bind", "--threads", "--timeout", "--graceful-timeout", "--log-level", "--python", "--version"} {
				if !strings.Contains(help, want) {
					t.Errorf("help lacks %q:\n%s", want, help)
				}
			}
		})
	}
}
