package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Replacing gorn's binary on disk, and USR2 (docs/signals.md), with the
// real binary and testdata/apps/pool_app.py.

// copyGorn copies the gorn binary into dir and returns its path.
func copyGorn(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(gornBin)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gorn")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// sameFile reports whether two processes run the same executable file.
func sameFile(t *testing.T, pid1, pid2 int) bool {
	t.Helper()
	a, err1 := os.Stat(fmt.Sprintf("/proc/%d/exe", pid1))
	b, err2 := os.Stat(fmt.Sprintf("/proc/%d/exe", pid2))
	if err1 != nil || err2 != nil {
		t.Fatalf("reading the executables of %d and %d: %v, %v", pid1, pid2, err1, err2)
	}
	return os.SameFile(a, b)
}

// TestWorkersRunTheMastersBinary replaces the gorn binary on disk (as a
// package upgrade does) under a running master: the workers it starts
// afterwards still run the master's own binary, not the new file.
func TestWorkersRunTheMastersBinary(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	bin := copyGorn(t, dir)
	s := launch(t, bin, "", py, false, "--log-level", "debug", "pool_app:app")
	poolWaitCount(t, s, `Worker ready pid=`, 1, 30*time.Second)

	// The new file: a program that is not gorn at all, renamed over the
	// old one as package managers do.
	next := filepath.Join(dir, "gorn.new")
	if err := os.WriteFile(next, []byte("#!/bin/sh\necho 'not the master binary' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, bin); err != nil {
		t.Fatal(err)
	}
	poolSignal(t, s, syscall.SIGTTIN, "ttin")
	poolWaitCount(t, s, `Worker ready pid=`, 2, 30*time.Second)
	booted := regexp.MustCompile(`Booting worker with pid: (\d+)`).FindAllStringSubmatch(s.log.String(), -1)
	if len(booted) != 2 {
		t.Fatalf("%d workers booted, want 2:\n%s", len(booted), s.log.String())
	}
	pid, _ := strconv.Atoi(booted[1][1])
	if !sameFile(t, pid, s.cmd.Process.Pid) {
		t.Errorf("worker %d does not run its master's binary", pid)
	}
	if r := poolMustPost(t, s.URL+"/"); r.Ppid == 0 {
		t.Errorf("reply %+v", r)
	}
}

// upgradeMasters lists the pids of the new masters USR2 has started, from
// the shared output.
func upgradeMasters(s *server) []int {
	var pids []int
	for _, m := range regexp.MustCompile(`Upgrading: started a new master \(pid: (\d+)\)`).FindAllStringSubmatch(s.log.String(), -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	return pids
}

// readPid reads a pid file; 0 when it does not exist.
func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s holds %q", path, b)
	}
	return pid
}

// unixClient is an HTTP client whose connections go to the unix socket
// at path.
func unixClient(path string) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func TestUpgradeUSR2(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	poolWriteApp(t, dir, "v1", false)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sock := filepath.Join(dir, "gorn.sock")
	pidfile := filepath.Join(dir, "gorn.pid")
	bin := copyGorn(t, t.TempDir())
	s := launch(t, bin, dir, py, true, "--log-level", "debug", "-w", "2", "-b", addr, "-b", "unix:"+sock,
		"--metrics-bind", metricsAddr, "-p", pidfile, "pool_app:app")
	poolWaitCount(t, s, `Worker ready pid=`, 2, 30*time.Second)
	// Masters USR2 started are not the test's children: end them by pid
	// (their workers die with them) before s's own clean-up runs.
	t.Cleanup(func() {
		for _, pid := range upgradeMasters(s) {
			if alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	url := "http://" + addr + "/"
	old := s.cmd.Process.Pid
	if r := poolMustPost(t, url); r.Value != "v1" {
		t.Fatalf("value %q, want v1", r.Value)
	}

	// A new master that cannot boot (the app on disk is broken now) exits;
	// the old one keeps serving, its pid file untouched.
	poolWriteApp(t, dir, "v2-broken", true)
	poolSignal(t, s, syscall.SIGUSR2, "usr2")
	s.waitLog(`The new master \(pid: \d+\) exited \(exit code [34]\); this master keeps serving`, 30*time.Second)
	if pid := readPid(t, pidfile); pid != old {
		t.Errorf("pid file holds %d after the failed upgrade, want the old master's %d", pid, old)
	}
	if pid := readPid(t, pidfile+".2"); pid != 0 {
		t.Errorf("the failed new master left %s.2 (pid %d)", pidfile, pid)
	}
	if r := poolMustPost(t, url); r.Value != "v1" {
		t.Fatalf("after the failed upgrade: value %q, want v1", r.Value)
	}

	// The upgrade that works, under load, to a new binary: installed as
	// package managers do, a new file renamed over the old one.
	poolWriteApp(t, dir, "v2", false)
	next := copyGorn(t, t.TempDir())
	if err := os.Rename(next, bin); err != nil {
		t.Fatal(err)
	}
	installed, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	load := poolStartLoad(t, url, 3, 2, 60*time.Second)
	time.Sleep(300 * time.Millisecond)
	poolSignal(t, s, syscall.SIGUSR2, "usr2")
	poolWaitCount(t, s, `Upgrading: started a new master`, 2, 10*time.Second)
	newPid := upgradeMasters(s)[1]
	tag := regexp.QuoteMeta(fmt.Sprintf("[%d]", newPid))
	poolWaitCount(t, s, tag+` \[DEBUG\] Worker ready`, 2, 30*time.Second)
	if ppid, _, ok := procParent(newPid); !ok || ppid != old {
		t.Fatalf("the new master %d has parent %d (%v), want the old master %d", newPid, ppid, ok, old)
	}
	if exe, err := os.Stat(fmt.Sprintf("/proc/%d/exe", newPid)); err != nil || !os.SameFile(exe, installed) {
		t.Errorf("the new master does not run the binary installed at %s (%v)", bin, err)
	}
	if sameFile(t, newPid, old) {
		t.Errorf("the new master runs the old master's binary")
	}
	if pid := readPid(t, pidfile); pid != old {
		t.Errorf("pid file holds %d while both masters run, want the old master's %d", pid, old)
	}
	if pid := readPid(t, pidfile+".2"); pid != newPid {
		t.Errorf("%s.2 holds %d, want the new master's %d", pidfile, pid, newPid)
	}
	// One upgrade at a time.
	poolSignal(t, s, syscall.SIGUSR2, "usr2")
	s.waitLog(regexp.QuoteMeta(fmt.Sprintf("[%d]", old))+` \[WARNING\] USR2 signal ignored\. Child exists\.`, 5*time.Second)
	syscall.Kill(newPid, syscall.SIGUSR2)
	s.waitLog(tag+` \[WARNING\] USR2 signal ignored\. Parent exists\.`, 5*time.Second)
	// Both masters serve on the same sockets: the new workers answer with
	// the new code.
	deadline := time.Now().Add(15 * time.Second)
	for {
		load.mu.Lock()
		n := len(load.byValue["v2"])
		load.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no request was served by the new master's workers within 15s: %s\n%s", load, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The old master stops; the new one is promoted and serves alone.
	s.signal(syscall.SIGTERM)
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("the old master exited with %d, want 0", code)
	}
	s.waitLog(tag+` \[INFO\] Master has been promoted\.`, 5*time.Second)
	if pid := readPid(t, pidfile); pid != newPid {
		t.Errorf("pid file holds %d after the promotion, want the new master's %d", pid, newPid)
	}
	if pid := readPid(t, pidfile+".2"); pid != 0 {
		t.Errorf("%s.2 still exists after the promotion (pid %d)", pidfile, pid)
	}
	time.Sleep(time.Second)
	load.stop()
	t.Logf("load: %s", load)
	if load.failures() != 0 || load.ok < 50 {
		t.Fatalf("the upgrade lost requests: %s\n%s", load, s.log.String())
	}
	for i, r := range load.last {
		if ppid, _, _ := procParent(r.Ppid); r.Value != "v2" || ppid != newPid {
			t.Errorf("client %d's last reply %+v came from worker %d of %d, want v2 from a worker of %d", i, r, r.Ppid, ppid, newPid)
		}
	}
	// The unix socket and the metrics address came along.
	code, r, err := poolPost(unixClient(sock), "http://gorn/", "over the unix socket")
	if err != nil || code != http.StatusOK || r.Value != "v2" {
		t.Errorf("POST over %s = %d %+v %v, want 200 v2", sock, code, r, err)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics after the upgrade: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "gorn_workers") {
		t.Errorf("metrics after the upgrade = %d %.200q", resp.StatusCode, body)
	}

	// The promoted master owns the sockets: it removes the unix socket's
	// file, and its pid file, when it stops.
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the unix socket file is gone while the new master serves: %v", err)
	}
	syscall.Kill(newPid, syscall.SIGTERM)
	deadline = time.Now().Add(30 * time.Second)
	for alive(newPid) {
		if time.Now().After(deadline) {
			t.Fatalf("the new master did not stop within 30s:\n%s", s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.waitLog(tag+` \[INFO\] Shutting down: Master`, 5*time.Second)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the unix socket file is left after the promoted master stopped: %v", err)
	}
	if pid := readPid(t, pidfile); pid != 0 {
		t.Errorf("the pid file is left after the promoted master stopped (pid %d)", pid)
	}
}

// TestUpgradeDaemon: the classic init-script upgrade of a daemon, found by
// its pid file: USR2, then TERM to the old master; the new one, not
// daemonized a second time, takes over the pid file and serves.
func TestUpgradeDaemon(t *testing.T) {
	pidfile, errLog, addr, cmd := daemonCmd(t, python(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gorn -D: %v\n%s", err, out)
	}
	log := func() string { b, _ := os.ReadFile(errLog); return string(b) }
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s within 30s:\n%s", what, log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var pids []int // every master, killed at the end if still alive
	t.Cleanup(func() {
		for _, pid := range pids {
			if alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	var old int
	waitFor("no pid file", func() bool { old = readPid(t, pidfile); return old > 0 })
	pids = append(pids, old)
	waitFor("no worker ready", func() bool { return strings.Contains(log(), "Booting worker") })
	client := &http.Client{Timeout: 10 * time.Second}
	get := func() error {
		resp, err := client.Get("http://" + addr + "/pid")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	waitFor("no answer", func() bool { return get() == nil })

	syscall.Kill(old, syscall.SIGUSR2)
	var newPid int
	waitFor("no new master", func() bool { newPid = readPid(t, pidfile+".2"); return newPid > 0 })
	pids = append(pids, newPid)
	if ppid, _, _ := procParent(newPid); ppid != old {
		t.Errorf("the new master's parent is %d, want the old master %d (not daemonized again)", ppid, old)
	}
	tag := regexp.QuoteMeta(fmt.Sprintf("[%d]", newPid))
	waitFor("no worker of the new master", func() bool {
		return regexp.MustCompile(tag + ` \[INFO\] Booting worker`).MatchString(log())
	})
	syscall.Kill(old, syscall.SIGTERM)
	waitFor("the old master still runs", func() bool { return !alive(old) })
	waitFor("no promotion", func() bool { return readPid(t, pidfile) == newPid })
	if err := get(); err != nil {
		t.Fatalf("the promoted master does not serve: %v\n%s", err, log())
	}
	syscall.Kill(newPid, syscall.SIGTERM)
	waitFor("the new master still runs", func() bool { return !alive(newPid) })
}
