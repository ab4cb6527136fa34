// Package signals maps the Unix signals gorn's master handles to the
// actions they stand for, with gunicorn's meanings.
package signals

import (
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Action is what the master does on a signal.
type Action int

// The master's actions.
const (
	// None: the signal is not one the master acts on.
	None Action = iota
	// GracefulStop (TERM): stop accepting, let in-flight requests finish
	// within --graceful-timeout, then exit.
	GracefulStop
	// QuickStop (INT, QUIT): stop the workers at once and exit.
	QuickStop
	// Reload (HUP): re-read the configuration and replace the workers.
	Reload
	// AddWorker (TTIN): one more worker.
	AddWorker
	// RemoveWorker (TTOU): one worker fewer, never below one.
	RemoveWorker
	// ReopenLogs (USR1): reopen the log files.
	ReopenLogs
	// Upgrade (USR2): start a new master from the binary on disk.
	Upgrade
	// StopWorkers (WINCH): gracefully stop every worker; the master stays.
	StopWorkers
)

// Master lists the signals the master listens for.
var Master = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP,
	syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR1, syscall.SIGUSR2,
	syscall.SIGWINCH,
}

var forMaster = map[os.Signal]Action{
	syscall.SIGTERM:  GracefulStop,
	syscall.SIGINT:   QuickStop,
	syscall.SIGQUIT:  QuickStop,
	syscall.SIGHUP:   Reload,
	syscall.SIGTTIN:  AddWorker,
	syscall.SIGTTOU:  RemoveWorker,
	syscall.SIGUSR1:  ReopenLogs,
	syscall.SIGUSR2:  Upgrade,
	syscall.SIGWINCH: StopWorkers,
}

// ForMaster returns the master's action for s.
func ForMaster(s os.Signal) Action { return forMaster[s] }

// Name is the signal's lower-case short name as gunicorn logs it ("term",
// "hup", "ttin").
func Name(s os.Signal) string {
	if sig, ok := s.(syscall.Signal); ok {
		if n := unixName(sig); n != "" {
			return n
		}
	}
	return s.String()
}

func unixName(s syscall.Signal) string {
	return strings.ToLower(strings.TrimPrefix(unix.SignalName(s), "SIG"))
}
