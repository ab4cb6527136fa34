package master

import (
	"fmt"
	"slices"
	"testing"
)

func TestPlan(t *testing.T) {
	r := func(id, gen int) WorkerView { return WorkerView{ID: id, Gen: gen, Phase: Ready} }
	b := func(id, gen int) WorkerView { return WorkerView{ID: id, Gen: gen, Phase: Booting} }
	d := func(id, gen int) WorkerView { return WorkerView{ID: id, Gen: gen, Phase: Draining} }
	tired := func(w WorkerView) WorkerView { w.Tired = true; return w }
	spawn := func(gen int) Action { return Action{Kind: Spawn, Gen: gen} }
	retire := func(id int, why string) Action { return Action{Kind: Retire, ID: id, Reason: why} }

	tests := []struct {
		name string
		pool PoolView
		want []Action
	}{
		{"first boot", PoolView{Desired: 3, Gen: 1}, []Action{spawn(1), spawn(1), spawn(1)}},
		{"booting counts", PoolView{Desired: 2, Gen: 1, Workers: []WorkerView{b(1, 1), b(2, 1)}}, nil},
		{"steady", PoolView{Desired: 2, Gen: 1, Workers: []WorkerView{r(1, 1), r(2, 1)}}, nil},
		{"replace a dead worker", PoolView{Desired: 2, Gen: 1, Workers: []WorkerView{r(2, 1)}}, []Action{spawn(1)}},
		{"back-off holds spawns", PoolView{Desired: 2, Gen: 1, Workers: []WorkerView{r(2, 1)}, HoldSpawns: true}, nil},
		{"draining does not count", PoolView{Desired: 1, Gen: 1, Workers: []WorkerView{d(1, 1)}}, []Action{spawn(1)}},

		{"reload starts the new generation first",
			PoolView{Desired: 2, Gen: 2, Workers: []WorkerView{r(1, 1), r(2, 1)}},
			[]Action{spawn(2), spawn(2)}},
		{"reload keeps old workers while new ones boot",
			PoolView{Desired: 2, Gen: 2, Workers: []WorkerView{r(1, 1), r(2, 1), b(3, 2), b(4, 2)}},
			nil},
		{"one new ready retires the oldest old",
			PoolView{Desired: 2, Gen: 2, Workers: []WorkerView{r(1, 1), r(2, 1), r(3, 2), b(4, 2)}},
			[]Action{retire(1, "reload")}},
		{"all new ready retire the rest",
			PoolView{Desired: 2, Gen: 2, Workers: []WorkerView{d(1, 1), r(2, 1), r(3, 2), r(4, 2)}},
			[]Action{retire(2, "reload")}},
		{"stale booting workers are stopped",
			PoolView{Desired: 1, Gen: 3, Workers: []WorkerView{r(1, 1), b(2, 2)}},
			[]Action{retire(2, "stale"), spawn(3)}},
		{"rollback retires the new generation once old serve",
			PoolView{Desired: 2, Gen: 1, Workers: []WorkerView{r(1, 1), r(2, 1), r(3, 2), b(4, 2)}},
			[]Action{retire(4, "stale"), retire(3, "reload")}},

		{"tired worker replaced before it is drained",
			PoolView{Desired: 1, Gen: 1, Workers: []WorkerView{tired(r(1, 1))}},
			[]Action{spawn(1)}},
		{"tired worker kept while its replacement boots",
			PoolView{Desired: 1, Gen: 1, Workers: []WorkerView{tired(r(1, 1)), b(2, 1)}},
			nil},
		{"tired worker retired once replaced",
			PoolView{Desired: 1, Gen: 1, Workers: []WorkerView{tired(r(1, 1)), r(2, 1)}},
			[]Action{retire(1, "tired")}},

		{"TTIN", PoolView{Desired: 3, Gen: 1, Workers: []WorkerView{r(1, 1), r(2, 1)}}, []Action{spawn(1)}},
		{"TTOU retires the oldest",
			PoolView{Desired: 1, Gen: 1, Workers: []WorkerView{r(5, 1), r(2, 1)}},
			[]Action{retire(2, "scale_down")}},
		{"scale-down prefers tired, then oldest",
			PoolView{Desired: 1, Gen: 1, Workers: []WorkerView{r(1, 1), tired(r(2, 1)), r(3, 1)}},
			[]Action{retire(2, "tired"), retire(1, "scale_down")}},
		{"WINCH stops every worker",
			PoolView{Desired: 0, Gen: 1, Workers: []WorkerView{r(1, 1), r(2, 1), d(3, 1)}},
			[]Action{retire(1, "scale_down"), retire(2, "scale_down")}},
		{"no good worker: old ones keep serving",
			PoolView{Desired: 1, Gen: 2, Workers: []WorkerView{r(1, 1), r(2, 1)}},
			[]Action{spawn(2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.pool)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Plan(%+v)\n got  %v\n want %v", tt.pool, fmtActions(got), fmtActions(tt.want))
			}
		})
	}
}

// TestPlanCapacity replays a rolling reload step by step and checks that
// the serving count never drops below Desired.
func TestPlanCapacity(t *testing.T) {
	for desired := 1; desired <= 4; desired++ {
		t.Run(fmt.Sprint(desired), func(t *testing.T) {
			var ws []WorkerView
			for i := range desired {
				ws = append(ws, WorkerView{ID: i + 1, Gen: 1, Phase: Ready})
			}
			next := desired + 1
			for step := 0; step < 100; step++ {
				acts := Plan(PoolView{Desired: desired, Gen: 2, Workers: ws})
				for _, a := range acts {
					switch a.Kind {
					case Spawn:
						ws = append(ws, WorkerView{ID: next, Gen: a.Gen, Phase: Booting})
						next++
					case Retire:
						for i := range ws {
							if ws[i].ID == a.ID {
								ws[i].Phase = Draining
							}
						}
					}
				}
				serving := 0
				for _, w := range ws {
					if w.Phase == Ready {
						serving++
					}
				}
				if serving < desired {
					t.Fatalf("step %d: %d serving, want at least %d: %+v", step, serving, desired, ws)
				}
				// Progress: drained workers exit, one booting worker
				// becomes ready.
				ws = slices.DeleteFunc(ws, func(w WorkerView) bool { return w.Phase == Draining })
				done := true
				for i := range ws {
					if ws[i].Phase == Booting {
						ws[i].Phase = Ready
						done = false
						break
					}
				}
				if done && len(acts) == 0 {
					break
				}
			}
			for _, w := range ws {
				if w.Gen != 2 || w.Phase != Ready {
					t.Fatalf("after the reload: %+v", ws)
				}
			}
			if len(ws) != desired {
				t.Fatalf("after the reload %d workers, want %d", len(ws), desired)
			}
		})
	}
}

func fmtActions(as []Action) string {
	s := "["
	for i, a := range as {
		if i > 0 {
			s += " "
		}
		if a.Kind == Spawn {
			s += fmt.Sprintf("spawn(gen %d)", a.Gen)
		} else {
			s += fmt.Sprintf("retire(%d, %s)", a.ID, a.Reason)
		}
	}
	return s + "]"
}
