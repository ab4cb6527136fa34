package worker

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// slots bounds the requests a worker has in its runtime to --threads. A
// listener takes a slot before it accepts, so a busy worker leaves new
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

// slotConn is an accepted connection that may still hold the slot its
// listener reserved for its first request.
type slotConn struct {
	net.Conn
	reserved atomic.Bool
	slots    *slots
}

// take hands the reserved slot to the caller; false if there is none.
func (c *slotConn) take() bool { return c.reserved.CompareAndSwap(true, false) }

// drop gives back a reservation that was never used.
func (c *slotConn) drop() {
	if c.take() {
		c.slots.release()
	}
}

// gatedListener accepts only while a slot is free.
type gatedListener struct {
	net.Listener
	slots     *slots
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

func newGatedListener(l net.Listener, s *slots) *gatedListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &gatedListener{Listener: l, slots: s, ctx: ctx, cancel: cancel}
}

// Accept waits for a free slot, then for a connection, then reserves a
// slot for the connection's first request. No slot is held while blocked in
// accept(2), so requests on kept-alive connections are never starved by the
// accept loop.
func (l *gatedListener) Accept() (net.Conn, error) {
	if err := l.slots.acquire(l.ctx); err != nil {
		return nil, net.ErrClosed
	}
	l.slots.release()
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// A connection accepted is served, even when Close (a drain) came
	// while it waited for a slot: closing it would lose its request. It
	// then has no reservation; its request waits for a slot.
	sc := &slotConn{Conn: c, slots: l.slots}
	if l.slots.acquire(l.ctx) == nil {
		sc.reserved.Store(true)
	}
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
