package master

import (
	"cmp"
	"slices"
)

// Phase is where a worker is in its life.
type Phase int

// Worker phases.
const (
	// Booting: started, its runtime not yet ready (importing the app).
	Booting Phase = iota
	// Ready: serving requests.
	Ready
	// Draining: told to stop accepting, finish its requests and exit.
	Draining
)

func (p Phase) String() string {
	switch p {
	case Booting:
		return "booting"
	case Ready:
		return "ready"
	case Draining:
		return "draining"
	}
	return "unknown"
}

// WorkerView is what the pool plan needs to know about one worker.
type WorkerView struct {
	// ID orders workers by age: a lower ID was started earlier.
	ID int
	// Gen is the configuration generation the worker was started with.
	Gen int
	// Phase is the worker's phase.
	Phase Phase
	// Tired is set once the worker asked to be replaced (--max-requests,
	// --max-worker-memory); it keeps serving until its replacement is
	// ready.
	Tired bool
}

// PoolView is the state the plan decides from.
type PoolView struct {
	// Desired is the number of workers to keep serving (--workers, changed
	// by TTIN, TTOU and WINCH).
	Desired int
	// Gen is the generation new workers are started with.
	Gen int
	// Workers are every live worker.
	Workers []WorkerView
	// HoldSpawns is set while spawning backs off after failures.
	HoldSpawns bool
}

// ActionKind is what the master does to the pool.
type ActionKind int

// Actions.
const (
	// Spawn starts a worker of generation Gen.
	Spawn ActionKind = iota
	// Retire drains worker ID gracefully (or stops it, if it never became
	// ready).
	Retire
)

// Action is one step of a plan.
type Action struct {
	Kind ActionKind
	// Gen is the generation to spawn (Spawn).
	Gen int
	// ID is the worker to retire (Retire).
	ID int
	// Reason says why a worker is retired: "reload", "tired", "scale_down"
	// or "stale" (booting with an outdated generation).
	Reason string
}

// Plan decides which workers to start and which to retire so that Desired
// workers of the current generation serve, without ever letting serving
// capacity drop below Desired on account of a replacement:
//
//   - Workers of the current generation that are ready and not tired count
//     as good; good and booting ones together are topped up to Desired.
//   - Booting workers of an older generation are retired at once: they
//     never served.
//   - A ready worker is retired only while more than Desired workers serve
//     and at least one good one does: old generations first, then tired
//     workers, then the surplus of a scale-down; oldest first within each.
//
// Plan is pure; the master applies its actions and calls it again on every
// change.
func Plan(p PoolView) []Action {
	var actions []Action
	good, booting, serving := 0, 0, 0
	for _, w := range p.Workers {
		switch {
		case w.Phase == Ready:
			serving++
			if w.Gen == p.Gen && !w.Tired {
				good++
			}
		case w.Phase == Booting && w.Gen == p.Gen:
			booting++
		case w.Phase == Booting:
			actions = append(actions, Action{Kind: Retire, ID: w.ID, Reason: "stale"})
		}
	}
	if !p.HoldSpawns {
		for range p.Desired - good - booting {
			actions = append(actions, Action{Kind: Spawn, Gen: p.Gen})
		}
	}
	excess := serving - p.Desired
	if excess <= 0 || (good == 0 && p.Desired > 0) {
		return actions
	}
	type candidate struct {
		rank int // 0 old generation, 1 tired, 2 surplus
		id   int
		why  string
	}
	var cands []candidate
	for _, w := range p.Workers {
		if w.Phase != Ready {
			continue
		}
		switch {
		case w.Gen != p.Gen:
			cands = append(cands, candidate{0, w.ID, "reload"})
		case w.Tired:
			cands = append(cands, candidate{1, w.ID, "tired"})
		case good > p.Desired:
			cands = append(cands, candidate{2, w.ID, "scale_down"})
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.id, b.id))
	})
	surplus := good - p.Desired
	for _, c := range cands {
		if excess == 0 {
			break
		}
		if c.rank == 2 {
			if surplus <= 0 {
				continue
			}
			surplus--
		}
		actions = append(actions, Action{Kind: Retire, ID: c.id, Reason: c.why})
		excess--
	}
	return actions
}
