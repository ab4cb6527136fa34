package worker

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchScheduling puts every thread of the worker under SCHED_BATCH (nice
// values are kept); threads started later, and the app runtime, inherit
// it. The worker and its runtime take turns on a core: under the default
// policy each frame the runtime sends wakes the worker, which preempts the
// runtime in the middle of its request, and the two switch back and forth
// once or twice per request. A batch task does not preempt on waking, so
// the worker runs when the runtime waits for its next request, and handles
// what has accumulated in one go (docs/performance.md, entry 6).
// $GORN_SCHED=normal keeps the default policy.
func batchScheduling() error {
	if os.Getenv("GORN_SCHED") == "normal" {
		return nil
	}
	param := struct{ priority int32 }{0}
	// Twice: a thread started while the first pass ran, by a thread not yet
	// switched, would have inherited the default policy.
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("listing the worker's threads: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			_, _, errno := unix.Syscall(unix.SYS_SCHED_SETSCHEDULER, uintptr(tid), unix.SCHED_BATCH, uintptr(unsafe.Pointer(&param)))
			if errno != 0 && errno != unix.ESRCH { // ESRCH: the thread has exited
				return fmt.Errorf("setting SCHED_BATCH on thread %d: %w", tid, errno)
			}
		}
	}
	return nil
}
