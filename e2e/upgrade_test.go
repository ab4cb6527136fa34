package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	s := launch(t, bin, "", py, "--log-level", "debug", "pool_app:app")
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
