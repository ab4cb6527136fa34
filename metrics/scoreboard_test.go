package metrics

import (
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newBoard creates a scoreboard closed at the end of the test.
func newBoard(t *testing.T) *Scoreboard {
	t.Helper()
	b, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// openSlot maps slot i of b as a worker would: through its own
// descriptor for the memfd (a dup, as the worker's inherited fd).
func openSlot(t *testing.T, b *Scoreboard, i int) *Slot {
	t.Helper()
	fd, err := unix.Dup(int(b.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenSlot(fd, i)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestScoreboardFoldOnReuse runs workers through slots (each counts some
// requests, then exits and its slot is released and reused) and checks
// after every step that the totals are exactly what was counted, so never
// decrease.
func TestScoreboardFoldOnReuse(t *testing.T) {
	type step struct {
		start    bool // acquire a slot for a new worker (else release worker)
		worker   int  // index of the worker in this scenario
		requests int  // requests it counts after starting
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"one worker restarted", []step{
			{true, 0, 5}, {false, 0, 0}, {true, 1, 3}, {false, 1, 0}, {true, 2, 7},
		}},
		{"three workers, middle one dies", []step{
			{true, 0, 2}, {true, 1, 4}, {true, 2, 6}, {false, 1, 0}, {true, 3, 1}, {false, 0, 0}, {false, 2, 0}, {true, 4, 9},
		}},
		{"release before any request", []step{
			{true, 0, 0}, {false, 0, 0}, {true, 1, 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBoard(t)
			slots := map[int]int{}
			mapped := map[int]*Slot{}
			var want, last uint64
			for i, st := range tt.steps {
				if st.start {
					slot, ok := b.Acquire()
					if !ok {
						t.Fatalf("step %d: no free slot", i)
					}
					slots[st.worker] = slot
					s := openSlot(t, b, slot)
					mapped[st.worker] = s
					for range st.requests {
						s.Begin()
						s.End("GET", 200, time.Millisecond, 10, 100)
					}
					s.Exception()
					want += uint64(st.requests)
				} else {
					b.Release(slots[st.worker])
				}
				tot := b.Totals()
				if got := tot.Requests(); got != want {
					t.Fatalf("step %d: requests = %d, want %d", i, got, want)
				}
				if got := tot.Status(MethodIndex("GET"), 200); got != want {
					t.Fatalf("step %d: GET 200 = %d, want %d", i, got, want)
				}
				if got := tot.InFlight(); got != 0 {
					t.Fatalf("step %d: in flight = %d, want 0", i, got)
				}
				if tot.Requests() < last {
					t.Fatalf("step %d: requests went down from %d to %d", i, last, tot.Requests())
				}
				last = tot.Requests()
			}
		})
	}
}

// TestScoreboardReleaseZeroesSlot checks that a reused slot starts from
// zero (its per-slot count restarts) and that in-flight requests of a
// killed worker are dropped, not folded.
func TestScoreboardReleaseZeroesSlot(t *testing.T) {
	b := newBoard(t)
	slot, _ := b.Acquire()
	s := openSlot(t, b, slot)
	s.Begin()
	s.End("POST", 201, time.Second, 1000, 0)
	s.Begin() // killed in the middle of a request
	s.Timeout()
	if got := b.Totals().InFlight(); got != 1 {
		t.Fatalf("in flight before release = %d, want 1", got)
	}
	b.Release(slot)
	again, _ := b.Acquire()
	if again != slot {
		t.Fatalf("reacquired slot %d, want the lowest free, %d", again, slot)
	}
	tot := b.Totals()
	if len(tot.Slots) != 1 || tot.Slots[0].Requests != 0 {
		t.Errorf("reused slot counts = %+v, want one slot with 0 requests", tot.Slots)
	}
	if tot.InFlight() != 0 || tot.Requests() != 1 || tot.Timeouts() != 1 || tot.Status(MethodIndex("POST"), 201) != 1 {
		t.Errorf("after release: in flight %d, requests %d, timeouts %d, POST 201 %d; want 0, 1, 1, 1",
			tot.InFlight(), tot.Requests(), tot.Timeouts(), tot.Status(MethodIndex("POST"), 201))
	}
	b.Release(slot)
	b.Release(slot) // a second release of a free slot changes nothing
	b.Release(-1)
	b.Release(MaxSlots)
	if got := b.Totals().Requests(); got != 1 {
		t.Errorf("requests after repeated releases = %d, want 1", got)
	}
}

// TestScoreboardScrapeCostBounded: after many workers came and went, a
// scrape still reads only the live slots.
func TestScoreboardScrapeCostBounded(t *testing.T) {
	b := newBoard(t)
	const workers = 3 * MaxSlots
	for i := range workers {
		slot, ok := b.Acquire()
		if !ok {
			t.Fatalf("worker %d: no free slot", i)
		}
		s := openSlot(t, b, slot)
		s.Begin()
		s.End("GET", 200, 0, 0, 0)
		b.Release(slot)
	}
	tot := b.Totals()
	if len(tot.Slots) != 0 || tot.Requests() != workers {
		t.Errorf("live slots %d, requests %d; want 0 and %d", len(tot.Slots), tot.Requests(), workers)
	}
}

func TestScoreboardFull(t *testing.T) {
	b := newBoard(t)
	for i := range MaxSlots {
		if slot, ok := b.Acquire(); !ok || slot != i {
			t.Fatalf("acquire %d = %d, %v", i, slot, ok)
		}
	}
	if slot, ok := b.Acquire(); ok {
		t.Fatalf("acquired slot %d of a full scoreboard", slot)
	}
	b.Release(17)
	if slot, ok := b.Acquire(); !ok || slot != 17 {
		t.Fatalf("acquire after release = %d, %v; want 17, true", slot, ok)
	}
	var nilBoard *Scoreboard
	if _, ok := nilBoard.Acquire(); ok {
		t.Error("a nil scoreboard gave a slot")
	}
}

// TestScoreboardConcurrent has workers count while the master scrapes and
// folds the slots of workers that finished: the request total seen by
// successive scrapes never decreases and ends exact.
func TestScoreboardConcurrent(t *testing.T) {
	b := newBoard(t)
	const workers, perWorker = 8, 2000
	var wg sync.WaitGroup
	finished := make(chan int, workers)
	for range workers {
		slot, _ := b.Acquire()
		s := openSlot(t, b, slot)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				s.Begin()
				s.End(Methods[i%len(Methods)], 200+i%5, time.Duration(i)*time.Microsecond, int64(i), int64(i))
			}
			finished <- slot
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var last uint64
	check := func() {
		got := b.Totals().Requests()
		if got < last {
			t.Fatalf("requests went down from %d to %d", last, got)
		}
		last = got
	}
	for released := 0; released < workers; {
		select {
		case slot := <-finished:
			b.Release(slot) // its goroutine wrote its last count
			released++
		default:
		}
		check()
	}
	<-done
	check()
	if last != workers*perWorker {
		t.Errorf("requests = %d, want %d", last, workers*perWorker)
	}
}

func TestOpenSlot(t *testing.T) {
	b := newBoard(t)
	dup := func() int {
		fd, err := unix.Dup(int(b.File().Fd()))
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	wrong, err := unix.MemfdCreate("wrong", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(wrong, 1<<20); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		fd      int
		slot    int
		wantNil bool
		wantErr bool
	}{
		{"metrics off", 0, 0, true, false},
		{"first slot", dup(), 0, false, false},
		{"last slot", dup(), MaxSlots - 1, false, false},
		{"negative slot", dup(), -1, true, true},
		{"slot past the end", dup(), MaxSlots, true, true},
		{"not a scoreboard", wrong, 0, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenSlot(tt.fd, tt.slot)
			if (err != nil) != tt.wantErr || (s == nil) != tt.wantNil {
				t.Fatalf("OpenSlot = %v, %v; want nil %v, error %v", s, err, tt.wantNil, tt.wantErr)
			}
			if tt.fd > 0 {
				if _, err := unix.FcntlInt(uintptr(tt.fd), unix.F_GETFD, 0); err == nil {
					t.Errorf("OpenSlot left fd %d open", tt.fd)
				}
			}
			s.Close()
		})
	}
	// A nil slot (metrics off) counts nothing and does not crash.
	var s *Slot
	s.Begin()
	s.End("GET", 200, 0, 0, 0)
	s.Exception()
	s.Timeout()
}

func TestMethodIndex(t *testing.T) {
	tests := []struct {
		method string
		want   string
	}{
		{"GET", "GET"}, {"HEAD", "HEAD"}, {"POST", "POST"}, {"PUT", "PUT"}, {"DELETE", "DELETE"},
		{"PATCH", "PATCH"}, {"OPTIONS", "OPTIONS"}, {"CONNECT", "CONNECT"}, {"TRACE", "TRACE"},
		{"get", "OTHER"}, {"PROPFIND", "OTHER"}, {"", "OTHER"}, {"OTHER", "OTHER"},
	}
	for _, tt := range tests {
		if got := Methods[MethodIndex(tt.method)]; got != tt.want {
			t.Errorf("MethodIndex(%q) is %s, want %s", tt.method, got, tt.want)
		}
	}
}

func TestBuckets(t *testing.T) {
	durations := []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{5 * time.Millisecond, 0},
		{5*time.Millisecond + 1, 1},
		{time.Second, 7},
		{60 * time.Second, len(DurationBuckets) - 1},
		{60*time.Second + 1, len(DurationBuckets)},
	}
	for _, tt := range durations {
		if got := durationBucket(int64(tt.d)); got != tt.want {
			t.Errorf("durationBucket(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
	sizes := []struct {
		n    int64
		want int
	}{
		{0, 0}, {64, 0}, {65, 1}, {1024, 2}, {64 << 20, len(SizeBuckets) - 1}, {64<<20 + 1, len(SizeBuckets)},
	}
	for _, tt := range sizes {
		if got := sizeBucket(tt.n); got != tt.want {
			t.Errorf("sizeBucket(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestParseStatm(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1000 250 100 10 0 200 0\n", 250 * 4096},
		{"1000 0 0 0 0 0 0", 0},
		{"1000", 0},
		{"", 0},
		{"1000 x 1", 0},
		{"1000 -5 1", 0},
	}
	for _, tt := range tests {
		if got := parseStatm(tt.in, 4096); got != tt.want {
			t.Errorf("parseStatm(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if got := ResidentBytes(os.Getpid()); got <= 0 {
		t.Errorf("ResidentBytes(self) = %d, want > 0", got)
	}
	if got := ResidentBytes(0); got != 0 {
		t.Errorf("ResidentBytes(0) = %d, want 0", got)
	}
}
