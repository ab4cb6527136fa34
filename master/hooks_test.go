package master

import (
	"os"
	"reflect"
	"testing"

	"github.com/gorn-project/gorn/config"
)

// recordedHooks records the calls the master makes.
type recordedHooks struct{ calls []HookCall }

func (r *recordedHooks) Call(c HookCall, wait bool) bool {
	r.calls = append(r.calls, c)
	return true
}
func (r *recordedHooks) ReopenLogs() {}
func (r *recordedHooks) Close()      {}

func TestMasterHookCalls(t *testing.T) {
	runtime := 11
	server := HookServer{Pid: os.Getpid(), NumWorkers: 3}
	tests := []struct {
		name  string
		hooks []string // the configuration file's
		call  func(m *Master)
		want  []HookCall
	}{
		{
			name:  "child_exit names the runtime",
			hooks: []string{"child_exit"},
			call:  func(m *Master) { m.childExit(&workerProc{pid: 10, id: 4, runtime: runtime}) },
			want:  []HookCall{{Hook: "child_exit", Server: server, Worker: &HookWorker{Pid: &runtime, Ppid: 10, Age: 4}}},
		},
		{
			name:  "a worker that never started a runtime",
			hooks: []string{"child_exit"},
			call:  func(m *Master) { m.childExit(&workerProc{pid: 12, id: 5}) },
			want:  []HookCall{{Hook: "child_exit", Server: server, Worker: &HookWorker{Ppid: 12, Age: 5}}},
		},
		{
			name:  "a hook the file does not define is not called",
			hooks: []string{"child_exit"},
			call:  func(m *Master) { m.hook("when_ready", nil, false) },
		},
		{
			name:  "nworkers_changed's numbers",
			hooks: []string{"nworkers_changed"},
			call:  func(m *Master) { m.hook("nworkers_changed", nil, false, 3, 2) },
			want:  []HookCall{{Hook: "nworkers_changed", Server: server, Extra: []any{3, 2}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordedHooks{}
			m := &Master{opts: Options{Hooks: rec}, gens: map[int]*config.Config{1: {Hooks: tt.hooks}}, gen: 1, desired: 3}
			tt.call(m)
			if !reflect.DeepEqual(rec.calls, tt.want) {
				t.Errorf("calls = %+v, want %+v", rec.calls, tt.want)
			}
		})
	}
	// Without hooks nothing is called, and nothing fails.
	m := &Master{gens: map[int]*config.Config{1: {Hooks: []string{"child_exit"}}}, gen: 1}
	m.childExit(&workerProc{pid: 1})
}
