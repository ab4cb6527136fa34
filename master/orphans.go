package master

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The master is the reaper of every process below it. A process whose
// parent dies (an app's subprocess when its Python runtime is killed, or a
// runtime whose worker was killed) is handed by the kernel to its nearest
// living "child subreaper" ancestor, else to PID 1. The master marks
// itself as one, so those orphans come to it, and reaps them when they
// exit: none is left as a zombie, whether the master runs under an init
// or as PID 1 in a container (where the kernel hands it every orphan
// anyway, and gunicorn's master reaps them too).

// becomeSubreaper marks the calling process as the child subreaper of its
// descendants (prctl PR_SET_CHILD_SUBREAPER).
func becomeSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming the reaper of the workers' orphaned processes: %w", err)
	}
	return nil
}

// strayZombies lists the children of process self that have exited and
// not been reaped, leaving out those known claims, read from the proc file
// system mounted at root ("/proc"). The children come from self's
// task/*/children files; where the kernel has none
// (CONFIG_PROC_CHILDREN), every process is looked at.
func strayZombies(root string, self int, known func(pid int) bool) ([]int, error) {
	pids, err := childPids(root, self)
	if err != nil {
		if pids, err = allPids(root); err != nil {
			return nil, err
		}
	}
	var out []int
	for _, pid := range pids {
		if pid == self || known(pid) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "stat"))
		if err != nil {
			continue // it went away meanwhile
		}
		if state, ppid, ok := parseStat(b); ok && state == 'Z' && ppid == self {
			out = append(out, pid)
		}
	}
	return out, nil
}

// childPids lists the children of every thread of process pid.
func childPids(root string, pid int) ([]int, error) {
	tasks, err := filepath.Glob(filepath.Join(root, strconv.Itoa(pid), "task", "*", "children"))
	if err != nil || len(tasks) == 0 {
		return nil, fmt.Errorf("no children files for process %d in %s", pid, root)
	}
	var out []int
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited meanwhile
		}
		for _, field := range bytes.Fields(b) {
			if n, err := strconv.Atoi(string(field)); err == nil && n > 0 {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// allPids lists every process in the proc file system at root.
func allPids(root string) ([]int, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("listing processes in %s: %w", root, err)
	}
	var out []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out, nil
}

// parseStat returns the state and the parent's pid from the contents of a
// /proc/PID/stat file: "pid (comm) state ppid ...", where comm, the
// command name, may itself contain spaces and parentheses, and state is
// one letter.
func parseStat(b []byte) (state byte, ppid int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || bytes.IndexByte(b, '(') < 0 {
		return 0, 0, false
	}
	fields := bytes.Fields(b[i+1:])
	if len(fields) < 2 || len(fields[0]) != 1 || !isLetter(fields[0][0]) {
		return 0, 0, false
	}
	ppid, err := strconv.Atoi(string(fields[1]))
	if err != nil || ppid < 0 {
		return 0, 0, false
	}
	return fields[0][0], ppid, true
}

// isLetter reports whether c is an ASCII letter, as every process state is.
func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// reapStrays reaps the master's exited children that are not workers: the
// orphans handed to it, and the new master USR2 started (childExited).
// Workers are left to the goroutine that waits for each, which reports its
// exit status. Called from Run's loop, which owns the worker table, on
// SIGCHLD, and by stop.
func (m *Master) reapStrays() {
	pids, err := strayZombies("/proc", os.Getpid(), func(pid int) bool {
		_, ok := m.workers[pid]
		return ok
	})
	if err != nil {
		m.log.Warn("Cannot look for orphaned processes to reap", "err", err)
		return
	}
	for _, pid := range pids {
		var ws unix.WaitStatus
		if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil || got != pid {
			continue
		}
		if pid == m.child {
			m.childExited(pid, ws)
			continue
		}
		m.log.Debug(fmt.Sprintf("Reaped orphaned process %d (%s)", pid, describeWait(ws)))
	}
}

// describeWait says how a process ended, for the log.
func describeWait(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + unix.SignalName(ws.Signal())
	}
	return "exit code " + strconv.Itoa(ws.ExitStatus())
}
