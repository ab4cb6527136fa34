// Package metrics is gorn's Prometheus instrumentation: a scoreboard in
// shared memory that workers count requests in, a collector that the
// master serves on --metrics-bind, and the admin HTTP handler (/metrics,
// /healthz, /readyz).
//
// # The scoreboard
//
// The master creates a memfd and maps it (Create); every worker inherits
// the descriptor and maps its own slot (OpenSlot). A slot is written only
// by its worker, with sync/atomic; the master only reads live slots. When
// a worker has exited the master folds its slot into a retired total kept
// in its own memory and zeroes the slot before handing it to another
// worker (Release), so every counter stays monotonic across restarts,
// crashes and SIGKILL, and a scrape reads at most MaxSlots slots however
// many workers have come and gone.
//
// The file is one header page followed by MaxSlots slots, each a whole
// number of pages (so a worker maps only its own slot, and two workers
// never share a cache line). A slot is an array of uint64 words:
//
//	word                      meaning
//	0                         requests completed
//	1                         requests in flight (a gauge; not folded)
//	2                         app exceptions (Error frames from the runtime)
//	3                         requests that ran past --timeout
//	4                         sum of request durations, nanoseconds
//	5                         sum of request body sizes, bytes
//	6                         sum of response body sizes, bytes
//	7..                       duration histogram: one count per bucket of
//	                          DurationBuckets, then one for +Inf (counts are
//	                          per bucket, not cumulative)
//	then                      request size histogram (SizeBuckets, +Inf)
//	then                      response size histogram (SizeBuckets, +Inf)
//	then                      requests by method and status: word
//	                          base + method*500 + (code-100), for the
//	                          methods of Methods and codes 100-599
//
// The layout is an internal contract between a master and the workers it
// starts from the same binary; the header carries a magic number and the
// slot size so that a mismatch is refused rather than misread.
package metrics

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/internal/shm"
)

// MaxSlots is the number of worker slots in the scoreboard: the most
// workers (booting, ready and draining together) whose requests are
// counted at once.
const MaxSlots = 256

// Status codes counted by exact value; others are counted only in the
// request total.
const (
	MinCode = 100
	MaxCode = 599
	numCode = MaxCode - MinCode + 1
)

// Methods are the request methods counted by name; any other method is
// counted as OTHER, the last entry.
var Methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER"}

// MethodIndex is the index of method in Methods; OTHER for a method not
// listed (methods are case-sensitive, RFC 9110 section 9.1).
func MethodIndex(method string) int {
	for i, m := range Methods[:len(Methods)-1] {
		if m == method {
			return i
		}
	}
	return len(Methods) - 1
}

// DurationBuckets are the upper bounds, in seconds, of the request
// duration histogram: client_golang's defaults, extended to 60 s because
// --timeout defaults to 30 s.
var DurationBuckets = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// SizeBuckets are the upper bounds, in bytes, of the request and response
// size histograms: powers of 4 from 64 B to 64 MiB.
var SizeBuckets = [...]float64{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20}

// durationBoundsNS are DurationBuckets in nanoseconds, for exact integer
// comparison.
var durationBoundsNS = func() (b [len(DurationBuckets)]int64) {
	for i, s := range DurationBuckets {
		b[i] = int64(s * float64(time.Second))
	}
	return b
}()

// Word offsets in a slot.
const (
	wRequests = iota
	wInFlight
	wExceptions
	wTimeouts
	wDurationSum
	wRequestSizeSum
	wResponseSizeSum
	wDurationBuckets

	nDuration        = len(DurationBuckets) + 1
	nSize            = len(SizeBuckets) + 1
	wRequestBuckets  = wDurationBuckets + nDuration
	wResponseBuckets = wRequestBuckets + nSize
	wStatus          = wResponseBuckets + nSize
	slotWords        = wStatus + len(Methods)*numCode
)

const (
	magic      = 0x31304253_4e524f47 // "GORNSB01" little-endian
	headerSize = 32                  // magic, slots, words per slot, slot bytes
)

// words is one slot, or the retired totals.
type words [slotWords]uint64

// layout is the file geometry, which depends on the page size.
func layout() (header, slotBytes int) {
	page := os.Getpagesize()
	slotBytes = (slotWords*8 + page - 1) / page * page
	return page, slotBytes
}

// Scoreboard is the master's side of the shared counters.
type Scoreboard struct {
	file      *os.File
	mem       []byte
	slotBytes int
	header    int

	mu      sync.Mutex // guards everything below, and orders folds with reads
	live    [MaxSlots]bool
	retired words
	closed  bool
}

// Create makes a scoreboard: a memfd of MaxSlots zeroed slots, mapped
// shared. The descriptor is close-on-exec; hand File to a worker as an
// inherited descriptor.
func Create() (*Scoreboard, error) {
	header, slotBytes := layout()
	size := header + MaxSlots*slotBytes
	f, mem, err := shm.Create("gorn-scoreboard", "the metrics scoreboard", size)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint64(mem[0:], magic)
	binary.LittleEndian.PutUint64(mem[8:], MaxSlots)
	binary.LittleEndian.PutUint64(mem[16:], uint64(slotWords))
	binary.LittleEndian.PutUint64(mem[24:], uint64(slotBytes))
	return &Scoreboard{file: f, mem: mem, slotBytes: slotBytes, header: header}, nil
}

// File is the scoreboard's memfd, to pass to workers.
func (s *Scoreboard) File() *os.File { return s.file }

// slot is slot i of the mapping.
func (s *Scoreboard) slot(i int) *words {
	off := s.header + i*s.slotBytes
	return (*words)(unsafe.Pointer(&s.mem[off]))
}

// Acquire reserves the lowest free slot for a new worker; ok is false
// when all MaxSlots are taken (the worker then runs uncounted). A nil
// Scoreboard has no slots.
func (s *Scoreboard) Acquire() (slot int, ok bool) {
	if s == nil {
		return -1, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.live {
		if !s.live[i] {
			s.live[i] = true
			return i, true
		}
	}
	return -1, false
}

// Release folds the counters of a slot whose worker has exited into the
// retired totals, zeroes the slot and frees it. The worker must be gone:
// a write after Release would be lost or land in the next worker's
// counts. Out-of-range slots (a worker without one) are ignored.
func (s *Scoreboard) Release(slot int) {
	if s == nil || slot < 0 || slot >= MaxSlots {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.live[slot] || s.closed {
		return
	}
	w := s.slot(slot)
	for i := range w {
		v := atomic.SwapUint64(&w[i], 0)
		if i != wInFlight {
			s.retired[i] += v
		}
	}
	s.live[slot] = false
}

// SlotCounts is what the collector shows per worker slot.
type SlotCounts struct {
	Slot     int
	Requests uint64 // since the slot's current worker started
}

// Totals are the counters summed over retired and live slots.
type Totals struct {
	w     words
	Slots []SlotCounts // live slots, in slot order
}

// Totals reads the scoreboard: retired totals plus every live slot. It is
// consistent with Release: a folded slot is counted exactly once.
func (s *Scoreboard) Totals() *Totals {
	t := &Totals{}
	if s == nil {
		return t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.w = s.retired
	if s.closed {
		return t
	}
	for i := range s.live {
		if !s.live[i] {
			continue
		}
		w := s.slot(i)
		for j := range w {
			t.w[j] += atomic.LoadUint64(&w[j])
		}
		t.Slots = append(t.Slots, SlotCounts{Slot: i, Requests: atomic.LoadUint64(&w[wRequests])})
	}
	return t
}

// Requests is the number of requests completed.
func (t *Totals) Requests() uint64 { return t.w[wRequests] }

// InFlight is the number of requests being served now.
func (t *Totals) InFlight() int64 { return int64(t.w[wInFlight]) }

// Exceptions is the number of requests whose app raised.
func (t *Totals) Exceptions() uint64 { return t.w[wExceptions] }

// Timeouts is the number of requests that ran past --timeout.
func (t *Totals) Timeouts() uint64 { return t.w[wTimeouts] }

// Status is the number of requests with method index m and status code.
func (t *Totals) Status(m, code int) uint64 {
	if code < MinCode || code > MaxCode {
		return 0
	}
	return t.w[wStatus+m*numCode+code-MinCode]
}

// Close unmaps the scoreboard and closes its memfd; Totals then returns
// only the retired totals.
func (s *Scoreboard) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := unix.Munmap(s.mem)
	s.mem = nil
	return errors.Join(err, s.file.Close())
}

// Slot is a worker's side of the scoreboard: its own slot, mapped from the
// inherited memfd. A nil *Slot counts nothing, so a worker without
// metrics calls the same methods.
type Slot struct {
	mem []byte
	w   *words
}

// OpenSlot maps slot number slot of the scoreboard memfd fd and closes
// fd (the mapping stays; the app runtime never inherits the descriptor).
// fd 0 means metrics are off: OpenSlot returns nil and no error.
func OpenSlot(fd, slot int) (*Slot, error) {
	if fd <= 0 {
		return nil, nil
	}
	defer unix.Close(fd)
	if slot < 0 || slot >= MaxSlots {
		return nil, fmt.Errorf("metrics slot %d out of range", slot)
	}
	header, slotBytes := layout()
	var hdr [headerSize]byte
	if n, err := unix.Pread(fd, hdr[:], 0); err != nil || n != headerSize {
		return nil, fmt.Errorf("reading the metrics scoreboard header: %v", err)
	}
	if binary.LittleEndian.Uint64(hdr[0:]) != magic ||
		binary.LittleEndian.Uint64(hdr[8:]) != MaxSlots ||
		binary.LittleEndian.Uint64(hdr[16:]) != uint64(slotWords) ||
		binary.LittleEndian.Uint64(hdr[24:]) != uint64(slotBytes) {
		return nil, errors.New("the metrics scoreboard has another layout")
	}
	mem, err := unix.Mmap(fd, int64(header+slot*slotBytes), slotBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping metrics slot %d: %w", slot, err)
	}
	return &Slot{mem: mem, w: (*words)(unsafe.Pointer(&mem[0]))}, nil
}

// Begin counts a request in flight; End must follow.
func (s *Slot) Begin() {
	if s != nil {
		atomic.AddUint64(&s.w[wInFlight], 1)
	}
}

// End counts a finished request: its method, status code (codes outside
// 100-599 are counted only in the total), duration, request body size
// and response body size.
func (s *Slot) End(method string, code int, d time.Duration, reqBytes, respBytes int64) {
	if s == nil {
		return
	}
	w := s.w
	atomic.AddUint64(&w[wInFlight], ^uint64(0))
	if code >= MinCode && code <= MaxCode {
		atomic.AddUint64(&w[wStatus+MethodIndex(method)*numCode+code-MinCode], 1)
	}
	d = max(d, 0)
	reqBytes, respBytes = max(reqBytes, 0), max(respBytes, 0)
	atomic.AddUint64(&w[wDurationSum], uint64(d))
	atomic.AddUint64(&w[wDurationBuckets+durationBucket(int64(d))], 1)
	atomic.AddUint64(&w[wRequestSizeSum], uint64(reqBytes))
	atomic.AddUint64(&w[wRequestBuckets+sizeBucket(reqBytes)], 1)
	atomic.AddUint64(&w[wResponseSizeSum], uint64(respBytes))
	atomic.AddUint64(&w[wResponseBuckets+sizeBucket(respBytes)], 1)
	// Last, so a reader never sees more requests than histogram counts.
	atomic.AddUint64(&w[wRequests], 1)
}

// Exception counts a request whose app raised (an Error frame).
func (s *Slot) Exception() {
	if s != nil {
		atomic.AddUint64(&s.w[wExceptions], 1)
	}
}

// Timeout counts a request that ran past --timeout.
func (s *Slot) Timeout() {
	if s != nil {
		atomic.AddUint64(&s.w[wTimeouts], 1)
	}
}

// Close unmaps the slot.
func (s *Slot) Close() error {
	if s == nil {
		return nil
	}
	s.w = nil
	return unix.Munmap(s.mem)
}

// durationBucket is the bucket index of a duration in nanoseconds.
func durationBucket(ns int64) int {
	for i, b := range durationBoundsNS {
		if ns <= b {
			return i
		}
	}
	return len(durationBoundsNS)
}

// sizeBucket is the bucket index of a size in bytes.
func sizeBucket(n int64) int {
	for i, b := range SizeBuckets {
		if float64(n) <= b {
			return i
		}
	}
	return len(SizeBuckets)
}
