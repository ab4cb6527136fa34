package metrics

import (
	"slices"
	"sync"
	"time"
)

// Why a worker exited, the reason label of gorn_worker_exits_total.
const (
	// ExitCrash: it died while serving without being told to stop.
	ExitCrash = "crash"
	// ExitBootError: it died before it was ready (the app failed to
	// import, or the runtime died while importing).
	ExitBootError = "boot_error"
	// ExitTimeout: the master killed it for a missed heartbeat or
	// --boot-timeout (WORKER TIMEOUT).
	ExitTimeout = "timeout"
	// ExitMaxRequests: retired after --max-requests.
	ExitMaxRequests = "max_requests"
	// ExitMemory: retired for exceeding --max-worker-memory.
	ExitMemory = "memory"
	// ExitReload: replaced by a new generation after HUP.
	ExitReload = "reload"
	// ExitScaleDown: retired by TTOU or WINCH.
	ExitScaleDown = "scale_down"
)

// ExitReasons are every exit reason, in the order they are exported.
var ExitReasons = [...]string{ExitCrash, ExitBootError, ExitTimeout, ExitMaxRequests, ExitMemory, ExitReload, ExitScaleDown}

// Why a worker was started, the reason label of gorn_worker_spawns_total:
// the first workers (SpawnBoot), a reload's new generation, a TTIN, or the
// replacement of a worker that exited (ExitCrash, ExitBootError,
// ExitTimeout) or is being recycled (ExitMaxRequests, ExitMemory).
const (
	SpawnBoot    = "boot"
	SpawnReload  = "reload"
	SpawnScaleUp = "scale_up"
)

// SpawnReasons are the values of the reason label of
// gorn_worker_spawns_total.
var SpawnReasons = [...]string{SpawnBoot, SpawnReload, SpawnScaleUp, ExitCrash, ExitBootError, ExitTimeout, ExitMaxRequests, ExitMemory}

// Worker phases as the master reports them (master.Phase.String()).
var Phases = [...]string{"booting", "ready", "draining"}

// BootBuckets are the upper bounds, in seconds, of the worker boot
// duration histogram (spawn to ready: the app's import time, mostly).
var BootBuckets = [...]float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// WorkerInfo is one live worker as the master sees it.
type WorkerInfo struct {
	// Slot is its scoreboard slot; -1 if it has none.
	Slot int
	// Phase is "booting", "ready" or "draining".
	Phase string
	// Pid and RuntimePid are the worker's and its app runtime's process
	// ids (0 if unknown), to read their resident memory. They are never
	// exported as labels.
	Pid, RuntimePid int
}

// Pool is the master's state for the collector and /readyz.
//
// Only the master's loop goroutine writes it (through its methods) and
// scrapes read a copy, both under one mutex: a scrape never waits for the
// loop, and the loop never waits for a scrape longer than a copy. This is
// simpler than asking the loop for a snapshot over a channel, which would
// also have to be answered while the master is stopping.
type Pool struct {
	mu    sync.Mutex
	state PoolState
}

// PoolState is a snapshot of Pool.
type PoolState struct {
	// Desired is the number of workers the master keeps serving.
	Desired int
	// Workers are the live workers.
	Workers []WorkerInfo
	// Spawns counts workers started by reason (see SpawnReasons).
	Spawns map[string]uint64
	// Exits counts worker exits by reason (see ExitReasons).
	Exits map[string]uint64
	// BootCounts are per-bucket (not cumulative) counts of boot
	// durations over BootBuckets, then +Inf; BootSum is their sum in
	// seconds.
	BootCounts [len(BootBuckets) + 1]uint64
	BootSum    float64
	// ReloadsOK and ReloadsFailed count reloads by result.
	ReloadsOK, ReloadsFailed uint64
	// LastReloadOK and LastReload are the last reload's result and when
	// it was known (zero before any reload).
	LastReloadOK bool
	LastReload   time.Time
	// Python is the app runtime's Python version, from the last worker
	// that became ready.
	Python string
	// Stopping is set once the master is shutting down.
	Stopping bool
}

// NewPool returns an empty Pool.
func NewPool() *Pool {
	return &Pool{state: PoolState{Exits: map[string]uint64{}, Spawns: map[string]uint64{}}}
}

// SetWorkers records the desired count and the live workers.
func (p *Pool) SetWorkers(desired int, workers []WorkerInfo) {
	p.mu.Lock()
	p.state.Desired = desired
	p.state.Workers = workers
	p.mu.Unlock()
}

// Spawned counts a worker started; reason is one of SpawnReasons.
func (p *Pool) Spawned(reason string) {
	p.mu.Lock()
	p.state.Spawns[reason]++
	p.mu.Unlock()
}

// Exited counts a worker exit; reason is one of ExitReasons.
func (p *Pool) Exited(reason string) {
	p.mu.Lock()
	p.state.Exits[reason]++
	p.mu.Unlock()
}

// Booted records that a worker became ready d after it was started, with
// a runtime of the given Python version.
func (p *Pool) Booted(d time.Duration, python string) {
	s := d.Seconds()
	i := len(BootBuckets)
	for j, b := range BootBuckets {
		if s <= b {
			i = j
			break
		}
	}
	p.mu.Lock()
	p.state.BootCounts[i]++
	p.state.BootSum += s
	if python != "" {
		p.state.Python = python
	}
	p.mu.Unlock()
}

// Reloaded records the outcome of a reload at a time.
func (p *Pool) Reloaded(ok bool, at time.Time) {
	p.mu.Lock()
	if ok {
		p.state.ReloadsOK++
	} else {
		p.state.ReloadsFailed++
	}
	p.state.LastReloadOK, p.state.LastReload = ok, at
	p.mu.Unlock()
}

// Stop records that the master is shutting down: /readyz fails from now.
func (p *Pool) Stop() {
	p.mu.Lock()
	p.state.Stopping = true
	p.mu.Unlock()
}

// Ready reports whether the server is ready for traffic: at least one
// worker is ready and the master is not shutting down.
func (p *Pool) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state.Stopping {
		return false
	}
	for _, w := range p.state.Workers {
		if w.Phase == "ready" {
			return true
		}
	}
	return false
}

// Snapshot is a copy of the state.
func (p *Pool) Snapshot() PoolState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.state
	s.Workers = slices.Clone(s.Workers)
	s.Spawns = make(map[string]uint64, len(p.state.Spawns))
	for k, v := range p.state.Spawns {
		s.Spawns[k] = v
	}
	s.Exits = make(map[string]uint64, len(p.state.Exits))
	for k, v := range p.state.Exits {
		s.Exits[k] = v
	}
	return s
}
