package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorn-project/gorn/config"
)

// generation is one runtime's turn: ready is closed once rt is serving (rt
// is then set), next once the supervisor has installed the generation after
// it.
type generation struct {
	rt    *runtimeProc
	ready chan struct{}
	next  chan struct{}
}

// supervisor keeps one app runtime running for the worker: it starts a fresh
// one whenever the current one dies. Its run goroutine owns the runtime's
// lifecycle; handlers only read the current generation.
type supervisor struct {
	cfg   *config.Config
	log   *slog.Logger
	argv  []string
	age   int // the worker's spawn number, for server hooks
	cur   atomic.Pointer[generation]
	fatal chan error // a replacement runtime failed to boot

	bootMu  sync.Mutex
	booting *runtimeProc // the runtime being started, for abortBoot
	aborted bool
}

// trackBoot records the runtime being booted; if the boot was aborted
// already it is killed at once.
func (s *supervisor) trackBoot(rt *runtimeProc) {
	s.bootMu.Lock()
	defer s.bootMu.Unlock()
	s.booting = rt
	if s.aborted {
		rt.kill()
	}
}

// abortBoot kills the runtime being booted, if any, so boot returns.
func (s *supervisor) abortBoot() {
	s.bootMu.Lock()
	defer s.bootMu.Unlock()
	s.aborted = true
	if s.booting != nil {
		s.booting.kill()
	}
}

func newSupervisor(cfg *config.Config, log *slog.Logger, argv []string, age int) *supervisor {
	s := &supervisor{cfg: cfg, log: log, argv: argv, age: age, fatal: make(chan error, 1)}
	s.cur.Store(&generation{ready: make(chan struct{}), next: make(chan struct{})})
	return s
}

// boot starts the first runtime; its error is the worker's boot failure.
func (s *supervisor) boot() error {
	rt, err := startRuntime(s.cfg, s.log, s.argv, s.age, s.trackBoot)
	if err != nil {
		return err
	}
	g := s.cur.Load()
	g.rt = rt
	close(g.ready)
	s.log.Debug("App runtime ready", "pid", rt.pid(), "python", rt.info.Python)
	return nil
}

// run replaces the runtime each time it dies, until ctx is done. A
// replacement that fails to boot is reported on s.fatal and ends run.
func (s *supervisor) run(ctx context.Context) {
	for {
		g := s.cur.Load()
		select {
		case <-ctx.Done():
			return
		case <-g.rt.done:
		}
		if ctx.Err() != nil {
			return
		}
		<-g.rt.exited
		s.log.Error("App runtime died; starting a fresh one", "pid", g.rt.pid(), "status", describeExit(g.rt.status))
		ng := &generation{ready: make(chan struct{}), next: make(chan struct{})}
		s.cur.Store(ng)
		close(g.next)
		backoff := 100 * time.Millisecond
		for {
			rt, err := startRuntime(s.cfg, s.log, s.argv, s.age, nil)
			if err == nil {
				ng.rt = rt
				close(ng.ready)
				s.log.Info("App runtime ready", "pid", rt.pid())
				break
			}
			var be *BootError
			if errors.As(err, &be) {
				s.fatal <- err
				return
			}
			s.log.Error("Starting the app runtime failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// get returns a serving runtime, waiting while one boots.
func (s *supervisor) get(ctx context.Context) (*runtimeProc, error) {
	if rt := s.current(); rt != nil && rt.alive() {
		return rt, nil // the usual case, without a two-way select
	}
	for {
		g := s.cur.Load()
		select {
		case <-g.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if g.rt.alive() {
			return g.rt, nil
		}
		select {
		case <-g.next:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// current returns the runtime of the current generation, or nil while one
// boots.
func (s *supervisor) current() *runtimeProc {
	g := s.cur.Load()
	select {
	case <-g.ready:
		return g.rt
	default:
		return nil
	}
}
