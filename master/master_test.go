package master

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/metrics"
	"github.com/gorn-project/gorn/protocol"
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

func TestExcuse(t *testing.T) {
	const timeout = 2 * time.Second // a check every 500 ms
	for _, tt := range []struct {
		name  string
		ago   time.Duration // the worker's last heartbeat, before the hold-up ended
		held  time.Duration
		after time.Duration // want: its last heartbeat, as judged, this long ago
	}{
		{"a short hold-up changes nothing", 1500 * time.Millisecond, 400 * time.Millisecond, 1500 * time.Millisecond},
		{"heard from just before a long hold-up", 3*time.Second + 10*time.Millisecond, 3 * time.Second, 10 * time.Millisecond},
		{"silent long before the hold-up", 4500 * time.Millisecond, 3 * time.Second, 1500 * time.Millisecond},
		{"never later than now", 100 * time.Millisecond, 3 * time.Second, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			w := &workerProc{pid: 1, lastSeen: now.Add(-tt.ago)}
			m := &Master{gens: map[int]*config.Config{1: {Timeout: timeout}}, gen: 1, workers: map[int]*workerProc{1: w}}
			m.excuse(tt.held)
			got := now.Sub(w.lastSeen)
			if d := got - tt.after; d < -50*time.Millisecond || d > 50*time.Millisecond {
				t.Errorf("last heartbeat judged %v ago, want %v", got, tt.after)
			}
		})
	}
}

// TestReloadServingLogged: "Reload: generation N is serving" is logged when
// a reload's generation becomes ready, also when the HUP came before the
// master had seen generation 1 ready, and never for generation 1.
func TestReloadServingLogged(t *testing.T) {
	for _, tt := range []struct {
		name         string
		gen, goodGen int
		want         bool
	}{
		{"the start", 1, 0, false},
		{"a reload", 2, 1, true},
		{"a reload before generation 1 was seen ready", 2, 0, true},
		{"a later worker of a generation already serving", 3, 3, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := &workerProc{pid: 7, gen: tt.gen, phase: Booting}
			m := &Master{
				log: slog.New(slog.NewTextHandler(&out, nil)), mx: masterMetrics{pool: metrics.NewPool()},
				gen: tt.gen, goodGen: tt.goodGen, workers: map[int]*workerProc{7: w},
			}
			m.control(ctrlEvent{w: w, f: protocol.Frame{Type: protocol.WorkerReady, Payload: []byte(`{"pid": 8}`)}})
			if got := strings.Contains(out.String(), "is serving"); got != tt.want {
				t.Errorf("logged %q; want a serving line: %v", out.String(), tt.want)
			}
			if m.goodGen != tt.gen || w.phase != Ready {
				t.Errorf("goodGen %d, phase %v; want %d and Ready", m.goodGen, w.phase, tt.gen)
			}
		})
	}
}

// TestNotifyReady: systemd hears READY=1 when the first worker has loaded
// the app, not for the next workers; and again when a reload ends, with
// its outcome in STATUS.
func TestNotifyReady(t *testing.T) {
	var told []string
	m := &Master{
		opts: Options{Notify: func(s string) error { told = append(told, s); return nil }},
		log:  slog.New(slog.NewTextHandler(io.Discard, nil)), mx: masterMetrics{pool: metrics.NewPool()},
		gen: 1, workers: map[int]*workerProc{},
	}
	ready := func(pid, gen int) {
		w := &workerProc{pid: pid, gen: gen, phase: Booting}
		m.workers[pid] = w
		m.control(ctrlEvent{w: w, f: protocol.Frame{Type: protocol.WorkerReady, Payload: []byte(`{"pid": 1}`)}})
	}
	ready(7, 1)
	ready(8, 1)
	m.gen = 2 // a reload's generation
	ready(9, 2)
	ready(10, 2)
	m.reloaded(false)
	want := []string{
		"READY=1\nSTATUS=Serving: a worker has loaded the app",
		"READY=1\nSTATUS=Reloaded: a new generation serves",
		"READY=1\nSTATUS=Reload failed: the current workers keep serving",
	}
	if !slices.Equal(told, want) {
		t.Errorf("systemd was told %q, want %q", told, want)
	}
}

// TestQueuedEvents: before a signal, the master takes the workers' messages
// already queued (a HUP then sees a ready worker as ready), and no more.
func TestQueuedEvents(t *testing.T) {
	w := &workerProc{pid: 7, gen: 1, phase: Booting}
	m := &Master{
		log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), mx: masterMetrics{pool: metrics.NewPool()},
		gen: 1, workers: map[int]*workerProc{7: w}, events: make(chan any, 4),
	}
	ready := ctrlEvent{w: w, f: protocol.Frame{Type: protocol.WorkerReady, Payload: []byte(`{"pid": 8}`)}}
	if _, stop := m.queuedEvents(); stop {
		t.Fatal("no events, yet a stop")
	}
	m.events <- ready
	if _, stop := m.queuedEvents(); stop || w.phase != Ready || m.goodGen != 1 {
		t.Errorf("after the queued ready message: stop %v, phase %v, goodGen %d; want false, Ready, 1", stop, w.phase, m.goodGen)
	}
	if len(m.events) != 0 {
		t.Errorf("%d events left", len(m.events))
	}
}
