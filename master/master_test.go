package master

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{-1, 0},
		{0, 0},
		{1, 0},
		{2, 100 * time.Millisecond},
		{3, 200 * time.Millisecond},
		{4, 400 * time.Millisecond},
		{5, 800 * time.Millisecond},
		{8, 6400 * time.Millisecond},
		{9, 10 * time.Second},
		{12, 10 * time.Second},
		{100, 10 * time.Second},
		{1 << 30, 10 * time.Second},
	}
	for _, tt := range tests {
		if got := backoff(tt.failures); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.failures, got, tt.want)
		}
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name string
		run  func() error // returns what cmd.Wait returned
		want status
	}{
		{"nil", func() error { return nil }, status{}},
		{"success", func() error { return exec.Command("/bin/sh", "-c", "exit 0").Run() }, status{}},
		{"exit 1", func() error { return exec.Command("/bin/sh", "-c", "exit 1").Run() }, status{code: 1}},
		{"exit 3", func() error { return exec.Command("/bin/sh", "-c", "exit 3").Run() }, status{code: 3}},
		{"exit 4", func() error { return exec.Command("/bin/sh", "-c", "exit 4").Run() }, status{code: 4}},
		{"killed by TERM", func() error { return exec.Command("/bin/sh", "-c", "kill -TERM $$").Run() }, status{code: -1, signaled: true, signal: syscall.SIGTERM}},
		{"killed by KILL", func() error { return exec.Command("/bin/sh", "-c", "kill -KILL $$").Run() }, status{code: -1, signaled: true, signal: syscall.SIGKILL}},
		{"not an exit", func() error { return errors.New("wait: no child processes") }, status{code: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if got := exitStatus(err); got != tt.want {
				t.Errorf("exitStatus(%v) = %+v, want %+v", err, got, tt.want)
			}
		})
	}
}
