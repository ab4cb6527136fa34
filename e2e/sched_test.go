package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadFiles returns /proc/PID/task/TID/name of every thread of pid, by
// thread id; threads that exit while it reads are left out.
func threadFiles(t *testing.T, pid int, name string) map[int]string {
	t.Helper()
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/%s", pid, name))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no threads for pid %d: %v", pid, err)
	}
	out := map[int]string{}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread exited
		}
		tid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		out[tid] = string(b)
	}
	return out
}

// policies returns the scheduling policy (field 41 of stat: 0 normal, 3
// batch) of every thread of pid.
func policies(t *testing.T, pid int) map[int]int {
	t.Helper()
	out := map[int]int{}
	for tid, s := range threadFiles(t, pid, "stat") {
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		policy, err := strconv.Atoi(fields[41-3])
		if err != nil {
			t.Fatalf("thread %d of %d: %v", tid, pid, err)
		}
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

// switches is how many times the threads of pid have been switched out so
// far, voluntarily or not.
func switches(t *testing.T, pid int) int {
	t.Helper()
	n := 0
	for _, c := range threadSwitches(t, pid) {
		n += c
	}
	return n
}

// threadSwitches is the context switches (voluntary and not) of each of
// pid's threads, by thread id.
func threadSwitches(t *testing.T, pid int) map[int]int {
	t.Helper()
	out := map[int]int{}
	for tid, status := range threadFiles(t, pid, "status") {
		for _, line := range strings.Split(status, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				c, _ := strconv.Atoi(strings.TrimSpace(v))
				out[tid] += c
			}
		}
	}
	return out
}

// The master binds the listening sockets but only workers accept on them:
// connections must not wake the master (it used to be woken by each one,
// and preempted the worker about to accept it).
func TestMasterSleepsThroughConnections(t *testing.T) {
	py := python(t)
	s := start(t, py, "basic:app")
	s.ready("/pid")
	master := s.cmd.Process.Pid
	const conns = 300
	before := switches(t, master)
	for i := range conns {
		c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.WriteString(c, "GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		var resp []byte
		if err == nil {
			resp, err = io.ReadAll(c)
		}
		c.Close()
		if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.1 200 ") {
			t.Fatalf("connection %d: %q, %v", i, resp, err)
		}
	}
	if woke := switches(t, master) - before; woke > conns/4 {
		t.Errorf("the master's threads were switched out %d times during %d connections; want few (heartbeats), not one per connection", woke, conns)
	} else {
		t.Logf("the master was switched out %d times during %d connections", woke, conns)
	}
}

// TestWorkerServesOnOneThread: a worker on one CPU (one P) serves a
// connection's requests on one thread. Reads and writes on the client and
// runtime sockets are raw system calls (internal/rawio); with ordinary
// ones, each request woke the Go runtime's sysmon thread out of its deep
// sleep and sysmon handed the P to a second thread during the response
// write, about two switches of other threads per request.
func TestWorkerServesOnOneThread(t *testing.T) {
	py := python(t)
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			args := []string{"-w", "1", "basic:app"}
			transport := &http.Transport{}
			if network == "unix" {
				sock := filepath.Join(t.TempDir(), "gorn.sock")
				args = append(args, "-b", "unix:"+sock)
				transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", sock)
				}
			}
			s := startOnOneCPU(t, py, args...)
			if network == "unix" {
				s.URL = "http://gorn"
			}
			client := &http.Client{Timeout: 5 * time.Second, Transport: transport}
			defer transport.CloseIdleConnections()
			s.readyWith(client, s.URL+"/pid")
			worker := s.workerPids()[0]
			get := func() {
				resp, err := client.Get(s.URL + "/pid")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			get() // the kept-alive connection
			const requests = 300
			before := threadSwitches(t, worker)
			for range requests {
				get()
			}
			after := threadSwitches(t, worker)
			busiest, others := 0, 0
			for tid, n := range after {
				d := n - before[tid]
				others += d
				busiest = max(busiest, d)
			}
			others -= busiest
			if others > requests/4 {
				t.Errorf("besides the busiest thread (%d switches), the worker's threads were switched %d times in %d requests; want few, not one or two per request", busiest, others, requests)
			} else {
				t.Logf("busiest thread: %d switches; all others: %d, in %d requests", busiest, others, requests)
			}
		})
	}
}

// startOnOneCPU starts gorn like start, bound to one of the CPUs this test
// may use, so that its workers see one CPU (GOMAXPROCS=1) as in the
// benchmark and in a container limited to one core.
func startOnOneCPU(t *testing.T, py string, args ...string) *server {
	t.Helper()
	// A child inherits the affinity of the thread that forks it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	var one unix.CPUSet
	for cpu := 0; cpu < 1024; cpu++ {
		if all.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	defer unix.SchedSetaffinity(0, &all)
	return start(t, py, args...)
}
