// Package balance spreads client connections evenly over a pool's workers.
//
// Keep-alive connections stay with the worker that accepted them. When one
// worker happens to accept most of them (a worker that has just answered a
// request is often first to wake when the next connection arrives), their
// requests queue behind each other in its app runtime while another worker
// idles — a fast request waits behind a slow one. The board is a small
// shared memory table, one cache line per worker: how many client
// connections the worker holds (a keep-alive connection idle for over a
// second no longer counts), whether it is waiting in accept(2) right
// now, and whether it is idle (its runtime has room to start a request).
// Before accepting, a worker that holds more connections than a peer that
// is waiting to accept steps aside and lets that peer take the next
// connection; a busy worker leaves new connections to an idle peer, and
// accepts them itself when no peer is idle (worker.gatedListener and
// worker.slots; docs/architecture.md, "Balancing connections").
//
// The master creates the Board and gives each worker a seat in it (the
// memfd as an inherited descriptor, the seat number in its spec); a
// worker's Seat writes its own line and reads the others'.
package balance

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/internal/shm"
)

// MaxSeats is the number of workers the board has room for; workers
// beyond it are not balanced (they accept as if alone).
const MaxSeats = 1024

const (
	lineBytes = 64 // one cache line per seat: no false sharing between workers
	// The header's line: the number of seats in use so far (the highest
	// taken seat + 1), so workers scan only that far.
	headerBytes = lineBytes
	boardBytes  = headerBytes + MaxSeats*lineBytes
)

// line is one seat: conns is the worker's client connections that count
// as load (open, and not idle for long; see AddConns),
// accepting is set while it waits in accept(2), idle while its runtime
// has room to start a request at once (fewer than --threads in it), live
// from Open to Close (the master zeroes the line when it reaps the
// worker).
type line struct {
	conns     atomic.Int64
	accepting atomic.Bool
	idle      atomic.Bool
	live      atomic.Bool
	_         [lineBytes - 20]byte
}

// A line must fill its cache line exactly: neither array below may have a
// negative length.
var (
	_ [lineBytes - unsafe.Sizeof(line{})]byte
	_ [unsafe.Sizeof(line{}) - lineBytes]byte
)

// Board is the master's side: the memfd, mapped, and which seats are taken.
type Board struct {
	file *os.File
	mem  []byte

	mu    sync.Mutex // guards taken and high
	taken [MaxSeats]bool
	high  int // seats in use so far, published in the header
}

// Create makes an empty board: a close-on-exec memfd mapped shared.
func Create() (*Board, error) {
	f, mem, err := shm.Create("gorn-balance", "the connection balance board", boardBytes)
	if err != nil {
		return nil, err
	}
	return &Board{file: f, mem: mem}, nil
}

// File is the board's memfd, to hand to workers.
func (b *Board) File() *os.File { return b.file }

// Acquire takes the lowest free seat for a new worker; ok is false when
// all are taken or b is nil.
func (b *Board) Acquire() (seat int, ok bool) {
	if b == nil {
		return -1, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range b.taken {
		if !b.taken[i] {
			b.taken[i] = true
			lineAt(b.mem, i).zero()
			if i >= b.high {
				b.high = i + 1
				highOf(b.mem).Store(int64(b.high))
			}
			return i, true
		}
	}
	return -1, false
}

// Release frees the seat of a worker that has exited; its line is zeroed,
// so peers stop counting it. Seats out of range are ignored.
func (b *Board) Release(seat int) {
	if b == nil || seat < 0 || seat >= MaxSeats {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.taken[seat] = false
	lineAt(b.mem, seat).zero()
}

// Close unmaps the board and closes its memfd.
func (b *Board) Close() error {
	if b == nil {
		return nil
	}
	err := unix.Munmap(b.mem)
	return errors.Join(err, b.file.Close())
}

// Seat is a worker's view of the board: its own line to write, the others'
// to read. A nil *Seat is a worker alone: it never steps aside.
type Seat struct {
	mem  []byte
	self int
}

// Open maps the board inherited as fd, takes line seat as the worker's own
// and closes fd (the app runtime must not inherit it). fd 0 means no board:
// Open returns nil and no error.
func Open(fd, seat int) (*Seat, error) {
	if fd <= 0 {
		return nil, nil
	}
	defer unix.Close(fd)
	if seat < 0 || seat >= MaxSeats {
		return nil, fmt.Errorf("connection balance seat %d out of range", seat)
	}
	mem, err := unix.Mmap(fd, 0, boardBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the connection balance board: %w", err)
	}
	s := &Seat{mem: mem, self: seat}
	lineAt(mem, seat).live.Store(true)
	return s, nil
}

// AddConns adds d (negative when connections close) to the connections
// the board counts as the worker's load: its open client connections, less
// those it has found idle for long (worker.state.sweepIdle).
func (s *Seat) AddConns(d int64) {
	if s != nil {
		lineAt(s.mem, s.self).conns.Add(d)
	}
}

// Conns is the number of client connections the board counts as the
// worker's load; 0 for a nil Seat.
func (s *Seat) Conns() int64 {
	if s == nil {
		return 0
	}
	return lineAt(s.mem, s.self).conns.Load()
}

// SetAccepting says whether the worker is waiting in accept(2).
func (s *Seat) SetAccepting(on bool) {
	if s != nil {
		lineAt(s.mem, s.self).accepting.Store(on)
	}
}

// ShouldYield reports whether another live worker that is waiting in
// accept(2) holds fewer connections than this one: the next connection is
// better taken by it.
func (s *Seat) ShouldYield() bool {
	if s == nil {
		return false
	}
	mine := lineAt(s.mem, s.self).conns.Load()
	return mine > 0 && s.anyPeer(func(l *line) bool { return l.accepting.Load() && l.conns.Load() < mine })
}

// SetIdle says whether the worker's runtime has room to start a request
// at once. A worker that stops serving (drains) sets false.
func (s *Seat) SetIdle(on bool) {
	if s != nil {
		lineAt(s.mem, s.self).idle.Store(on)
	}
}

// PeerIdle reports whether another live worker is idle: it would start a
// new connection's request at once.
func (s *Seat) PeerIdle() bool {
	return s != nil && s.anyPeer(func(l *line) bool { return l.idle.Load() })
}

// anyPeer reports whether the line of some other live worker matches.
func (s *Seat) anyPeer(match func(*line) bool) bool {
	n := min(int(highOf(s.mem).Load()), MaxSeats)
	for i := range n {
		if l := lineAt(s.mem, i); i != s.self && l.live.Load() && match(l) {
			return true
		}
	}
	return false
}

// Close marks the worker gone from the board and unmaps it.
func (s *Seat) Close() error {
	if s == nil {
		return nil
	}
	lineAt(s.mem, s.self).zero()
	return unix.Munmap(s.mem)
}

func highOf(mem []byte) *atomic.Int64 { return (*atomic.Int64)(unsafe.Pointer(&mem[0])) }

func lineAt(mem []byte, seat int) *line {
	return (*line)(unsafe.Pointer(&mem[headerBytes+seat*lineBytes]))
}

func (l *line) zero() {
	l.conns.Store(0)
	l.accepting.Store(false)
	l.idle.Store(false)
	l.live.Store(false)
}
