package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// policies returns the scheduling policy (field 41 of stat: 0 normal, 3
// batch) of every thread of pid.
func policies(t *testing.T, pid int) map[int]int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no threads for pid %d: %v", pid, err)
	}
	out := map[int]int{}
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread exited
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		policy, err := strconv.Atoi(fields[41-3])
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		tid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		out[tid] = policy
	}
	return out
}

// The worker's threads and its app runtime run under SCHED_BATCH, so that
// neither preempts the other on every frame (worker/sched.go); the master
// keeps the default policy. $GORN_SCHED=normal keeps it everywhere.
func TestSchedulingPolicy(t *testing.T) {
	py := python(t)
	const normal, batch = 0, 3
	for _, tc := range []struct {
		env  string
		want int
	}{{"", batch}, {"normal", normal}} {
		t.Run("GORN_SCHED="+tc.env, func(t *testing.T) {
			t.Setenv("GORN_SCHED", tc.env)
			s := start(t, py, "-w", "2", "--threads", "2", "basic:app")
			s.ready("/pid")
			for tid, p := range policies(t, s.cmd.Process.Pid) {
				if p != normal {
					t.Errorf("master thread %d has policy %d, want the default", tid, p)
				}
			}
			workers, runtimes := s.workerPids(), s.runtimePids()
			if len(workers) != 2 || len(runtimes) != 2 {
				t.Fatalf("workers %v, runtimes %v; want two of each", workers, runtimes)
			}
			for _, pid := range append(workers, runtimes...) {
				for tid, p := range policies(t, pid) {
					if p != tc.want {
						t.Errorf("process %d, thread %d: policy %d, want %d", pid, tid, p, tc.want)
					}
				}
			}
		})
	}
}
