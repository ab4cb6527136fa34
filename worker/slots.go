package worker

import (
	"context"
	"net"
	"sync"
	"time"
)

// slots bounds the requests a worker has in its runtime to --threads. A
// listener accepts only while a slot is free, so a busy worker leaves new
// connections in the kernel backlog for an idle one, as gunicorn's sync
// workers do.
type slots struct {
	ch chan struct{}
}

func newSlots(n int) *slots { return &slots{ch: make(chan struct{}, n)} }

func (s *slots) acquire(ctx context.Context) error {
	select {
	case s.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slots) release() { <-s.ch }

// inUse is the number of slots taken.
func (s *slots) inUse() int { return len(s.ch) }

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
	started   chan struct{}
	startOnce sync.Once
}

// begin marks the connection's first request as started.
func (c *slotConn) begin() { c.startOnce.Do(func() { close(c.started) }) }

// gatedListener accepts only while a slot is free.
type gatedListener struct {
	net.Listener
	slots     *slots
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
	last      *slotConn // the connection accepted last; only Accept touches it
	// room, if set, returns once the worker may open one more connection
	// (--worker-connections).
	room func(context.Context) error
}

func newGatedListener(l net.Listener, s *slots) *gatedListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &gatedListener{Listener: l, slots: s, ctx: ctx, cancel: cancel}
}

// Accept waits until the previous connection's first request has begun (or
// firstRequestGrace has passed), then for a free slot, then for a
// connection. No slot is held across accept(2): requests on kept-alive
// connections are never starved by the accept loop, and a client that
// connects and stalls cannot hold a slot.
func (l *gatedListener) Accept() (net.Conn, error) {
	if last := l.last; last != nil {
		l.last = nil
		t := time.NewTimer(firstRequestGrace)
		select {
		case <-last.started:
		case <-t.C:
		case <-l.ctx.Done():
		}
		t.Stop()
	}
	if l.room != nil {
		if err := l.room(l.ctx); err != nil {
			return nil, net.ErrClosed
		}
	}
	if err := l.slots.acquire(l.ctx); err != nil {
		return nil, net.ErrClosed
	}
	l.slots.release()
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &slotConn{Conn: c, started: make(chan struct{})}
	l.last = sc
	return sc, nil
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
