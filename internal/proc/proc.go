// Package proc starts child processes from one dedicated OS thread.
//
// Linux delivers a child's parent-death signal (Pdeathsig) when the thread
// that forked it exits, not the process (golang/go#27505). Forking from a
// goroutine locked to a thread that never exits makes Pdeathsig mean "when
// this process dies", which is what gorn relies on to leave no orphans.
package proc

import (
	"os/exec"
	"runtime"
	"sync"
)

type startReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	once sync.Once
	reqs chan startReq
)

// spawner runs for the life of the process on its own locked thread; it
// never returns, so its thread never exits.
func spawner() {
	runtime.LockOSThread()
	for r := range reqs {
		r.done <- r.cmd.Start()
	}
}

// Start starts cmd (as cmd.Start) from the spawner thread.
func Start(cmd *exec.Cmd) error {
	once.Do(func() {
		reqs = make(chan startReq)
		go spawner()
	})
	done := make(chan error, 1)
	reqs <- startReq{cmd: cmd, done: done}
	return <-done
}
