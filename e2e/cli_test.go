package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorn-project/gorn/config"
)

// waitFile waits up to 10 s for the file at path to exist and hold want.
func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %q:\n%s", path, want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopTerm stops s with SIGTERM and requires exit code 0.
func stopTerm(t *testing.T, s *server) {
	t.Helper()
	s.signal(syscall.SIGTERM)
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after TERM, want 0\n%s", code, s.log.String())
	}
}

func TestCLIErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		args []string
		want string // in the one stderr line
	}{
		{"unknown_flag", []string{"--nope", "basic:app"}, "--nope"},
		{"bad_int", []string{"--workers", "abc", "basic:app"}, "abc"},
		{"no_app", nil, "no application module specified"},
		{"no_app_with_flags", []string{"-w", "2"}, "no application module specified"},
		{"zero_workers", []string{"-w", "0", "basic:app"}, "--workers"},
		{"missing_python", []string{"--python", "/nonexistent/lc/python3", "basic:app"}, "/nonexistent/lc/python3"},
		{"address_in_use", []string{"-b", busy.Addr().String(), "basic:app"}, "Connection in use: " + busy.Addr().String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runGorn(t, nil, tc.args...)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if l := lines(stderr); len(l) != 1 || !strings.Contains(l[0], tc.want) {
				t.Errorf("stderr = %q, want one line containing %q", stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

func TestCLIVersionHelp(t *testing.T) {
	t.Parallel() // mostly waits for processes to exit
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"version", []string{"--version"}, []string{config.Version}},
		{"version_short", []string{"-v"}, []string{config.Version}},
		{"help", []string{"--help"}, []string{"--bind", "--workers", "--threads", "--python"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runGorn(t, nil, tc.args...)
			if code != 0 {
				t.Fatalf("exit code %d, want 0\n%s%s", code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
}

func TestCLIBindUnix(t *testing.T) {
	t.Parallel() // mostly waits for processes to exit
	py := python(t)
	sock := filepath.Join(t.TempDir(), "g.sock")
	stdout := &syncBuffer{}
	s := startLC(t, lcOpts{stdout: stdout}, "--python", py, "-b", "unix:"+sock, "--access-logfile", "-", "lc_util:app")
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	s.readyWith(client, "http://unix/pid")
	m := getJSON(t, client, "http://unix/pid")
	if num(t, m, "pid") <= 0 {
		t.Fatalf("GET /pid over the unix socket = %v", m)
	}
	if !strings.Contains(s.log.String(), "Listening at: unix:"+sock+" (") {
		t.Errorf("log lacks the unix listener")
	}
	// An unnamed unix peer is "-" in the access log (its REMOTE_ADDR is
	// empty, as gunicorn's: TestEnviron).
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("the socket's mode is %v (%v), want 0777: --umask defaults to 0, as gunicorn's", fi.Mode().Perm(), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !regexp.MustCompile(`(?m)^- - - \[[^]]+\] "GET /pid HTTP/1\.1" 200 `).MatchString(stdout.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no access log line with \"-\" for the unix peer:\n%s", stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopTerm(t, s)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("the socket file remains after exit: %v", err)
	}
}

// listenerFile is a listening TCP socket on a free loopback port, as a
// file to hand to gorn, and its address.
func listenerFile(t *testing.T) (*os.File, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // the file is a copy
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	return f, l.Addr().String()
}

func TestCLIBindFD(t *testing.T) {
	py := python(t)
	f, addr := listenerFile(t)
	s := startLC(t, lcOpts{extra: []*os.File{f}}, "--python", py, "-b", "fd://3", "lc_util:app")
	f.Close() // gorn holds its own copy
	s.setAddr(addr)
	s.ready("/pid")
	if !strings.Contains(s.log.String(), "Listening at: http://"+addr+" (") {
		t.Errorf("log lacks the inherited listener %s", addr)
	}
	getJSON(t, noKeepAlive, s.URL+"/pid")
}

// TestCLISystemdSockets passes two listening sockets as systemd's socket
// activation does (LISTEN_PID, LISTEN_FDS): gorn serves both instead of
// its --bind (here the configuration file's), as gunicorn does, neither
// the app nor a USR2 upgrade sees the variables, and a HUP that changes
// the bind says it needs a restart and keeps the sockets.
func TestCLISystemdSockets(t *testing.T) {
	py := python(t)
	var files []*os.File
	var addrs []string
	for range 2 {
		f, addr := listenerFile(t)
		addrs = append(addrs, addr)
		files = append(files, f)
	}
	ignored := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := filepath.Join(t.TempDir(), "gunicorn.conf.py")
	writeBind := func(bind string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("bind = %q\n", bind)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeBind(ignored)
	s := startLC(t, lcOpts{extra: files, systemd: true}, "--python", py, "-c", conf, "lc_util:app")
	for _, f := range files {
		f.Close()
	}
	for _, addr := range addrs {
		s.setAddr(addr)
		s.ready("/pid")
		if !strings.Contains(s.log.String(), "Listening at: http://"+addr+" (") {
			t.Errorf("log lacks the socket systemd passed, %s", addr)
		}
	}
	s.waitLog(`--bind `+regexp.QuoteMeta(ignored)+` is ignored: serving the 2 socket\(s\) systemd passed \(LISTEN_FDS\)`, 5*time.Second)
	if c, err := net.DialTimeout("tcp", ignored, time.Second); err == nil {
		c.Close()
		t.Errorf("gorn also listens on --bind %s", ignored)
	}
	env := getJSON(t, noKeepAlive, s.URL+"/osenv")
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if v, ok := env[k]; ok {
			t.Errorf("the app sees %s=%v", k, v)
		}
	}
	s.signal(syscall.SIGUSR2)
	s.waitLog(`USR2 signal ignored: the sockets came from systemd \(LISTEN_FDS\)`, 5*time.Second)

	// A reload that leaves the bind alone says nothing of it; one that
	// changes it is told it needs a restart, and the sockets stay.
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload: generation 2 is serving`, 30*time.Second)
	writeBind(fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload: generation 3 is serving`, 30*time.Second)
	if n := strings.Count(s.log.String(), "Changing --bind needs a restart under systemd socket activation"); n != 1 {
		t.Errorf("%d warnings that changing --bind needs a restart, want 1 (for the second reload)", n)
	}
	for _, addr := range addrs {
		s.setAddr(addr)
		getJSON(t, noKeepAlive, s.URL+"/pid")
	}
	stopTerm(t, s)
}

// TestCLISystemdNotify: under a systemd unit of Type=notify
// ($NOTIFY_SOCKET), the master tells systemd READY=1 once a worker has
// loaded the app, and not while the app is still importing; RELOADING=1
// and READY=1 around a HUP's reload; STOPPING=1 when TERM stops it.
// Neither the workers nor the app see $NOTIFY_SOCKET.
func TestCLISystemdNotify(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	sock, gate := filepath.Join(dir, "notify"), filepath.Join(dir, "gate")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	next := func(wait time.Duration) (string, error) {
		c.SetReadDeadline(time.Now().Add(wait))
		b := make([]byte, 4096)
		n, err := c.Read(b)
		return string(b[:n]), err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := startLC(t, lcOpts{env: []string{"NOTIFY_SOCKET=" + sock, "GATE_FILE=" + gate}}, "--python", py, "-b", addr, "lc_gate:app")
	s.setAddr(addr)
	waitFile(t, gate+".importing", "")
	// The import cannot end before the gate opens: anything sent now
	// was sent too early.
	if got, err := next(300 * time.Millisecond); err == nil {
		t.Fatalf("systemd was told %q while the app was importing", got)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := next(30 * time.Second)
	if err != nil || !strings.HasPrefix(got, "READY=1\nSTATUS=") {
		t.Fatalf("after the import: %q, %v; want READY=1 and a STATUS", got, err)
	}
	env := getJSON(t, noKeepAlive, s.URL+"/osenv")
	if v, ok := env["NOTIFY_SOCKET"]; ok {
		t.Errorf("the app sees NOTIFY_SOCKET=%v", v)
	}
	// A reload: RELOADING=1 (with the monotonic time systemd wants), then
	// READY=1 once the new generation serves.
	s.signal(syscall.SIGHUP)
	if got, err := next(30 * time.Second); err != nil || !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$`).MatchString(got) {
		t.Errorf("on HUP: %q, %v; want RELOADING=1 and MONOTONIC_USEC", got, err)
	}
	if got, err := next(30 * time.Second); err != nil || got != "READY=1\nSTATUS=Reloaded: a new generation serves" {
		t.Errorf("after the reload: %q, %v; want READY=1", got, err)
	}
	s.waitLog(`Reload: generation 2 is serving`, 10*time.Second)
	s.signal(syscall.SIGTERM)
	if got, err := next(30 * time.Second); err != nil || got != "STOPPING=1" {
		t.Errorf("on TERM: %q, %v; want STOPPING=1", got, err)
	}
	if code := s.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestCLIBindTCP(t *testing.T) {
	py := python(t)
	v6 := func() string {
		l, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			return ""
		}
		defer l.Close()
		return l.Addr().String()
	}
	tests := []struct {
		name  string
		addrs func(t *testing.T) []string // what to bind; all are served
	}{
		{"ipv6_loopback", func(t *testing.T) []string {
			a := v6()
			if a == "" {
				t.Skip("no IPv6 loopback")
			}
			return []string{a}
		}},
		{"several", func(t *testing.T) []string {
			return []string{
				fmt.Sprintf("127.0.0.1:%d", freePort(t)),
				fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addrs := tc.addrs(t)
			args := []string{"--python", py}
			for _, a := range addrs {
				args = append(args, "-b", a)
			}
			s := startLC(t, lcOpts{}, append(args, "lc_util:app")...)
			s.setAddr(addrs[0])
			s.ready("/pid")
			for _, a := range addrs {
				getJSON(t, noKeepAlive, "http://"+a+"/pid")
				if !strings.Contains(s.log.String(), "Listening at: http://"+a+" (") {
					t.Errorf("log lacks Listening at %s", a)
				}
			}
		})
	}
}

func TestCLIEnvDefaults(t *testing.T) {
	py := python(t)
	t.Run("PORT", func(t *testing.T) {
		port := freePort(t)
		s := startLC(t, lcOpts{env: []string{"PORT=" + strconv.Itoa(port)}}, "--python", py, "lc_util:app")
		s.setAddr(fmt.Sprintf("127.0.0.1:%d", port))
		s.ready("/pid")
		s.waitLog(fmt.Sprintf(`Listening at: http://0\.0\.0\.0:%d \(`, port), 5*time.Second)
	})
	t.Run("WEB_CONCURRENCY", func(t *testing.T) {
		s := startLC(t, lcOpts{env: []string{"WEB_CONCURRENCY=3"}}, "--python", py, "-b", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--log-level", "debug", "lc_util:app")
		s.waitLog(`(?s)Worker ready.*Worker ready.*Worker ready`, 30*time.Second)
		if n := len(s.workerPids()); n != 3 {
			t.Fatalf("%d workers booted, want 3\n%s", n, s.log.String())
		}
	})
}

func TestCLIPidfile(t *testing.T) {
	t.Parallel() // mostly waits for processes to exit
	py := python(t)
	pidfile := filepath.Join(t.TempDir(), "gorn.pid")
	s := start(t, py, "-p", pidfile, "lc_util:app")
	s.ready("/pid")
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(s.cmd.Process.Pid) {
		t.Fatalf("pid file holds %q, want the master pid %d", got, s.cmd.Process.Pid)
	}
	stopTerm(t, s)
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Fatalf("the pid file remains after exit: %v", err)
	}
}

func TestCLIAppEnvironment(t *testing.T) {
	py := python(t)
	apps := appsDir(t)
	other := t.TempDir()
	abs := func(p string) string {
		r, err := filepath.EvalSymlinks(p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name  string
		dir   string
		args  []string
		path  string
		check func(t *testing.T, m map[string]any)
	}{
		{"env", "", []string{"-e", "LC_KEY=a=b c", "--env", "LC_OTHER=2"}, "/osenv", func(t *testing.T, m map[string]any) {
			if m["LC_KEY"] != "a=b c" || m["LC_OTHER"] != "2" {
				t.Errorf("os.environ LC_KEY=%v LC_OTHER=%v", m["LC_KEY"], m["LC_OTHER"])
			}
		}},
		{"chdir", other, []string{"--chdir", apps}, "/cwd", func(t *testing.T, m map[string]any) {
			if got, _ := m["cwd"].(string); abs(got) != abs(apps) {
				t.Errorf("app cwd %q, want %q", got, apps)
			}
		}},
		// The app module is not in the working directory: only
		// --pythonpath finds it.
		{"pythonpath", other, []string{"--pythonpath", apps}, "/cwd", func(t *testing.T, m map[string]any) {
			if got, _ := m["cwd"].(string); abs(got) != abs(other) {
				t.Errorf("app cwd %q, want %q", got, other)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			args := append([]string{"--python", py, "-b", fmt.Sprintf("127.0.0.1:%d", port)}, tc.args...)
			s := startLC(t, lcOpts{dir: tc.dir}, append(args, "lc_util:app")...)
			s.setAddr(fmt.Sprintf("127.0.0.1:%d", port))
			s.ready("/pid")
			tc.check(t, getJSON(t, noKeepAlive, s.URL+tc.path))
		})
	}
}

func TestCLIAccessLog(t *testing.T) {
	py := python(t)
	stdout := &syncBuffer{}
	port := freePort(t)
	s := startLC(t, lcOpts{stdout: stdout}, "--python", py, "-b", fmt.Sprintf("127.0.0.1:%d", port), "--access-logfile", "-", "lc_util:app")
	s.setAddr(fmt.Sprintf("127.0.0.1:%d", port))
	s.ready("/pid")
	req, _ := http.NewRequest("GET", s.URL+"/pid?lc=1", nil)
	req.Header.Set("User-Agent", "lc-agent/1")
	req.Header.Set("Referer", "http://ref.example/")
	req.SetBasicAuth("alice", "secret")
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	re := regexp.MustCompile(`(?m)^127\.0\.0\.1 - alice \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /pid\?lc=1 HTTP/1\.1" 200 \d+ "http://ref\.example/" "lc-agent/1"$`)
	deadline := time.Now().Add(10 * time.Second)
	for !re.MatchString(stdout.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("stdout has no access log line matching %s:\n%s", re, stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(stdout.String(), "Booting worker") {
		t.Errorf("the error log went to stdout:\n%s", stdout.String())
	}
}

// TestCLIAccessLogFormat: --access-logformat with gunicorn's atoms, and
// a bad one is a one-line error and exit code 1.
func TestCLIAccessLogFormat(t *testing.T) {
	py := python(t)
	stdout := &syncBuffer{}
	port := freePort(t)
	format := `%(h)s|%(u)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(D)s|%(p)s|%({x-request-id}i)s|%({Content-Type}o)s|%({remote_port}e)s|%({wsgi.url_scheme}e)s|%(a).5s|%(missing)s`
	s := startLC(t, lcOpts{stdout: stdout}, "--python", py, "-b", fmt.Sprintf("127.0.0.1:%d", port),
		"--access-logfile", "-", "--access-logformat", format, "lc_util:app")
	s.setAddr(fmt.Sprintf("127.0.0.1:%d", port))
	s.ready("/pid")
	req, _ := http.NewRequest("GET", s.URL+"/pid?lc=2", nil)
	req.Header.Set("User-Agent", "lc-agent/1")
	req.Header.Set("X-Request-Id", `id "7"`)
	req.SetBasicAuth("bob", "pw")
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	worker := s.workerPids()[0]
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^127\.0\.0\.1\|bob\|GET\|/pid\|lc=2\|HTTP/1\.1\|200\|%d\|(\d+)\|<%d>\|id \\"7\\"\|%s\|\d+\|http\|lc-ag\|-$`,
		len(body), worker, regexp.QuoteMeta(resp.Header.Get("Content-Type"))))
	deadline := time.Now().Add(10 * time.Second)
	for !re.MatchString(stdout.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("stdout has no access log line matching %s:\n%s", re, stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if us, _ := strconv.Atoi(re.FindStringSubmatch(stdout.String())[1]); us <= 0 || us > 30e6 {
		t.Errorf("%%(D)s = %d µs", us)
	}

	_, errOut, code := runGorn(t, nil, "--python", py, "--access-logformat", "%(h)s %(s)x", "lc_util:app")
	if code != 1 {
		t.Fatalf("a bad --access-logformat: exit %d, want 1", code)
	}
	if errOut != "gorn: error: --access-logformat: at character 7: %(s)x: only the conversions s, d and i are supported\n" {
		t.Errorf("stderr %q", errOut)
	}
}

// TestCLIConfigFile: a gunicorn configuration file, read from the start
// directory by default (gunicorn.conf.py) or named with -c, sets what the
// command line does not, and is read again on HUP.
func TestCLIConfigFile(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	port := freePort(t)
	writeConf := func(path, value string) {
		t.Helper()
		text := fmt.Sprintf(`import os
bind = "127.0.0.1:%d"
workers = 1 + 1
chdir = %q
raw_env = ["GORN_CONF_TEST=%s"]
wsgi_app = "lc_util:app"
preload_app = True
def post_fork(server, worker):
    pass
def ssl_context(config, default_ssl_context_factory):
    return default_ssl_context_factory()
`, port, appsDir(t), value)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "gunicorn.conf.py")
	writeConf(conf, "one")
	s := startLC(t, lcOpts{dir: dir}, "--python", py)
	s.setAddr(fmt.Sprintf("127.0.0.1:%d", port))
	s.ready("/pid")
	poolWaitCount(t, s, `Booting worker with pid`, 2, 10*time.Second)
	for _, want := range []string{
		`\[INFO\] Configuration read from gunicorn\.conf\.py`,
		`\[WARNING\] gunicorn\.conf\.py: Settings gorn does not have are ignored: preload_app`,
		`\[WARNING\] gunicorn\.conf\.py: Server hooks gorn does not run: ssl_context\n`,
	} {
		s.waitLog(want, 5*time.Second)
	}
	if env := getJSON(t, noKeepAlive, s.URL+"/osenv"); env["GORN_CONF_TEST"] != "one" {
		t.Errorf("GORN_CONF_TEST = %v, want one", env["GORN_CONF_TEST"])
	}
	// HUP reads the file again.
	writeConf(conf, "two")
	poolSignal(t, s, syscall.SIGHUP, "hup")
	s.waitLog(`Reload: generation 2 is serving`, 30*time.Second)
	poolWaitCount(t, s, `Worker exiting`, 2, 30*time.Second)
	if env := getJSON(t, noKeepAlive, s.URL+"/osenv"); env["GORN_CONF_TEST"] != "two" {
		t.Errorf("after HUP GORN_CONF_TEST = %v, want two", env["GORN_CONF_TEST"])
	}
	stopTerm(t, s)

	// -c names the file; the command line overrides it: its --bind
	// replaces the file's, -w its workers.
	named := filepath.Join(dir, "prod.py")
	writeConf(named, "named")
	other := freePort(t)
	s = startLC(t, lcOpts{dir: t.TempDir()}, "--python", py, "-c", named, "-w", "1", "-k", "gthread", "-b", fmt.Sprintf("127.0.0.1:%d", other))
	s.setAddr(fmt.Sprintf("127.0.0.1:%d", other))
	s.ready("/pid")
	s.waitLog(`Using worker: gthread \(threads: 1,`, 5*time.Second) // -k gthread, as gunicorn says it
	if env := getJSON(t, noKeepAlive, s.URL+"/osenv"); env["GORN_CONF_TEST"] != "named" {
		t.Errorf("GORN_CONF_TEST = %v, want named", env["GORN_CONF_TEST"])
	}
	checkOverridden(t, s, fmt.Sprintf("127.0.0.1:%d", port), "the file's")
	stopTerm(t, s)

	// A setting gorn cannot honour is one line and exit code 1.
	bad := filepath.Join(dir, "bad.py")
	if err := os.WriteFile(bad, []byte("worker_class = 'gevent'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runGorn(t, nil, "--python", py, "-c", bad, "lc_util:app")
	if code != 1 {
		t.Fatalf("a configuration file with worker_class gevent: exit %d, want 1", code)
	}
	if want := "gorn: error: " + bad + ": worker_class \"gevent\" is not supported: gorn serves WSGI apps, on --threads threads per worker\n"; errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
}

// procIDs reads a process's real user and group ids from /proc.
func procIDs(t *testing.T, pid int) (uid, gid string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid = f[1]
		} else if len(f) > 1 && f[0] == "Gid:" {
			gid = f[1]
		}
	}
	return uid, gid
}

// TestCLICmdArgsEnv: $GUNICORN_CMD_ARGS adds arguments before the
// command line's, which override them (a --bind replaces its binds).
func TestCLICmdArgsEnv(t *testing.T) {
	py := python(t)
	fromEnv := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"GUNICORN_CMD_ARGS=--bind=" + fromEnv + " -w 2 --name 'env name'"}
	s := startLC(t, lcOpts{env: env}, "--python", py, "lc_util:app")
	s.setAddr(fromEnv)
	s.ready("/pid")
	poolWaitCount(t, s, `Booting worker with pid`, 2, 10*time.Second)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.workerPids()[0]))
	if err != nil || !strings.Contains(string(b), "env name") {
		t.Errorf("worker cmdline %q (%v) lacks --name's", b, err)
	}
	stopTerm(t, s)

	fromCLI := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s = startLC(t, lcOpts{env: env}, "--python", py, "-w", "1", "-b", fromCLI, "lc_util:app")
	s.setAddr(fromCLI)
	s.ready("/pid")
	checkOverridden(t, s, fromEnv, "GUNICORN_CMD_ARGS's")
	stopTerm(t, s)
}

// checkOverridden checks that the command line's -b and -w 1 overrode
// another source's (named by whose): its bind, addr, is not served, and
// one worker boots. It waits half a second for a worker too many.
func checkOverridden(t *testing.T, s *server, addr, whose string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s bind %s is served though --bind replaced it", whose, addr)
	}
	time.Sleep(500 * time.Millisecond)
	if n := poolCount(s, `Booting worker with pid`); n != 1 {
		t.Errorf("%d workers booted, want -w 1's, not %s", n, whose)
	}
}

// TestCLICheckConfig: --check-config imports the app and exits, 0 or 1
// with the reason, without binding or starting workers.
func TestCLICheckConfig(t *testing.T) {
	py := python(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close() // a --bind gorn would fail on, were it to bind
	tests := []struct {
		app  string
		code int
		want string // in the output; "" for none at all
	}{
		{"lc_util:app", 0, ""},
		{"lc_importerror:app", 1, "gorn: error: the app does not load:\nTraceback (most recent call last):"},
		{"lc_importerror:app", 1, "RuntimeError: lc_importerror marker: import failed on purpose"},
		{"lc_noattr:app", 1, "gorn: error: the app does not load:\nFailed to find attribute 'app' in 'lc_noattr'."},
		{"lc_notcallable:app", 1, "Application object must be callable."},
	}
	for _, tt := range tests {
		stdout, stderr, code := runGorn(t, nil, "--python", py, "--check-config", "-b", busy.Addr().String(), tt.app)
		out := stdout + stderr
		if code != tt.code || (tt.want == "" && len(out) != 0) || !strings.Contains(string(out), tt.want) {
			t.Errorf("--check-config %s: exit %d, output %q; want exit %d and %q", tt.app, code, out, tt.code, tt.want)
		}
	}
	// What a configuration file prints shows, as gunicorn shows it: on
	// standard output and standard error, as the file wrote it.
	conf := filepath.Join(t.TempDir(), "gunicorn.conf.py")
	if err := os.WriteFile(conf, []byte("import sys\nprint('conf says hello')\nsys.stderr.write('conf warns\\n')\nworkers = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runGorn(t, nil, "--python", py, "-c", conf, "--check-config", "-b", busy.Addr().String(), "lc_util:app")
	if code != 0 || stdout != "conf says hello\n" || stderr != "conf warns\n" {
		t.Errorf("--check-config with a file that prints: exit %d, stdout %q, stderr %q; want 0, its print and its write", code, stdout, stderr)
	}
	// --print-config prints the settings, then checks the app as well.
	for _, tt := range []struct {
		app  string
		code int
	}{{"lc_util:app", 0}, {"lc_noattr:app", 1}} {
		stdout, stderr, code := runGorn(t, nil, "--python", py, "--print-config", "-w", "3", "-b", busy.Addr().String(), tt.app)
		out := stdout + stderr
		for _, want := range []string{`workers += 3`, `bind += \['` + regexp.QuoteMeta(busy.Addr().String()) + `'\]`, `wsgi_app += '` + tt.app + `'`} {
			if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(out) {
				t.Errorf("--print-config %s lacks %q:\n%s", tt.app, want, out)
			}
		}
		if code != tt.code {
			t.Errorf("--print-config %s: exit %d, want %d\n%s", tt.app, code, tt.code, out)
		}
	}
	// ... and the server hooks of the configuration file.
	conf = filepath.Join(t.TempDir(), "hooks.py")
	if err := os.WriteFile(conf, []byte("def post_fork(server, worker):\n    pass\n\ndef helper():\n    pass\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = runGorn(t, nil, "--python", py, "--print-config", "-c", conf, "-b", busy.Addr().String(), "lc_util:app")
	if code != 0 || !regexp.MustCompile(`(?m)^post_fork += <function post_fork>$`).MatchString(stdout) || strings.Contains(stdout, "helper") {
		t.Errorf("--print-config with a hook: exit %d, want 0 and a post_fork line (no helper):\n%s%s", code, stdout, stderr)
	}
}

// TestCLILogConfig: --log-config (ini), --log-config-json and
// --log-config-dict (gunicorn.conf.py's logconfig_dict) configure the app's
// Python loggers before it is imported, as gunicorn does: the dicts laid
// over gunicorn's defaults (the root logger at INFO on standard output),
// one configuration only, the dict before the JSON file before the ini; a
// missing file, or one that is not JSON, is an error at start.
func TestCLILogConfig(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "app.log")
	ini := filepath.Join(dir, "logging.ini")
	if err := os.WriteFile(ini, []byte(fmt.Sprintf(`[loggers]
keys=root,lc

[handlers]
keys=file

[formatters]
keys=plain

[logger_root]
level=WARNING
handlers=

[logger_lc]
level=INFO
handlers=file
qualname=lc

[handler_file]
class=FileHandler
args=(%q,)
formatter=plain

[formatter_plain]
format=ini %%(name)s %%(levelname)s %%(message)s
`, out)), 0o644); err != nil {
		t.Fatal(err)
	}
	// dictConfig's configuration, with the formatter's prefix as name.
	dict := func(name string) string {
		return fmt.Sprintf(`{"formatters": {"plain": {"format": "%s %%(name)s %%(levelname)s %%(message)s"}},
"handlers": {"file": {"class": "logging.FileHandler", "filename": %q, "formatter": "plain"}},
"root": {"level": "WARNING", "handlers": []},
"loggers": {"lc": {"level": "INFO", "handlers": ["file"]}}}`, name, out)
	}
	js := filepath.Join(dir, "logging.json")
	if err := os.WriteFile(js, []byte(dict("json")), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "gunicorn.conf.py")
	if err := os.WriteFile(conf, []byte("import json\nlogconfig_dict = json.loads('''"+dict("file")+"''')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string // the line in out, or a regular expression gorn's output matches
	}{
		{[]string{"--log-config", ini}, "ini lc WARNING from-ini"},
		{[]string{"--log-config-json", js}, "json lc WARNING from-json"},
		{[]string{"--log-config-dict", dict("dict")}, "dict lc WARNING from-dict"},
		{[]string{"-c", conf}, "file lc WARNING from-conf"},
		// One configuration only: the dict wins, then the JSON file.
		{[]string{"--log-config", ini, "--log-config-json", js, "--log-config-dict", dict("dict")}, "dict lc WARNING from-dict-first"},
		{[]string{"--log-config", ini, "--log-config-json", js}, "json lc WARNING from-json-first"},
		// gunicorn's defaults under the dict: lc propagates to the root
		// logger, which writes to standard output in gunicorn's format.
		{[]string{"--log-config-dict", `{"loggers": {"lc": {"level": "INFO"}}}`}, `\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[WARNING\] from-defaults\n`},
	} {
		s := start(t, py, append(tt.args, "lc_util:app")...)
		s.ready("/pid")
		msg := strings.TrimSuffix(tt.want[strings.LastIndexByte(tt.want, ' ')+1:], `\n`)
		getJSON(t, noKeepAlive, s.URL+"/log?m="+msg)
		if strings.HasPrefix(tt.want, `\[`) {
			s.waitLog(tt.want, 10*time.Second)
			stopTerm(t, s)
			continue
		}
		waitFile(t, out, tt.want+"\n")
		stopTerm(t, s)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-config", filepath.Join(dir, "missing.ini")}, "gorn: error: --log-config: stat "},
		{[]string{"--log-config-json", ini}, "gorn: error: --log-config-json: not a JSON object: invalid character"},
		{[]string{"--log-config-dict", "{'version': 1}"}, "gorn: error: --log-config-dict: not a JSON object: invalid character"},
	} {
		_, errOut, code := runGorn(t, nil, append(append([]string{"--python", py}, tt.args...), "lc_util:app")...)
		if code != 1 || !strings.HasPrefix(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: exit %d, %q; want exit 1 and one line %q", tt.args, code, errOut, tt.want)
		}
	}
}

// TestCLIPaste: --paste loads the app from a PasteDeploy ini (#name picks
// another app section), with --paste-global's values, and the ini's
// [loggers] configure the app's logging, as gunicorn does.
func TestCLIPaste(t *testing.T) {
	py := python(t, "paste.deploy")
	dir := t.TempDir()
	copyApp(t, dir, "paste_app.py")
	ini := filepath.Join(dir, "production.ini")
	if err := os.WriteFile(ini, []byte(`[app:main]
use = call:paste_app:app_factory
greeting = hello from main

[app:other]
use = call:paste_app:app_factory
greeting = hello from other

[loggers]
keys = root, pasteapp

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = WARNING
handlers =

[logger_pasteapp]
level = INFO
handlers = file
qualname = pasteapp

[handler_file]
class = FileHandler
args = ('%(here)s/app.log',)
formatter = plain

[formatter_plain]
format = paste %(name)s %(message)s
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ paste, greeting string }{
		{"production.ini", "hello from main"},
		{"production.ini#other", "hello from other"},
	} {
		s := startIn(t, dir, py, "--paste", tt.paste, "--paste-global", "region=eu")
		s.ready("/pid")
		got := getJSON(t, noKeepAlive, s.URL+"/hello")
		if got["greeting"] != tt.greeting || got["region"] != "eu" {
			t.Errorf("--paste %s: %v, want greeting %q and region eu", tt.paste, got, tt.greeting)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(filepath.Join(dir, "app.log"))
			if strings.Contains(string(b), "paste pasteapp served /hello\n") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the ini's logging configuration was not applied:\n%s", b)
			}
			time.Sleep(20 * time.Millisecond)
		}
		stopTerm(t, s)
		os.Remove(filepath.Join(dir, "app.log"))
	}
}

// TestCLIDaemon: with -D the command returns at once and gorn runs on,
// detached in a session of its own, until TERM.
func TestCLIDaemon(t *testing.T) {
	pidfile, errLog, addr, cmd := daemonCmd(t, python(t))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("gorn -D: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("gorn -D did not return within 10s")
	}
	if out.Len() != 0 {
		t.Errorf("gorn -D printed %q", out.String())
	}
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for pid == 0 {
		if b, err := os.ReadFile(pidfile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if pid == 0 && time.Now().After(deadline) {
			b, _ := os.ReadFile(errLog)
			t.Fatalf("no pid file within 10s:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if pid == cmd.Process.Pid {
		t.Errorf("the daemon is the process that was started")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) < 4 || f[3] != strconv.Itoa(pid) {
		t.Errorf("the daemon's session is %v, want its own (%d)", f[3:4], pid)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	deadline = time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/pid")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(errLog)
			t.Fatalf("the daemon does not serve: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline = time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not stop within 30s of TERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("the pid file is left: %v", err)
	}
	b, _ = os.ReadFile(errLog)
	if !strings.Contains(string(b), "Shutting down: Master") {
		t.Errorf("the error log lacks the shutdown:\n%s", b)
	}
}

// daemonCmd is "gorn -D" serving lc_util on a free port, with a pid file and
// an error log file in a directory of the test's, not started yet. The
// daemon is killed at the end of the test (killDaemons).
func daemonCmd(t *testing.T, py string) (pidfile, errLog, addr string, cmd *exec.Cmd) {
	dir := t.TempDir()
	pidfile = filepath.Join(dir, "gorn.pid")
	killDaemons(t, pidfile)
	errLog = filepath.Join(dir, "error.log")
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd = exec.Command(gornBin, "--python", py, "-D", "-p", pidfile, "--error-logfile", errLog, "-b", addr, "lc_util:app")
	cmd.Dir = appsDir(t)
	cmd.Env = lcEnviron(nil)
	return pidfile, errLog, addr, cmd
}

// killDaemons kills, when the test ends, the masters named in pidfile and
// pidfile.2 that are still alive (daemons are not the test's children; their
// workers die with them).
func killDaemons(t *testing.T, pidfile string) {
	t.Cleanup(func() {
		for _, path := range []string{pidfile, pidfile + ".2"} {
			b, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

// copyApp copies a test app file into dir.
func copyApp(t *testing.T, dir, name string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(appsDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCLIDaemonStdio: with -D -R, a daemon whose standard error is a file
// (not a terminal) keeps it: the error log "-" goes there.
func TestCLIDaemonStdio(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "gorn.pid")
	killDaemons(t, pidfile)
	out, err := os.Create(filepath.Join(dir, "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(gornBin, "--python", py, "-D", "-R", "-p", pidfile, "-b", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "lc_util:app")
	cmd.Dir = appsDir(t)
	cmd.Env = lcEnviron(nil)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		t.Fatalf("gorn -D -R: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(out.Name())
		if strings.Contains(string(b), "Booting worker with pid") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's log did not reach its inherited standard error:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		t.Fatalf("pid file holds %q", b)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline = time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatal("the daemon did not stop within 30s of TERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// userNobody returns the user nobody, skipping the test when there is none
// or when gorn cannot switch to it (the tests do not run as root).
func userNobody(t *testing.T) *user.User {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("switching workers to another user needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	return nobody
}

// TestCLIUserCannotRunPython: a --user that cannot run the interpreter
// (one under a directory only root may enter, as a pyenv or a virtualenv
// in root's home) fails the boot with exit 3 and a message that says so.
func TestCLIUserCannotRunPython(t *testing.T) {
	nobody := userNobody(t)
	link := filepath.Join(t.TempDir(), "python3") // the directory is 0700
	if err := os.Symlink(python(t), link); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runGorn(t, nil, "--python", link, "-u", "nobody", "-b", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "lc_util:app")
	want := fmt.Sprintf("starting the app runtime %s: fork/exec %s: permission denied (the workers run as uid %s, gid %s: that user must be able to run the interpreter;", link, link, nobody.Uid, nobody.Gid)
	if code != 3 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "Reason: Worker failed to boot.") {
		t.Errorf("exit %d, want 3 and %q:\n%s", code, want, stderr)
	}
}

// TestCLIUser: with --user, workers and their runtimes run as that user
// (and its group), the master stays root, and the unix socket and log
// files are the user's; --umask sets the socket's mode. Needs root.
func TestCLIUser(t *testing.T) {
	nobody := userNobody(t)
	py := python(t)
	// $GORN_TEST_PYTHON may name one in root's home (a pyenv build).
	check := exec.Command(py, "-c", "pass")
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	check.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := check.Run(); err != nil {
		t.Skipf("nobody cannot run %s: %v", py, err)
	}
	// A directory nobody can read, with the app in it.
	dir, err := os.MkdirTemp("", "gorn-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyApp(t, dir, "lc_util.py")
	sock := filepath.Join(dir, "g.sock")
	accessLog := filepath.Join(dir, "access.log")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := startLC(t, lcOpts{dir: dir}, "--python", py, "-u", "nobody", "-m", "007", "-b", addr, "-b", "unix:"+sock,
		"--access-logfile", accessLog, "lc_util:app")
	s.setAddr(addr)
	s.ready("/pid")
	runtime := int(num(t, getJSON(t, noKeepAlive, s.URL+"/pid"), "pid"))
	worker := s.workerPids()[0]
	for _, p := range []struct {
		name string
		pid  int
	}{{"worker", worker}, {"runtime", runtime}} {
		if uid, gid := procIDs(t, p.pid); uid != nobody.Uid || gid != nobody.Gid {
			t.Errorf("the %s runs as %s:%s, want nobody's %s:%s", p.name, uid, gid, nobody.Uid, nobody.Gid)
		}
	}
	if uid, _ := procIDs(t, s.cmd.Process.Pid); uid != "0" {
		t.Errorf("the master runs as %s, want root", uid)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{sock, 0o770}, {accessLog, 0o644}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if strconv.Itoa(int(st.Uid)) != nobody.Uid || strconv.Itoa(int(st.Gid)) != nobody.Gid || fi.Mode().Perm() != f.mode {
			t.Errorf("%s is %d:%d %v, want nobody's, %v", f.path, st.Uid, st.Gid, fi.Mode().Perm(), f.mode)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	getJSON(t, client, "http://unix/pid")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(accessLog)
		if strings.Count(string(b), "GET /pid") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker wrote no access log lines as nobody:\n%s\n%s", b, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopTerm(t, s)
}

// TestCLICaptureOutput: with --capture-output the app's standard output
// goes to the error log file, also after USR1 reopens it; --preload and
// --worker-tmp-dir are accepted.
func TestCLICaptureOutput(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	errLog := filepath.Join(dir, "error.log")
	s := start(t, py, "--error-logfile", errLog, "--capture-output", "--preload", "--worker-tmp-dir", "/dev/shm", "--no-sendfile", "lc_util:app")
	s.ready("/pid")
	getJSON(t, noKeepAlive, s.URL+"/print?m=captured-one")
	waitFile(t, errLog, "captured-one")
	waitFile(t, errLog, "--preload is ignored")
	if strings.Contains(s.log.String(), "captured-one") {
		t.Errorf("the app's output also went to gorn's standard output:\n%s", s.log.String())
	}
	// logrotate: move the file away, USR1, and the app prints into the new one.
	if err := os.Rename(errLog, errLog+".1"); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGUSR1)
	waitFile(t, errLog+".1", "Handling signal: usr1")
	// The worker and its runtime reopen a moment after the master.
	deadline := time.Now().Add(10 * time.Second)
	for {
		getJSON(t, noKeepAlive, s.URL+"/print?m=captured-two")
		if b, _ := os.ReadFile(errLog); strings.Contains(string(b), "captured-two") {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(errLog + ".1")
			t.Fatalf("the app's output did not reach the reopened error log:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopTerm(t, s)
}

func TestCLIErrorLogfile(t *testing.T) {
	t.Parallel() // mostly waits for processes to exit
	py := python(t)
	logfile := filepath.Join(t.TempDir(), "error.log")
	s := start(t, py, "--error-logfile", logfile, "lc_util:app")
	s.ready("/pid")
	stopTerm(t, s)
	b, err := os.ReadFile(logfile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{`Starting gorn`, `Listening at: http://` + s.Addr, `Booting worker with pid: \d+`, `Worker exiting \(pid: \d+\)`, `Shutting down: Master`} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("error log file lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(s.log.String(), "Starting gorn") {
		t.Errorf("the error log also went to the standard streams:\n%s", s.log.String())
	}
}

func TestCLIProcessName(t *testing.T) {
	py := python(t)
	s := start(t, py, "-n", "lcname", "lc_util:app")
	s.ready("/pid")
	w := s.workerPids()[0]
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", w))
	if err != nil {
		t.Fatal(err)
	}
	if cmdline := strings.ReplaceAll(string(b), "\x00", " "); !strings.Contains(cmdline, "lcname") {
		t.Fatalf("worker cmdline %q lacks the name", cmdline)
	}
}

func TestCLIVirtualEnv(t *testing.T) {
	py := python(t)
	venv := t.TempDir()
	if err := os.Mkdir(filepath.Join(venv, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	venvPython := filepath.Join(venv, "bin", "python")
	if err := os.Symlink(py, venvPython); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	s := startLC(t, lcOpts{env: []string{"VIRTUAL_ENV=" + venv}}, "-b", fmt.Sprintf("127.0.0.1:%d", port), "lc_util:app")
	s.setAddr(fmt.Sprintf("127.0.0.1:%d", port))
	s.ready("/pid")
	if !strings.Contains(s.log.String(), "python: "+venvPython+")") {
		t.Errorf("log does not name %s as the interpreter:\n%s", venvPython, s.log.String())
	}
	m := getJSON(t, noKeepAlive, s.URL+"/exe")
	if got := m["executable"]; got != venvPython {
		t.Fatalf("sys.executable = %v, want %s", got, venvPython)
	}
}

func TestCLILogLines(t *testing.T) {
	t.Parallel() // mostly waits for processes to exit
	py := python(t)
	s := start(t, py, "-w", "2", "lc_util:app")
	s.ready("/pid")
	workers := waitWorkers(t, s, 2)
	master := s.cmd.Process.Pid
	// Each worker has started its runtime, so it is past its start: a TERM
	// before its signal handlers would end it without its exit line.
	for _, w := range workers {
		for deadline := time.Now().Add(30 * time.Second); len(childrenOf(w)) == 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d started no runtime within 30 s", w)
			}
		}
	}
	stopTerm(t, s)
	out := s.log.String()
	want := []string{
		fmt.Sprintf(`\[%d\] \[INFO\] Starting gorn %s`, master, regexp.QuoteMeta(config.Version)),
		fmt.Sprintf(`\[%d\] \[INFO\] Listening at: http://%s \(%d\)`, master, regexp.QuoteMeta(s.Addr), master),
	}
	for _, w := range workers {
		want = append(want,
			fmt.Sprintf(`\[%d\] \[INFO\] Booting worker with pid: %d\n`, master, w),
			fmt.Sprintf(`\[%d\] \[INFO\] Worker exiting \(pid: %d\)\n`, w, w))
	}
	for _, w := range want {
		if !regexp.MustCompile(`(?m)^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}\] ` + w).MatchString(out) {
			t.Errorf("log lacks a line matching %q", w)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
}

// TestGunicornErrorLogger: in the app's runtime, Python's "gunicorn.error"
// logger is set up as gunicorn sets it up in a worker: at --log-level,
// writing gunicorn's error-log lines with the worker's pid. An app that
// hands its handlers and level to its own logger (Flask's documented
// pattern) logs to gorn's error log, and the runtime's tracebacks go
// through it, even when the app's logging configuration disables the
// loggers it does not name.
func TestGunicornErrorLogger(t *testing.T) {
	py := python(t)
	for _, level := range []string{"info", "warning"} {
		s := start(t, py, "--log-level", level, "lc_util:app")
		s.ready("/pid")
		worker := int(getJSON(t, noKeepAlive, s.URL+"/pid")["ppid"].(float64)) // "Booting worker" is info
		getJSON(t, noKeepAlive, s.URL+"/glog?m=from-the-app-"+level)
		if code, _ := s.get("/raise?m=boom-" + level); code != 500 {
			t.Fatalf("/raise: status %d, want 500", code)
		}
		stamp := `\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\]`
		s.waitLog(fmt.Sprintf(`(?m)^%s \[%d\] \[ERROR\] Error handling request /raise\?m=boom-%s\nTraceback \(most recent call last\):\n(?:  .*\n)+RuntimeError: boom-%s\n`, stamp, worker, level, level), 10*time.Second)
		info := regexp.MustCompile(fmt.Sprintf(`(?m)^%s \[%d\] \[INFO\] from-the-app-%s\n`, stamp, worker, level))
		if got := info.MatchString(s.log.String()); got != (level == "info") {
			t.Errorf("--log-level %s: the app's info line logged: %v, want %v\n%s", level, got, level == "info", s.log.String())
		}
		stopTerm(t, s)
	}
	// An app that disables the loggers its configuration does not name
	// (Django's disable_existing_loggers) still has its tracebacks logged.
	s := start(t, py, "lc_quietlog:app")
	s.ready("/") // any status
	if code, _ := s.get("/"); code != 500 {
		t.Fatalf("lc_quietlog: status %d, want 500", code)
	}
	s.waitLog(`\[ERROR\] Error handling request /\nTraceback[\s\S]*RuntimeError: quiet app failed\n`, 10*time.Second)
	stopTerm(t, s)
}

// TestServerHooks: the worker-side server hooks of a gunicorn
// configuration file run in the app's runtime at gunicorn's moments, with
// gunicorn's arguments: post_fork before the app is imported,
// post_worker_init after, pre_request and post_request around each
// request (an exception in pre_request is a 500, one in post_request is
// logged), worker_exit at a graceful stop. ssl_context gets a warning.
// With the access log through Python's logging, each request is logged
// once, the 500 of a pre_request that raised too.
func TestServerHooks(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "hooks.out")
	access := filepath.Join(dir, "access.log")
	conf := filepath.Join(dir, "gunicorn.conf.py")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`import sys
OUT = %q
accesslog = %q
logconfig_dict = {"version": 1, "loggers": {"other": {"level": "INFO"}}}

def note(*words):
    with open(OUT, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\n")

def post_fork(server, worker):
    note("post_fork", worker.pid, worker.ppid, worker.age, server.pid, server.num_workers, "lc_util" in sys.modules)
    server.log.info("post_fork in %%s", worker.pid)

def post_worker_init(worker):
    note("post_worker_init", worker.booted, callable(worker.wsgi), "lc_util" in sys.modules)

def pre_request(worker, req):
    note("pre_request", worker.nr, req.method, req.path, req.query, req.version, dict(req.headers).get("X-TEST"))
    if req.path == "/cwd":
        raise ValueError("refused by pre_request")

def post_request(worker, req, environ, resp):
    note("post_request", worker.nr, req.path, environ.get("PATH_INFO"), resp and resp.status,
         resp and resp.status_code, bool(resp and resp.sent > 0))
    if req.path == "/exe":
        raise KeyError("post_request failed")

def worker_exit(server, worker):
    note("worker_exit", worker.pid, worker.alive)

def ssl_context(config, default_ssl_context_factory):
    return default_ssl_context_factory()
`, out, access)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, py, "-c", conf, "lc_util:app")
	s.ready("/pid")
	master := s.cmd.Process.Pid
	req, _ := http.NewRequest("GET", s.URL+"/pid?x=1", nil)
	req.Header.Set("X-Test", "yes")
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ids struct{ Pid, Ppid int }
	json.NewDecoder(resp.Body).Decode(&ids)
	resp.Body.Close()
	if code, _ := s.get("/cwd"); code != 500 {
		t.Errorf("pre_request raised: status %d, want 500", code)
	}
	if code, _ := s.get("/exe"); code != 200 {
		t.Errorf("post_request raised: status %d, want 200", code)
	}
	s.waitLog(`(?m)^\[[^]]+\] \[\d+\] \[ERROR\] Exception in post_request hook\nTraceback[\s\S]*KeyError: 'post_request failed'\n`, 10*time.Second)
	s.waitLog(`(?m)^\[[^]]+\] \[\d+\] \[ERROR\] Error handling request /cwd\nTraceback[\s\S]*ValueError: refused by pre_request\n`, 10*time.Second)
	s.waitLog(fmt.Sprintf(`(?m)^\[[^]]+\] \[%d\] \[INFO\] post_fork in %d$`, ids.Ppid, ids.Pid), 10*time.Second)
	s.waitLog(`\[WARNING\] `+regexp.QuoteMeta(conf)+`: Server hooks gorn does not run: ssl_context\n`, 10*time.Second)
	stopTerm(t, s)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		fmt.Sprintf(`^post_fork %d %d 1 %d 1 False\npost_worker_init True True True\n`, ids.Pid, ids.Ppid, master),
		`\npre_request \d+ GET /pid x=1 \(1, 1\) yes\npost_request \d+ /pid /pid 200 OK 200 True\n`,
		`\npre_request \d+ GET /cwd  \(1, 1\) None\npost_request \d+ /cwd None None None False\n`,
		`\npre_request \d+ GET /exe  \(1, 1\) None\npost_request \d+ /exe /exe 200 OK 200 True\n`,
		fmt.Sprintf(`\nworker_exit %d False\n$`, ids.Pid),
	} {
		if !regexp.MustCompile(re).Match(b) {
			t.Errorf("the hooks' lines do not match %s:\n%s", re, b)
		}
	}
	b, err = os.ReadFile(access)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{`"GET /pid?x=1 HTTP/1.1" 200 `, `"GET /cwd HTTP/1.1" 500 136 `, `"GET /exe HTTP/1.1" 200 `} {
		if n := strings.Count(string(b), line); n != 1 {
			t.Errorf("%d access lines with %s, want 1:\n%s", n, line, b)
		}
	}
}

// TestReloadHoldUps: a HUP whose configuration file takes longer than
// --timeout to run does not count that time against the workers'
// heartbeats (the master could not read them meanwhile); a HUP whose file
// no longer runs, or whose settings are refused, keeps the workers, and a
// worker that replaces one of them still starts in --chdir (not in the
// start directory the master read the file from) and without the refused
// settings' --env.
func TestReloadHoldUps(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "gunicorn.conf.py")
	slow := filepath.Join(dir, "slow")
	write := func(last string) {
		t.Helper()
		text := fmt.Sprintf("import os, time\nchdir = %q\nwsgi_app = \"lc_util:app\"\nif os.path.exists(%q):\n    time.sleep(3)\n%s\n", appsDir(t), slow, last)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("workers = 1")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := startLC(t, lcOpts{dir: dir}, "--python", py, "--timeout", "1", "-b", addr)
	s.setAddr(addr)
	s.ready("/pid")
	worker := int(getJSON(t, noKeepAlive, s.URL+"/pid")["ppid"].(float64))

	if err := os.WriteFile(slow, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	poolSignal(t, s, syscall.SIGHUP, "hup")
	s.waitLog(`Reload: generation 2 is serving`, 30*time.Second)
	if strings.Contains(s.log.String(), "WORKER TIMEOUT") {
		t.Fatalf("a worker was timed out while the master read the configuration:\n%s", s.log.String())
	}
	if err := os.Remove(slow); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for int(getJSON(t, noKeepAlive, s.URL+"/pid")["ppid"].(float64)) == worker {
		if time.Now().After(deadline) {
			t.Fatalf("generation 1's worker %d still serves:\n%s", worker, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	worker = int(getJSON(t, noKeepAlive, s.URL+"/pid")["ppid"].(float64))

	// A file that no longer runs, then one whose settings are refused
	// after its --chdir and --env were applied.
	for i, last := range []string{"workers = 1 / 0", "raw_env = [\"GORN_RELOAD_ENV=new\"]\nworkers = 0"} {
		write(last)
		poolSignal(t, s, syscall.SIGHUP, "hup")
		poolWaitCount(t, s, `Reload failed: cannot read the configuration; keeping the current workers`, i+1, 30*time.Second)
		if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline = time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			code, body, err := fetch(ctx, noKeepAlive, s.URL+"/pid")
			cancel()
			var ids struct{ Ppid int }
			if err == nil && code == 200 && json.Unmarshal([]byte(body), &ids) == nil && ids.Ppid != worker {
				worker = ids.Ppid
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%q: no worker replaced %d:\n%s", last, worker, s.log.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if env := getJSON(t, noKeepAlive, s.URL+"/osenv"); env["GORN_RELOAD_ENV"] != nil {
			t.Errorf("%q: the replacement worker has the refused --env GORN_RELOAD_ENV=%v", last, env["GORN_RELOAD_ENV"])
		}
	}
	if strings.Contains(s.log.String(), "Exception in worker process") {
		t.Errorf("a worker failed to boot after a failed reload:\n%s", s.log.String())
	}
	stopTerm(t, s)
}

// TestMasterHooks: the server hooks gunicorn runs in its master run in a
// Python process beside gorn's master, at gunicorn's moments and in order:
// nworkers_changed and on_starting before the master binds, when_ready
// once it has, pre_fork before each worker, child_exit after one exits
// (with the pid of its app runtime, as a Prometheus client's multiprocess
// mode wants), nworkers_changed on TTIN, on_reload on HUP, pre_exec on
// USR2, on_exit at the end. What a hook leaves running (when_ready's metrics server thread)
// outlives HUP and ends with the master. An on_starting that raises stops
// gorn with exit code 1.
func TestMasterHooks(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "hooks.out")
	metricsPort := freePort(t)
	conf := filepath.Join(dir, "gunicorn.conf.py")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`import http.server, json, os, threading
OUT = %q

def note(*words):
    with open(OUT, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\n")

def nworkers_changed(server, new, old):
    note("nworkers_changed", new, old)

def on_starting(server):
    note("on_starting", server.pid, server.num_workers)

def when_ready(server):
    note("when_ready", server.pid)
    server.log.info("ready for %%s", "business")

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"pid": os.getpid()}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    metrics = http.server.HTTPServer(("127.0.0.1", %d), Metrics)
    threading.Thread(target=metrics.serve_forever, daemon=True).start()

def pre_fork(server, worker):
    note("pre_fork", worker.pid, worker.age)

def child_exit(server, worker):
    note("child_exit", worker.pid, worker.ppid, worker.age)

def on_reload(server):
    note("on_reload", server.num_workers)

def pre_exec(server):
    note("pre_exec", server.pid)

def on_exit(server):
    note("on_exit", server.pid)
`, out, metricsPort)), 0o644); err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d/", metricsPort)
	s := start(t, py, "-c", conf, "-w", "1", "lc_util:app")
	s.ready("/pid")
	master := s.cmd.Process.Pid
	s.waitLog(fmt.Sprintf(`(?m)^\[[^]]+\] \[%d\] \[INFO\] ready for business$`, master), 10*time.Second)
	hooksPid := int(getJSON(t, noKeepAlive, metrics)["pid"].(float64))
	if hooksPid == master {
		t.Fatalf("the hooks ran in the master (pid %d)", master)
	}
	if ppid, _, ok := procParent(hooksPid); !ok || ppid != master {
		t.Errorf("the hooks' process %d has parent %d, want the master %d", hooksPid, ppid, master)
	}
	ids := getJSON(t, noKeepAlive, s.URL+"/pid")
	runtime, worker := int(ids["pid"].(float64)), int(ids["ppid"].(float64))

	poolSignal(t, s, syscall.SIGTTIN, "ttin")
	poolWaitCount(t, s, `Booting worker with pid`, 2, 10*time.Second)
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poolWaitCount(t, s, `Booting worker with pid`, 3, 10*time.Second)
	poolSignal(t, s, syscall.SIGHUP, "hup")
	s.waitLog(`Reload: generation 2 is serving`, 30*time.Second)
	if got := int(getJSON(t, noKeepAlive, metrics)["pid"].(float64)); got != hooksPid {
		t.Errorf("after HUP the metrics server answers from pid %d, want %d", got, hooksPid)
	}
	// USR2 runs pre_exec before it starts the new master, which this
	// configuration file, broken now, stops at once.
	if err := os.WriteFile(conf, []byte("raise RuntimeError('not for the new master')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	poolSignal(t, s, syscall.SIGUSR2, "usr2")
	s.waitLog(`The new master \(pid: \d+\) exited \(exit code 1\); this master keeps serving`, 30*time.Second)
	stopTerm(t, s)
	if alive(hooksPid) {
		t.Errorf("the hooks' process %d outlived the master", hooksPid)
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{"nworkers_changed 1 None", fmt.Sprintf("on_starting %d 1", master), fmt.Sprintf("when_ready %d", master), "pre_fork None 1"}
	if len(lines) < len(want) || !slices.Equal(lines[:len(want)], want) {
		t.Errorf("the hooks ran\n%s\nwant them to start with %q", b, want)
	}
	if last := lines[len(lines)-1]; last != fmt.Sprintf("on_exit %d", master) {
		t.Errorf("the last hook to run was %q, want on_exit", last)
	}
	// Every worker's exit, those TERM stopped included: five spawned.
	if n := strings.Count(string(b), "child_exit "); n != 5 {
		t.Errorf("child_exit ran %d times, want 5:\n%s", n, b)
	}
	for _, w := range []string{
		"nworkers_changed 2 1\npre_fork None 2\n",
		fmt.Sprintf("child_exit %d %d 1\npre_fork None 3\n", runtime, worker),
		"on_reload 2\n",
		fmt.Sprintf("pre_exec %d\n", master),
	} {
		if !strings.Contains(string(b), w) {
			t.Errorf("the hooks' lines lack %q:\n%s", w, b)
		}
	}

	bad := filepath.Join(dir, "bad.py")
	if err := os.WriteFile(bad, []byte("def on_starting(server):\n    raise RuntimeError('not today')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runGorn(t, nil, "--python", py, "-c", bad, "-b", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "lc_util:app")
	if code != 1 || !regexp.MustCompile(`\[ERROR\] Exception in on_starting hook\nTraceback[\s\S]*RuntimeError: not today\n[\s\S]*\[ERROR\] Shutting down: the on_starting hook failed\n$`).MatchString(errOut) {
		t.Errorf("an on_starting that raises: exit %d, want 1, with its traceback:\n%s", code, errOut)
	}
}

// TestServerHooksConfig: server.cfg and worker.cfg carry the settings gorn
// runs with, by gunicorn's names and in gunicorn's types, in the runtimes'
// hooks and the master's, and follow a HUP. The configuration they come
// from never shows in any process's command line.
func TestServerHooksConfig(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "hooks.out")
	conf := filepath.Join(dir, "gunicorn.conf.py")
	const secret = "s3cr3t-4f9e1c"
	file := func(timeout int) []byte {
		return []byte(fmt.Sprintf(`import json
OUT = %q
workers = 2
timeout = %d
max_requests = 1000
raw_env = ["GORN_TEST_TOKEN=%s"]
logconfig_dict = {"version": 1, "disable_existing_loggers": False, "loggers": {"%s": {"level": "INFO"}}}

def note(hook, server, worker=None):
    cfg = server.cfg
    with open(OUT, "a") as f:
        f.write(json.dumps({"hook": hook, "same": worker is None or worker.cfg is cfg,
            "bind": cfg.bind, "address": cfg.address, "workers": cfg.workers,
            "timeout": cfg.timeout, "max_requests": cfg.max_requests, "token": cfg.env.get("GORN_TEST_TOKEN"),
            "preload_app": cfg.preload_app, "workers_setting": cfg.settings["workers"].value,
            "worker_class_str": cfg.worker_class_str, "uid": cfg.uid}) + "\n")

def when_ready(server):
    note("when_ready", server)

def on_reload(server):
    note("on_reload", server)

def post_fork(server, worker):
    note("post_fork", server, worker)
`, out, timeout, secret, secret))
	}
	if err := os.WriteFile(conf, file(45), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, py, "-c", conf, "lc_util:app")
	s.ready("/pid")
	host, port, _ := net.SplitHostPort(s.Addr)
	portNum, _ := strconv.Atoi(port)
	notes := func(hook string, n int) []map[string]any {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(out)
			var got []map[string]any
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var note map[string]any
				if json.Unmarshal([]byte(line), &note) == nil && note["hook"] == hook {
					got = append(got, note)
				}
			}
			if len(got) >= n {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d %s lines, want %d:\n%s", len(got), hook, n, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	check := func(note map[string]any, timeout int) {
		t.Helper()
		want := map[string]any{
			"same": true, "bind": []any{s.Addr}, "address": []any{[]any{host, float64(portNum)}}, "workers": 2.0,
			"timeout": float64(timeout), "max_requests": 1000.0, "token": secret, "preload_app": false,
			"workers_setting": 2.0, "worker_class_str": "sync", "uid": float64(os.Geteuid()),
		}
		for k, v := range want {
			if !reflect.DeepEqual(note[k], v) {
				t.Errorf("%s: cfg %s = %v, want %v", note["hook"], k, note[k], v)
			}
		}
	}
	check(notes("when_ready", 1)[0], 45)
	for _, note := range notes("post_fork", 2) {
		check(note, 45)
	}

	// Not in any process's command line: the master's, its workers', their
	// runtimes' and the master hooks' process.
	pids := []int{s.cmd.Process.Pid}
	for i := 0; i < len(pids); i++ {
		pids = append(pids, childrenOf(pids[i])...)
	}
	if len(pids) < 6 { // master, hooks' process, 2 workers, 2 runtimes
		t.Fatalf("gorn runs %d processes (%v), want at least 6", len(pids), pids)
	}
	for _, pid := range pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(b, []byte(secret)) {
			t.Errorf("process %d shows the configuration in its command line: %q", pid, b)
		}
	}

	if err := os.WriteFile(conf, file(50), 0o644); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload: generation 2 is serving`, 30*time.Second)
	check(notes("on_reload", 1)[0], 50)
	for _, note := range notes("post_fork", 4)[2:] {
		check(note, 50)
	}
	stopTerm(t, s)
}

// TestMasterHooksReopenLog: USR1 has the master hooks' process write to a
// fresh open of --error-logfile too, as the master and workers do after
// logrotate moved the file.
func TestMasterHooksReopenLog(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	errLog := filepath.Join(dir, "error.log")
	conf := filepath.Join(dir, "gunicorn.conf.py")
	if err := os.WriteFile(conf, []byte("def nworkers_changed(server, new, old):\n    server.log.info('workers: %s -> %s', old, new)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, py, "-c", conf, "--error-logfile", errLog, "-w", "1", "lc_util:app")
	s.ready("/pid")
	waitFile(t, errLog, "[INFO] workers: None -> 1\n")
	if err := os.Rename(errLog, errLog+".1"); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGUSR1)
	waitFile(t, errLog, "") // the master created it anew
	s.signal(syscall.SIGTTIN)
	waitFile(t, errLog, "[INFO] workers: 1 -> 2\n")
	stopTerm(t, s)
}

// TestMasterHooksProcessGone: a master hook that ends its process
// (os._exit) costs the master its hooks, with one error line, and nothing
// else: it keeps spawning workers and stops cleanly.
func TestMasterHooksProcessGone(t *testing.T) {
	py := python(t)
	conf := filepath.Join(t.TempDir(), "gunicorn.conf.py")
	if err := os.WriteFile(conf, []byte("import os\ndef when_ready(server):\n    os._exit(3)\ndef pre_fork(server, worker):\n    pass\ndef on_exit(server):\n    pass\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, py, "-c", conf, "-w", "1", "lc_util:app")
	s.ready("/pid")
	poolSignal(t, s, syscall.SIGTTIN, "ttin")
	poolWaitCount(t, s, `Booting worker with pid`, 2, 10*time.Second)
	s.waitLog(`\[ERROR\] The process running the master's server hooks (is gone|exited); they no longer run`, 10*time.Second)
	s.ready("/pid")
	stopTerm(t, s)
	if n := strings.Count(s.log.String(), "they no longer run"); n != 1 {
		t.Errorf("%d lines say the hooks no longer run, want 1:\n%s", n, s.log.String())
	}
}

// TestServerHooksSignals: worker_abort runs in the runtime a request timed
// out in (after faulthandler's stack dump, which still comes first), and
// worker_int in the runtime a quick stop (QUIT) ends, each followed by
// worker_exit, as gunicorn's worker runs them on SIGABRT and
// SIGINT/SIGQUIT and then exits.
func TestServerHooksSignals(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "hooks.out")
	conf := filepath.Join(dir, "gunicorn.conf.py")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`OUT = %q

def note(*words):
    with open(OUT, "a") as f:
        f.write(" ".join(str(w) for w in words) + "\n")

def worker_abort(worker):
    note("worker_abort", worker.pid, worker.alive)

def worker_int(worker):
    note("worker_int", worker.pid, worker.alive)

def worker_exit(server, worker):
    note("worker_exit", worker.pid, worker.alive)
`, out)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, py, "-c", conf, "-w", "1", "--timeout", "1", "lc_util:app")
	s.ready("/pid")
	first := int(getJSON(t, noKeepAlive, s.URL+"/pid")["pid"].(float64))
	if code, _ := s.get("/hold?t=5"); code != 504 {
		t.Fatalf("a request past --timeout: status %d, want 504", code)
	}
	waitFile(t, out, fmt.Sprintf("worker_abort %d False\nworker_exit %d False\n", first, first))
	s.waitLog(`(?s)Current thread.*File ".*lc_util\.py", line \d+ in app`, 10*time.Second)
	second := int(getJSON(t, noKeepAlive, s.URL+"/pid")["pid"].(float64))
	if second == first {
		t.Fatalf("the runtime %d still serves after the timeout", first)
	}
	s.signal(syscall.SIGQUIT)
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after QUIT, want 0", code)
	}
	waitFile(t, out, fmt.Sprintf("worker_int %d False\nworker_exit %d False\n", second, second))
}

// TestServerHooksQuickStopExit: a configuration file with worker_exit
// alone still has it run at a quick stop (INT), as gunicorn's worker runs
// it whenever it exits.
func TestServerHooksQuickStopExit(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "hooks.out")
	conf := filepath.Join(dir, "gunicorn.conf.py")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`def worker_exit(server, worker):
    with open(%q, "a") as f:
        f.write("worker_exit %%d %%s\n" %% (worker.pid, worker.alive))
`, out)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t, py, "-c", conf, "-w", "1", "lc_util:app")
	s.ready("/pid")
	pid := int(getJSON(t, noKeepAlive, s.URL+"/pid")["pid"].(float64))
	s.signal(syscall.SIGINT)
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after INT, want 0", code)
	}
	waitFile(t, out, fmt.Sprintf("worker_exit %d False\n", pid))
}

// TestReloadWorkers: HUP keeps the worker count TTIN and TTOU made while
// --workers is unchanged, and applies an edited one (the configuration
// file's workers), calling nworkers_changed; an edited --log-level applies
// to the master's own lines too.
func TestReloadWorkers(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "gunicorn.conf.py")
	out := filepath.Join(dir, "hooks.out")
	write := func(workers int, level string) {
		t.Helper()
		text := fmt.Sprintf("workers = %d\nloglevel = %q\ndef nworkers_changed(server, new, old):\n    with open(%q, 'a') as f:\n        f.write('%%s -> %%s\\n' %% (old, new))\n", workers, level, out)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(1, "info")
	s := start(t, py, "-c", conf, "lc_util:app")
	s.ready("/pid")
	master := regexp.QuoteMeta(fmt.Sprintf("[%d]", s.cmd.Process.Pid))
	poolSignal(t, s, syscall.SIGTTIN, "ttin")
	poolSignal(t, s, syscall.SIGHUP, "hup")
	s.waitLog(`Reloading: starting 2 new workers \(generation 2\)`, 10*time.Second)
	s.waitLog(`Reload: generation 2 is serving`, 30*time.Second)
	if regexp.MustCompile(master + ` \[DEBUG\]`).MatchString(s.log.String()) {
		t.Fatalf("the master logged at debug level under --log-level info:\n%s", s.log.String())
	}
	write(3, "debug")
	poolSignal(t, s, syscall.SIGHUP, "hup")
	s.waitLog(`Number of workers: 3 \(--workers is now 3\)\n.*Reloading: starting 3 new workers \(generation 3\)`, 10*time.Second)
	s.waitLog(`Reload: generation 3 is serving`, 30*time.Second)
	s.waitLog(master+` \[DEBUG\] Worker ready`, 10*time.Second)
	stopTerm(t, s)
	waitFile(t, out, "None -> 1\n1 -> 2\n2 -> 3\n")
}

// TestReloadPidFile: a HUP that changes --pid (the configuration file's
// pidfile) moves the pid file, as gunicorn's HUP does; the new one goes at
// exit.
func TestReloadPidFile(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "gunicorn.conf.py")
	first, second := filepath.Join(dir, "first.pid"), filepath.Join(dir, "second.pid")
	write := func(pidfile string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("pidfile = %q\n", pidfile)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(first)
	s := start(t, py, "-c", conf, "lc_util:app")
	s.ready("/pid")
	master := fmt.Sprintf("%d\n", s.cmd.Process.Pid)
	waitFile(t, first, master)
	write(second)
	poolSignal(t, s, syscall.SIGHUP, "hup")
	waitFile(t, second, master)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(first); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old pid file %s is still there", first)
		}
	}
	stopTerm(t, s)
	if _, err := os.Stat(second); !os.IsNotExist(err) {
		t.Errorf("the pid file %s outlived the master (%v)", second, err)
	}
}

// TestReloadBind: a HUP that changes the addresses (the configuration
// file's bind) listens on the new ones, keeps the socket of an address
// that stays, and closes the old ones once the new generation serves, as
// gunicorn's reload does; the accept-queue metrics follow. An address that
// cannot be bound fails the reload and changes nothing.
func TestReloadBind(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "gunicorn.conf.py")
	a, b := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sock := filepath.Join(dir, "app.sock")
	write := func(tcp string, extra ...string) {
		t.Helper()
		text := fmt.Sprintf("bind = [%q, %q]\n", tcp, "unix:"+sock) + strings.Join(extra, "")
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inode := func() uint64 {
		t.Helper()
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	write(a)
	s := launchAt(t, gornBin, "", py, false, a, nil, "-c", conf, "--metrics-bind", metricsAddr, "lc_util:app")
	s.ready("/pid")
	before := inode()

	write(b)
	s.signal(syscall.SIGHUP)
	s.waitLog(`Listening at: http://`+regexp.QuoteMeta(b)+` \(\d+\)`, 30*time.Second)
	s.waitLog(`Reload: generation 2 is serving`, 30*time.Second)
	getJSON(t, noKeepAlive, "http://"+b+"/pid")
	getJSON(t, unixClient(sock), "http://gorn/pid")
	if inode() != before {
		t.Error("the unix socket, bound by both generations, was bound again")
	}
	// The old address closes once the old worker has exited.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections after the reload", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := noKeepAlive.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte(`gorn_listener_accept_queue_limit{listener="http://`+b+`"}`)) || bytes.Contains(body, []byte(`listener="http://`+a+`"`)) {
		t.Errorf("the accept-queue metrics are not the new listeners':\n%s", body)
	}

	// An address taken by another socket: the reload fails, nothing moves.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	write(busy.Addr().String())
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload failed: .*`+regexp.QuoteMeta(busy.Addr().String())+`.*; keeping the current workers`, 30*time.Second)
	getJSON(t, noKeepAlive, "http://"+b+"/pid")

	// A new generation that does not boot: the serving one keeps its
	// addresses, and the new address is closed again.
	c := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	write(c, "def post_fork(server, worker):\n    raise RuntimeError('broken on purpose')\n")
	s.signal(syscall.SIGHUP)
	s.waitLog(`Listening at: http://`+regexp.QuoteMeta(c)+` \(\d+\)`, 30*time.Second)
	s.waitLog(`Reload failed: generation 3 did not boot .*; generation 2 keeps serving`, 30*time.Second)
	getJSON(t, noKeepAlive, "http://"+b+"/pid")
	if conn, err := net.DialTimeout("tcp", c, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s, bound for the generation that did not boot, still accepts connections", c)
	}
	stopTerm(t, s)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the unix socket file outlived gorn: %v", err)
	}
}

// TestReloadLogFiles: a HUP that names other log files moves the error log
// (the master's lines, and what new workers and their runtimes write) and
// the access log, as gunicorn's does; the old files get nothing more once
// the old workers are gone. A new error log that cannot be opened fails
// the reload and changes nothing.
func TestReloadLogFiles(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "gunicorn.conf.py")
	errA, errB := filepath.Join(dir, "a-error.log"), filepath.Join(dir, "b-error.log")
	accA, accB := filepath.Join(dir, "a-access.log"), filepath.Join(dir, "b-access.log")
	write := func(errlog, accesslog string) {
		t.Helper()
		text := fmt.Sprintf("errorlog = %q\naccesslog = %q\n", errlog, accesslog)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(errA, accA)
	s := start(t, py, "-c", conf, "lc_util:app")
	s.ready("/pid")
	getJSON(t, noKeepAlive, s.URL+"/log?m=before-hup")
	waitFile(t, errA, "before-hup")
	waitFile(t, accA, "/log?m=before-hup")

	write(errB, accB)
	s.signal(syscall.SIGHUP)
	waitFile(t, errA, "Reload: the error log moves to "+errB)
	waitFile(t, errB, "Reload: generation 2 is serving")
	waitFile(t, errB, "Retiring worker")
	// The generation 1 worker writes its last line to the file it has;
	// once it is gone, requests reach the new one, whose runtime logs
	// (logging, gunicorn.error) to errB.
	waitFile(t, errA, "Worker exiting")
	getJSON(t, noKeepAlive, s.URL+"/log?m=after-hup")
	getJSON(t, noKeepAlive, s.URL+"/glog?m=glog-after-hup")
	waitFile(t, errB, "after-hup")
	waitFile(t, errB, "glog-after-hup")
	waitFile(t, accB, "/log?m=after-hup")
	for _, path := range []string{errA, accA} {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), "after-hup") {
			t.Errorf("%s still gets the new workers' lines:\n%s", path, b)
		}
	}

	write(filepath.Join(dir, "missing", "error.log"), accB)
	s.signal(syscall.SIGHUP)
	waitFile(t, errB, "Reload failed: cannot open the new --error-logfile")
	getJSON(t, noKeepAlive, s.URL+"/log?m=after-failed-hup")
	waitFile(t, errB, "after-failed-hup")
	if b, _ := os.ReadFile(errB); strings.Contains(string(b), "generation 3") {
		t.Errorf("the failed reload started generation 3:\n%s", b)
	}
	stopTerm(t, s)
	waitFile(t, errB, "Shutting down: Master")
}

// TestCLIConfigModule: -c python:MODULE imports the configuration from a
// module found from gorn's directory, as gunicorn does, relative imports
// and all; its server hooks run in the runtimes and the master hooks'
// process, which run from --chdir, and a HUP takes the module as edited.
func TestCLIConfigModule(t *testing.T) {
	py := python(t)
	dir, out := t.TempDir(), t.TempDir()
	module := func(version string) string {
		return fmt.Sprintf(`import os
from .base import MARK
VERSION = %q
raw_env = ["CONF_MARK=" + MARK]
def _record(name, text):
    with open(os.path.join(%q, name), "a") as f:
        f.write(text + "\n")
def post_worker_init(worker):
    _record("post_worker_init", MARK + " " + VERSION)
def on_reload(server):
    _record("on_reload", MARK + " " + VERSION)
`, version, out)
	}
	for name, text := range map[string]string{
		"deploy/__init__.py": "",
		"deploy/base.py":     "MARK = 'from-module'\n",
		"deploy/gunicorn.py": module("1"),
	} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := startIn(t, dir, py, "-c", "python:deploy.gunicorn", "--chdir", appsDir(t), "lc_util:app")
	s.ready("/pid")
	if env := getJSON(t, noKeepAlive, s.URL+"/osenv"); env["CONF_MARK"] != "from-module" {
		t.Errorf("raw_env from the module: CONF_MARK = %#v", env["CONF_MARK"])
	}
	waitFile(t, filepath.Join(out, "post_worker_init"), "from-module 1\n")

	// A different length: Python's cached bytecode must not stand in.
	if err := os.WriteFile(filepath.Join(dir, "deploy", "gunicorn.py"), []byte(module("22")), 0o644); err != nil {
		t.Fatal(err)
	}
	s.signal(syscall.SIGHUP)
	waitFile(t, filepath.Join(out, "on_reload"), "from-module 22\n")
	waitFile(t, filepath.Join(out, "post_worker_init"), "from-module 22\n")
	stopTerm(t, s)

	// A module that is not there: one line, exit 1.
	_, stderr, code := runGorn(t, nil, "-c", "python:no_such_config_module", "--check-config", "lc_util:app")
	if code != 1 || !strings.Contains(stderr, "python:no_such_config_module: ModuleNotFoundError: No module named 'no_such_config_module'") {
		t.Errorf("a missing module: exit %d\n%s", code, stderr)
	}
}

// rawRequest sends raw on a new connection to s and reads the response.
func rawRequest(t *testing.T, s *server, raw string) {
	t.Helper()
	c, br := s.rawConn()
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// TestAccessLogThroughLogging: with a logging configuration, requests the
// app answers are logged through Python's gunicorn.access logger, as
// gunicorn logs them: a record whose message is --access-logformat and
// whose argument is gunicorn's atoms, with --access-logfile a handler the
// configuration may replace or keep. What gorn answers itself (a refused
// request) the worker logs to --access-logfile; and once the app's own
// logging configuration has disabled the logger, the worker logs it all.
func TestAccessLogThroughLogging(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	format := `%(h)s %(u)s "%(r)s" %(s)s %(b)s "%({user-agent}i)s" %({content-type}o)s %({path_info}e)s %(p)s`
	request := func(s *server, raw string) { rawRequest(t, s, raw) }
	lines := func(path, substr string) int {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), substr)
	}

	t.Run("the configuration's handler", func(t *testing.T) {
		file := filepath.Join(dir, "replaced.log")
		dict := `{"version": 1, "formatters": {"f": {"format": "ACCESS %(name)s %(message)s"}},
			"handlers": {"h": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "f"}},
			"root": {"level": "WARNING", "handlers": []},
			"loggers": {"gunicorn.access": {"handlers": ["h"], "level": "INFO", "propagate": false}}}`
		s := start(t, py, "--log-config-dict", dict, "--access-logfile", file, "--access-logformat", format, "basic:app")
		s.ready("/environ")
		request(s, "GET /environ?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/1\r\nAuthorization: Basic Ym9iOnB3\r\nConnection: close\r\n\r\n")
		s.waitLog(`ACCESS gunicorn.access 127\.0\.0\.1 bob "GET /environ\?x=1 HTTP/1\.1" 200 \d+ "ua/1" application/json /environ <\d+>`, 10*time.Second)
		// The configuration is not in the runtime's command line, which
		// any user can read.
		runtimes := s.runtimePids()
		if len(runtimes) == 0 {
			t.Error("no runtime runs")
		}
		for _, pid := range runtimes {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || bytes.Contains(b, []byte("ACCESS %(name)s")) {
				t.Errorf("runtime %d's command line: %q (%v)", pid, b, err)
			}
		}
		// gorn's own answer: the worker's line, in the file.
		request(s, "GET /environ HTTP/1.1\r\nHost: h\r\nX-A: b\r\n c\r\n\r\n")
		waitFile(t, file, `HTTP/1.1" 400 `)
		if n := lines(file, " 200 "); n != 0 {
			t.Errorf("%s has %d lines for the app's answer; the configuration replaced that handler", file, n)
		}
	})

	t.Run("--access-logfile kept", func(t *testing.T) {
		file := filepath.Join(dir, "kept.log")
		s := start(t, py, "--log-config-dict", `{"version": 1, "loggers": {"other": {"level": "INFO"}}}`,
			"--access-logfile", file, "--access-logformat", format, "basic:app")
		s.ready("/environ")
		request(s, "GET /environ HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/2\r\nConnection: close\r\n\r\n")
		waitFile(t, file, `"ua/2"`)
		if n := lines(file, `"ua/2"`); n != 1 {
			t.Errorf("%s has %d lines for one request, want 1", file, n)
		}
		// An app that raised: gorn's 500, logged once, by the runtime.
		request(s, "GET /raise HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/5\r\nConnection: close\r\n\r\n")
		waitFile(t, file, `"GET /raise HTTP/1.1" 500 136 "ua/5" text/html /raise <`)
		// logrotate: the runtime's handler reopens the file on USR1.
		if err := os.Rename(file, file+".1"); err != nil {
			t.Fatal(err)
		}
		s.signal(syscall.SIGUSR1)
		deadline := time.Now().Add(10 * time.Second)
		for lines(file, `"ua/4"`) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no access line in the reopened %s", file)
			}
			request(s, "GET /environ HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/4\r\nConnection: close\r\n\r\n")
			time.Sleep(50 * time.Millisecond)
		}
		stopTerm(t, s)
		if n := lines(file+".1", `"ua/5"`); n != 1 {
			t.Errorf("%s has %d lines for the request whose app raised, want 1", file+".1", n)
		}
	})

	t.Run("disabled by the app", func(t *testing.T) {
		file := filepath.Join(dir, "worker.log")
		s := start(t, py, "--log-config-dict", `{"version": 1}`, "--access-logfile", file, "lc_quietlog:app")
		s.ready("/ok")
		request(s, "GET /ok HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/3\r\nConnection: close\r\n\r\n")
		waitFile(t, file, `"GET /ok HTTP/1.1" 200 2 "-" "ua/3"`)
		stopTerm(t, s)
		if n := lines(file, `"ua/3"`); n != 1 {
			t.Errorf("%s has %d lines for one request, want 1", file, n)
		}
	})
}

// TestLoggerClass: --logger-class (logger_class) has each runtime log the
// app's requests and its own error lines through the class, as gunicorn's
// workers do: a class of the app's, given by name, and a subclass of
// gunicorn's Logger the configuration file defines. gorn's worker still
// logs what it answers itself.
func TestLoggerClass(t *testing.T) {
	dir := t.TempDir()
	t.Run("by name", func(t *testing.T) {
		py := python(t)
		events, access := filepath.Join(dir, "events.json"), filepath.Join(dir, "access.log")
		s := start(t, py, "--logger-class", "lc_logger.JSONLogger", "-e", "ACCESS_JSON="+events, "--access-logfile", access, "basic:app")
		s.ready("/pid")
		rawRequest(t, s, "GET /pid HTTP/1.1\r\nHost: h\r\nUser-Agent: ua/1\r\nConnection: close\r\n\r\n")
		rawRequest(t, s, "GET /raise HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		rawRequest(t, s, "GET /pid HTTP/1.1\r\nHost: h\r\nX-A: b\r\n c\r\n\r\n") // folded: gorn's 400
		waitFile(t, events, `"agent": "ua/1"`)
		// The 500 gorn answers for an app that raised is the class's too.
		waitFile(t, events, `{"path": "/raise", "method": "GET", "status": "500 Internal Server Error", "sent": 136,`)
		waitFile(t, events, `{"setup": true, "workers": 1, "class": "JSONLogger"}`)
		s.waitLog(`JSONLOGGER ERROR Error handling request /raise\nTraceback`, 10*time.Second)
		// What gorn answers itself, its worker logs: a request it refused.
		waitFile(t, access, `HTTP/1.1" 400 `)
		s.signal(syscall.SIGUSR1)
		waitFile(t, events, `{"reopened": true}`)
		stopTerm(t, s)
		b, _ := os.ReadFile(events)
		for _, line := range strings.Split(string(b), "\n") {
			var e struct {
				Path, Method, Status, Agent string
				Sent                        int
				Seconds                     float64
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Agent == "ua/1" &&
				(e.Path != "/pid" || e.Method != "GET" || e.Status != "200 OK" || e.Sent < 10 || e.Seconds <= 0) {
				t.Errorf("the class got %+v for GET /pid", e)
			}
		}
		if b, _ := os.ReadFile(access); bytes.Contains(b, []byte(" 200 ")) || bytes.Contains(b, []byte(" 500 ")) {
			t.Errorf("gorn's access log has the app's requests, which the class logs:\n%s", b)
		}
	})

	t.Run("a gunicorn Logger the file defines", func(t *testing.T) {
		py := python(t, "gunicorn")
		access := filepath.Join(dir, "filtered.log")
		conf := filepath.Join(dir, "gunicorn.conf.py")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(`from gunicorn import glogging
accesslog = %q
access_log_format = '%%(h)s "%%(r)s" %%(s)s'

class HealthChecksOff(glogging.Logger):
    error_fmt = "FILTERED [%%(levelname)s] %%(message)s"

    def access(self, resp, req, environ, request_time):
        if req.path != "/pid":
            super().access(resp, req, environ, request_time)

logger_class = HealthChecksOff
`, access)), 0o644); err != nil {
			t.Fatal(err)
		}
		s := start(t, py, "-c", conf, "basic:app")
		s.ready("/environ")
		for _, path := range []string{"/pid", "/environ", "/raise"} {
			rawRequest(t, s, "GET "+path+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		}
		waitFile(t, access, `127.0.0.1 "GET /raise HTTP/1.1" 500`)
		s.waitLog(`FILTERED \[ERROR\] Error handling request /raise`, 10*time.Second)
		stopTerm(t, s)
		b, _ := os.ReadFile(access)
		if !bytes.Contains(b, []byte(`127.0.0.1 "GET /environ HTTP/1.1" 200`)) || bytes.Contains(b, []byte("/pid")) {
			t.Errorf("the access log, without /pid, should have /environ:\n%s", b)
		}
	})

	t.Run("a class that is not there", func(t *testing.T) {
		py := python(t)
		_, stderr, code := runGorn(t, nil, "--python", py, "-b", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--logger-class", "lc_logger.Nope", "basic:app")
		if code != 3 || !strings.Contains(stderr, "RuntimeError: --logger-class lc_logger.Nope: module lc_logger has no Nope") {
			t.Errorf("exit %d, want 3 and the reason:\n%s", code, stderr)
		}
	})
}

// TestSpew: --spew prints every line of Python each runtime runs, the
// app's and the runtime's, to standard output, as gunicorn's does.
func TestSpew(t *testing.T) {
	py := python(t)
	s := start(t, py, "--spew", "basic:app")
	s.ready("/pid")
	getJSON(t, noKeepAlive, s.URL+"/pid")
	stopTerm(t, s)
	s.waitLog(`(?m)^basic:\d+:     path = environ\["PATH_INFO"\]$`, 5*time.Second)
	s.waitLog(`(?m)^basic:\d+:         return _json\(start_response, \{"pid": os\.getpid\(\)\}\)$`, 5*time.Second)
	s.waitLog(`(?m)^__main__:\d+: `, 5*time.Second) // gorn_runtime.py, run as __main__
}

// TestReloadAccessLogUnopenable: a HUP that names an access log the workers
// cannot open fails the new generation's boot, and the serving workers go
// on serving (they used to count as ready, then exit, again and again).
func TestReloadAccessLogUnopenable(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "gunicorn.conf.py")
	write := func(access string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("accesslog = %q\n", access)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	good := filepath.Join(dir, "access.log")
	write(good)
	s := start(t, py, "-c", conf, "-w", "1", "lc_util:app")
	s.ready("/pid")
	waitFile(t, good, `"GET /pid HTTP/1.1" 200`)
	write(filepath.Join(dir, "missing", "access.log"))
	s.signal(syscall.SIGHUP)
	s.waitLog(`Cannot open the access log: opening log file: open .*missing/access\.log: no such file or directory`, 30*time.Second)
	s.waitLog(`Reload failed: generation 2 did not boot .*; generation 1 keeps serving`, 30*time.Second)
	getJSON(t, noKeepAlive, s.URL+"/pid")
	stopTerm(t, s)
}
