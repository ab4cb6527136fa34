// Package e2e runs the real gorn binary with a real python3 against real
// sockets and signals.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gornBin is the gorn binary built once for the whole package.
var gornBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gorn-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gornBin = filepath.Join(dir, "gorn")
	args := []string{"build", "-o", gornBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "../cmd/gorn")
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building gorn:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// appsDir holds the test apps.
func appsDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("testdata/apps")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var (
	pythonMu    sync.Mutex
	pythonCache = map[string]string{}
)

// python returns an interpreter that can import every module named, trying
// $GORN_TEST_PYTHON, /usr/bin/python3 (Debian's, which sees python3-*
// packages) and python3 on PATH. Without one the test is skipped, except
// under CI=true, where it fails: CI installs what the tests need.
func python(t *testing.T, modules ...string) string {
	t.Helper()
	key := strings.Join(modules, ",")
	pythonMu.Lock()
	defer pythonMu.Unlock()
	if p, ok := pythonCache[key]; ok {
		if p == "" {
			missingPython(t, modules)
		}
		return p
	}
	candidates := []string{os.Getenv("GORN_TEST_PYTHON"), "/usr/bin/python3", "python3"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		path, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		code := "import sys\nassert sys.version_info >= (3, 9)\n"
		for _, m := range modules {
			code += "import " + m + "\n"
		}
		if exec.Command(path, "-c", code).Run() == nil {
			pythonCache[key] = path
			return path
		}
	}
	pythonCache[key] = ""
	missingPython(t, modules)
	return ""
}

func missingPython(t *testing.T, modules []string) {
	t.Helper()
	msg := fmt.Sprintf("no python3 >= 3.9 with %v (set GORN_TEST_PYTHON, or apt-get install the python3-* packages)", modules)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// server is a running gorn master started by a test.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	Addr string // host:port of the first TCP bind
	URL  string // http://Addr
	log  *syncBuffer
	done chan struct{}
	err  error // cmd.Wait's result, valid once done is closed
}

// syncBuffer collects a process's output for assertions: in memory, or
// in file when that is set (the process writes there itself).
type syncBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	file *os.File
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	if b.file != nil {
		out, _ := os.ReadFile(b.file.Name())
		return string(out)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs gorn with args (the app and flags), in dir (default the test
// apps), binding a free port unless args bind something themselves. The
// server is killed (by pid, with its workers and runtimes) when the test
// ends.
func start(t *testing.T, py string, args ...string) *server {
	t.Helper()
	return startIn(t, "", py, args...)
}

func startIn(t *testing.T, dir, py string, args ...string) *server {
	t.Helper()
	return launch(t, gornBin, dir, py, false, args...)
}

// launch is startIn with the gorn binary at bin. toFile sends gorn's
// output to a file rather than a pipe, for a master whose output is shared
// with processes that outlive it (a new master started by USR2): a pipe
// they hold open would keep cmd.Wait from returning when the master exits.
func launch(t *testing.T, bin, dir, py string, toFile bool, args ...string) *server {
	t.Helper()
	return launchAt(t, bin, dir, py, toFile, "", nil, args...)
}

// launchAt is launch for a gorn whose configuration file binds addr (the
// server's Addr and URL), which no -b on the command line may override;
// with addr "", launch's. With tty, gorn runs with that terminal as its
// controlling terminal and standard input.
func launchAt(t *testing.T, bin, dir, py string, toFile bool, addr string, tty *os.File, args ...string) *server {
	t.Helper()
	if dir == "" {
		dir = appsDir(t)
	}
	s := &server{t: t, log: &syncBuffer{}, done: make(chan struct{}), Addr: addr}
	hasBind := addr != ""
	for _, a := range args {
		if a == "-b" || a == "--bind" || strings.HasPrefix(a, "--bind=") {
			hasBind = true
		}
	}
	full := []string{}
	if !hasBind {
		s.Addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		full = append(full, "-b", s.Addr)
	}
	if py != "" {
		full = append(full, "--python", py)
	}
	full = append(full, args...)
	s.URL = "http://" + s.Addr
	s.cmd = exec.Command(bin, full...)
	// A session of its own, without the terminal the tests may run in:
	// gorn ignores WINCH from a controlling terminal (TestWinchTerminal).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if tty != nil {
		s.cmd.Stdin = tty
		s.cmd.SysProcAttr.Setctty, s.cmd.SysProcAttr.Ctty = true, 0
	}
	s.cmd.Dir = dir
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	if toFile {
		f, err := os.Create(filepath.Join(t.TempDir(), "gorn.out"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		s.log.file = f
		s.cmd.Stdout, s.cmd.Stderr = f, f
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.kill)
	return s
}

// kill ends the master with SIGKILL if it still runs and checks that no
// worker or runtime outlives it.
func (s *server) kill() {
	select {
	case <-s.done:
	default:
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
	}
	pids := s.workerPids()
	pids = append(pids, s.runtimePids()...)
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				s.t.Errorf("process %d outlived the gorn master", pid)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if s.t.Failed() {
		s.t.Logf("gorn output:\n%s", s.log.String())
	}
}

// alive reports whether pid is a live process (zombies count as dead).
func alive(pid int) bool {
	_, state, ok := procParent(pid)
	return ok && state != 'Z'
}

// procParent reads a process's parent pid and state from /proc; ok is
// false once the process is gone (reaped).
func procParent(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	return ppid, fields[0][0], err == nil
}

var bootingRe = regexp.MustCompile(`Booting worker with pid: (\d+)`)

// workerPids are the pids of every worker the master has started.
func (s *server) workerPids() []int {
	var pids []int
	for _, m := range bootingRe.FindAllStringSubmatch(s.log.String(), -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	return pids
}

// runtimePids are the python children of the workers still alive.
func (s *server) runtimePids() []int {
	var out []int
	for _, w := range s.workerPids() {
		out = append(out, childrenOf(w)...)
	}
	return out
}

// childrenOf lists the live children of pid from /proc.
func childrenOf(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err == nil {
		var out []int
		for _, f := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(f)
			out = append(out, n)
		}
		// Children of other threads of the worker.
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			if task.Name() == strconv.Itoa(pid) {
				continue
			}
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
			for _, f := range strings.Fields(string(b)) {
				n, _ := strconv.Atoi(f)
				out = append(out, n)
			}
		}
		return out
	}
	return nil
}

// signal sends sig to the master.
func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signalling gorn: %v", err)
	}
}

// wait waits up to d for the master to exit and returns its exit code.
func (s *server) wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		s.t.Fatalf("gorn did not exit within %s\n%s", d, s.log.String())
	}
	if s.err == nil {
		return 0
	}
	if ee, ok := s.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	s.t.Fatalf("waiting for gorn: %v", s.err)
	return -1
}

// waitLog waits up to d for the output to match re.
func (s *server) waitLog(re string, d time.Duration) {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	for !rx.MatchString(s.log.String()) {
		if time.Now().After(deadline) {
			s.t.Fatalf("gorn output did not match %q within %s:\n%s", re, d, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ready waits until the server answers path (any status), up to 30 s.
func (s *server) ready(path string) {
	s.t.Helper()
	s.readyWith(&http.Client{Timeout: 30 * time.Second}, s.URL+path)
}

// readyWith waits up to 30 s until client gets a response (any status)
// from url.
func (s *server) readyWith(client *http.Client, url string) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("gorn exited before serving: %v\n%s", s.err, s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("gorn did not serve %s within 30s: %v\n%s", url, err, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get fetches path and returns status and body.
func (s *server) get(path string) (int, string) {
	s.t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(s.URL + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// rawConn opens a TCP connection for hand-written HTTP, closed at the end
// of the test, with a 30 s deadline.
func (s *server) rawConn() (net.Conn, *bufio.Reader) {
	s.t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr, 10*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s.t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// testContext is a context bounded to d and the test's life.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
