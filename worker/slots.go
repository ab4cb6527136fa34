package worker

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorn-project/gorn/balance"
	"github.com/gorn-project/gorn/metrics"
	"github.com/gorn-project/gorn/tcplisten"
)

// slots bounds the requests a worker has in its runtime. Up to limit
// (--threads plus a small pipeline) may be in the runtime at once, so
// Python finds its next request waiting instead of idling while Go works;
// a listener accepts only while fewer than accept (--threads) are in, so
// a busy worker leaves new connections in the kernel backlog for an idle
// one, as gunicorn's sync workers do.
//
// Requests and the accept loop wait in one line, first come first served,
// each woken alone: requests on kept-alive connections cannot starve new
// connections, nor the other way round.
type slots struct {
	mu       sync.Mutex
	inflight int
	limit    int
	accept   int
	queue    []*waiter // oldest first
	// Accepting ahead: a worker may accept up to ahead connections beyond
	// a free slot while the oldest request in its runtime is younger than
	// acceptYoung and more connections wait in the listener's backlog than
	// there are workers. Then every other worker can still find one, and
	// the runtime of a worker turning short requests over (Connection:
	// close traffic) stays fed; connections that would stay (keep-alive)
	// are not pinned to a busy worker while another idles.
	ahead   int
	workers int
	since   []time.Time // ring: when each request in the runtime got its slot
	first   int         // index in since of the oldest
	// peerIdle, if set (the worker has a balance board), reports whether
	// another worker is idle. While none is, the accept loop accepts at
	// its turn in line whatever the runtime holds: nobody would start the
	// connection's request sooner, and a connection left in the backlog
	// behind a full pipeline waited for all of it to drain.
	peerIdle func() bool
	// idle, if set, is told when the runtime starts or stops having room
	// for a request (fewer than --threads in it), for the board.
	idle func(bool)
	// releaseFunc is release as a func value, made once: a call holds
	// it, and taking a method value anew would allocate per request.
	releaseFunc func()
}

// acceptYoung is how young the oldest request in the runtime must be for
// the worker to accept ahead of a free slot.
const acceptYoung = 2 * time.Millisecond

// waiter is a request (or, with accept set, the accept loop) in line.
type waiter struct {
	ch     chan struct{} // closed when its turn has come
	accept bool
	queued func() int // the accept loop's listener: connections in its backlog
}

// newSlots returns slots for threads concurrent requests with pipeline
// more queued in the runtime.
func newSlots(threads, pipeline int) *slots {
	s := &slots{limit: threads + pipeline, accept: threads, since: make([]time.Time, threads+pipeline)}
	s.releaseFunc = s.release
	return s
}

// acceptAhead lets the worker, one of workers, accept up to n connections
// beyond a free slot (see slots).
func (s *slots) acceptAhead(n, workers int) {
	s.ahead, s.workers = min(n, s.limit-s.accept), workers
}

// take counts a request into the runtime (s.mu held).
func (s *slots) take(now time.Time) {
	s.since[(s.first+s.inflight)%len(s.since)] = now
	s.inflight++
	if s.inflight == s.accept && s.idle != nil {
		s.idle(false)
	}
}

// untake counts a request out (s.mu held). Requests finish about in the
// order they started: the oldest start time goes.
func (s *slots) untake() {
	s.inflight--
	s.first = (s.first + 1) % len(s.since)
	if s.inflight == s.accept-1 && s.idle != nil {
		s.idle(true)
	}
}

// canAccept reports whether an accept loop may accept now (s.mu held).
func (s *slots) canAccept(now time.Time, queued func() int) bool {
	if s.inflight < s.accept || (s.peerIdle != nil && !s.peerIdle()) {
		return true
	}
	return s.ahead > 0 && queued != nil && s.inflight < s.accept+s.ahead &&
		now.Sub(s.since[s.first]) < acceptYoung && queued() > s.workers
}

// stopIdle tells the board, for good, that the worker is not idle: it is
// draining and takes no more connections.
func (s *slots) stopIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle != nil {
		s.idle(false)
		s.idle = nil
	}
}

// acquire takes a slot for a request, waiting in line while all are taken.
func (s *slots) acquire(ctx context.Context) error {
	s.mu.Lock()
	if s.inflight < s.limit && len(s.queue) == 0 {
		s.take(time.Now())
		s.mu.Unlock()
		return nil
	}
	return s.wait(ctx, &waiter{ch: make(chan struct{})})
}

// waitAccept returns once it is the accept loop's turn and fewer than
// --threads requests are in the runtime; it takes no slot.
//
// queued, if not nil, counts the connections waiting in the listener's
// backlog, for accepting ahead.
func (s *slots) waitAccept(ctx context.Context, queued func() int) error {
	s.mu.Lock()
	if len(s.queue) == 0 && s.canAccept(time.Now(), queued) {
		s.mu.Unlock()
		return nil
	}
	return s.wait(ctx, &waiter{ch: make(chan struct{}), accept: true, queued: queued})
}

// wait queues w (s.mu held on entry) until its turn or ctx ends.
func (s *slots) wait(ctx context.Context, w *waiter) error {
	s.queue = append(s.queue, w)
	s.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.queue {
		if q == w {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			s.grantLocked() // the line may move on without it
			return ctx.Err()
		}
	}
	if !w.accept { // granted a slot while giving up: hand it on
		s.untake()
		s.grantLocked()
	}
	return ctx.Err()
}

// grantLocked wakes waiters from the front of the line while their turn
// has come.
func (s *slots) grantLocked() {
	var now time.Time
	for len(s.queue) > 0 {
		w := s.queue[0]
		if now.IsZero() {
			now = time.Now()
		}
		if w.accept {
			if !s.canAccept(now, w.queued) {
				return
			}
		} else {
			if s.inflight >= s.limit {
				return
			}
			s.take(now)
		}
		s.queue[0] = nil
		s.queue = s.queue[1:]
		close(w.ch)
	}
}

// release frees a slot, waking whoever's turn it is.
func (s *slots) release() {
	s.mu.Lock()
	s.untake()
	s.grantLocked()
	s.mu.Unlock()
}

// bodyQueue is how many requests beyond --threads in the runtime may
// carry the start of their body (up to initialBody bytes) in their
// Request frame. The requests queued behind them send their heads alone
// and the runtime pulls their bodies when it starts them, so a deep
// pipeline does not hold a queue of uploads in memory on both sides of
// the pipe (docs/performance.md, entry 21).
const bodyQueue = 16

// nearFront reports whether a request holding a slot is among the first
// --threads + bodyQueue in the runtime, and so may carry its body.
func (s *slots) nearFront() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight <= s.accept+bodyQueue
}

// inUse is the number of requests holding a slot.
func (s *slots) inUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight
}

// firstRequestGrace is how long the accept loop waits for a new
// connection's first request to begin before it accepts again. A request
// that arrives with its connection begins well within it, so the next
// accept sees its slot taken and a busy worker leaves the next connection
// to an idle one; a connection that sends nothing (or sends its head byte
// by byte) holds the loop up only this long.
const firstRequestGrace = 10 * time.Millisecond

// slotConn is an accepted connection; started is closed once its first
// request has a slot, or once it closes without one.
type slotConn struct {
	net.Conn
	// outer is the connection as the HTTP server holds it, with the
	// wrappers stacked on this one (PROXY protocol, TLS, the guard); set
	// by connContext before the connection's first request.
	outer     net.Conn
	started   chan struct{}
	startOnce sync.Once
	// idle is the connection's idle word: 0 while it is not idle
	// (see idleUncountedBit).
	idle atomic.Int64
	// stall bounds each write's wait for the client (--timeout); 0: none.
	stall time.Duration
	// stallAt is when Write last set the write deadline, in Unix
	// nanoseconds; pinned is set while a caller's own deadline stands.
	stallAt atomic.Int64
	pinned  atomic.Bool
}

// writePiece is the most a write hands the connection at once when its
// wait for the client is bounded: a client must take this much per
// --timeout, about 8 KiB a second by default.
const writePiece = 256 << 10

// Write writes b, each piece of at most writePiece bytes within stall of
// the client taking any of it. A client that reads nothing of its response
// (stalled, or a deliberate slowloris reader) would otherwise block the
// response's write, the app's thread waiting for credit behind it, for
// ever: gunicorn's sync worker is killed after --timeout in that case.
// The deadline is set again for each large piece, and for a small write
// once it is half spent, so a stream of small writes costs one deadline
// per half --timeout.
func (c *slotConn) Write(b []byte) (int, error) {
	if c.stall <= 0 || c.pinned.Load() {
		return c.Conn.Write(b)
	}
	done := 0
	for done < len(b) {
		piece := b[done:min(len(b), done+writePiece)]
		now := time.Now().UnixNano()
		if len(piece) > 16<<10 || now-c.stallAt.Load() > int64(c.stall/2) {
			c.Conn.SetWriteDeadline(time.Unix(0, now).Add(c.stall))
			c.stallAt.Store(now)
		}
		n, err := c.Conn.Write(piece)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// SetWriteDeadline sets the connection's write deadline; a deadline set
// here stands over Write's own until it is cleared (the zero time).
func (c *slotConn) SetWriteDeadline(t time.Time) error {
	c.pin(t)
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines, as SetReadDeadline and SetWriteDeadline.
func (c *slotConn) SetDeadline(t time.Time) error {
	c.pin(t)
	return c.Conn.SetDeadline(t)
}

// pin records a write deadline set from outside: Write keeps to it, or,
// for the zero time, sets its own again at its next call.
func (c *slotConn) pin(t time.Time) {
	c.pinned.Store(!t.IsZero())
	c.stallAt.Store(0)
}

// begin marks the connection's first request as started.
func (c *slotConn) begin() { c.startOnce.Do(func() { close(c.started) }) }

// ReadWaiting lets the accept loop go on when the connection's first read
// finds nothing to read: a client that connected and sent nothing (or only
// part of its head) would otherwise hold the loop up for
// firstRequestGrace, and many of them (a slowloris) all accepts.
func (c *slotConn) ReadWaiting() { c.begin() }

// gatedListener accepts only while a slot is free.
type gatedListener struct {
	net.Listener
	slots     *slots
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
	last      *slotConn   // the connection accepted last; only Accept touches it
	grace     *time.Timer // Accept's wait for last's first request, reused; only Accept touches it
	// room, if set, returns once the worker may open one more connection
	// (--worker-connections).
	room func(context.Context) error
	// queued, if set, counts the connections waiting in the backlog
	// (TCP listeners), for accepting ahead and for balancing.
	queued func() int
	// seat, if set, is the worker's line on the connection balance board:
	// the accept loop steps aside while a peer holds fewer connections.
	seat *balance.Seat
	// writeStall is its connections' bound on a write the client takes
	// nothing of (see slotConn.Write); 0 for none.
	writeStall time.Duration
}

// Balancing: while a peer waiting in accept(2) holds fewer connections,
// the accept loop checks the backlog every balancePoll instead of waiting
// in accept(2) itself, and takes a connection that is still waiting after
// balancePatience checks (the peer may be slow to wake, or stuck).
const (
	balancePoll     = 2 * time.Millisecond
	balancePatience = 2
)

func newGatedListener(l net.Listener, s *slots) *gatedListener {
	ctx, cancel := context.WithCancel(context.Background())
	gl := &gatedListener{Listener: l, slots: s, ctx: ctx, cancel: cancel}
	if sc, ok := l.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			queue := metrics.AcceptQueue(raw)
			if _, _, ok := queue(); ok { // a TCP listener
				gl.queued = func() int { n, _, _ := queue(); return int(n) }
			}
		}
	}
	return gl
}

// Accept waits until the previous connection's first request has begun (or
// firstRequestGrace has passed), then for a free slot, then for a
// connection. No slot is held across accept(2): requests on kept-alive
// connections are never starved by the accept loop, and a client that
// connects and stalls cannot hold a slot.
func (l *gatedListener) Accept() (net.Conn, error) {
	if last := l.last; last != nil {
		l.last = nil
		select {
		case <-last.started: // usually: no timer to arm
		default:
			if l.grace == nil {
				l.grace = time.NewTimer(firstRequestGrace)
			} else {
				l.grace.Reset(firstRequestGrace)
			}
			select {
			case <-last.started:
			case <-l.grace.C:
			case <-l.ctx.Done():
			}
			l.grace.Stop()
		}
	}
	if l.room != nil {
		if err := l.room(l.ctx); err != nil {
			return nil, net.ErrClosed
		}
	}
	if err := l.slots.waitAccept(l.ctx, l.queued); err != nil {
		return nil, net.ErrClosed
	}
	if stepped, err := l.stepAside(); err != nil {
		return nil, net.ErrClosed
	} else if stepped { // time has passed: the runtime may be busy now
		if err := l.slots.waitAccept(l.ctx, l.queued); err != nil {
			return nil, net.ErrClosed
		}
	}
	l.seat.SetAccepting(true)
	c, err := l.Listener.Accept()
	l.seat.SetAccepting(false)
	if err != nil {
		return nil, err
	}
	sc := &slotConn{Conn: c, started: make(chan struct{}), stall: l.writeStall}
	if tc, ok := c.(*tcplisten.Conn); ok {
		tc.SetReadWaiter(sc) // a silent client lets the loop go on at once
	}
	l.last = sc
	return sc, nil
}

// stepAside waits while a peer that is waiting in accept(2) holds fewer
// connections than this worker, so that the peer takes the next one (see
// package balance). Only TCP listeners, whose backlog it can see, balance.
// It reports whether it waited at all.
func (l *gatedListener) stepAside() (bool, error) {
	if l.seat == nil || l.queued == nil {
		return false, nil
	}
	waited := 0
	var t *time.Timer
	for l.seat.ShouldYield() {
		if l.queued() > 0 {
			if waited++; waited > balancePatience {
				break // nobody took it: take it here
			}
		} else {
			waited = 0
		}
		if t == nil {
			t = time.NewTimer(balancePoll)
			defer t.Stop()
		} else {
			t.Reset(balancePoll)
		}
		select {
		case <-t.C:
		case <-l.ctx.Done():
			return true, l.ctx.Err()
		}
	}
	return t != nil, nil
}

// Close stops accepting; the listener's descriptor (a dup of the master's)
// is closed, the master's stays open.
func (l *gatedListener) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		l.closeErr = l.Listener.Close()
	})
	return l.closeErr
}

// findSlotConn finds the slotConn under the wrappers stacked on an accepted
// connection (each exposing the conn it wraps as NetConn, as *tls.Conn
// does).
func findSlotConn(c net.Conn) *slotConn {
	for i := 0; c != nil && i < 8; i++ {
		if sc, ok := c.(*slotConn); ok {
			return sc
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}
