package main

import (
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/master"
)

// daemonEnv marks the process --daemon started: it is the daemon, and
// does not start another.
const daemonEnv = "GORN_DAEMONIZED"

// daemonized reports whether this process is already detached: the
// daemon --daemon started (it removes the mark and sets gunicorn's umask),
// or a new master started by USR2, which its parent already detached.
func daemonized() bool {
	if os.Getenv(daemonEnv) != "" {
		os.Unsetenv(daemonEnv)
		unix.Umask(0o022)
		return true
	}
	_, upgrade := os.LookupEnv(master.UpgradeEnv)
	return upgrade
}

// daemonize starts gorn again (the same binary and command line, from the
// start directory) in a session of its own, with standard input, output and
// error on /dev/null (with keepStdio, output and error stay unless they are
// a terminal), and does not wait for it: the caller exits, and the daemon
// is handed to init. gunicorn forks twice instead; a Go program cannot
// fork, and the daemon never opens a terminal that could become its
// controlling one.
func daemonize(args []string, keepStdio bool) error {
	cmd := exec.Command("/proc/self/exe", args[1:]...)
	cmd.Args[0] = args[0]
	if _, err := os.Stat(cmd.Path); err != nil {
		if cmd.Path, err = os.Executable(); err != nil {
			return err
		}
	}
	cmd.Dir = startDir
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if keepStdio {
		if !isTerminal(os.Stdout) {
			cmd.Stdout = os.Stdout
		}
		if !isTerminal(os.Stderr) {
			cmd.Stderr = os.Stderr
		}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// hasTerminal reports whether gorn has a controlling terminal (it can open
// /dev/tty), which sends it WINCH whenever the terminal is resized. A gorn
// started with --daemon, by a service manager or in a container without a
// tty has none.
func hasTerminal() bool {
	fd, err := syscall.Open("/dev/tty", syscall.O_RDONLY|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	syscall.Close(fd)
	return true
}
