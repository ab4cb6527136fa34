package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestSlots(t *testing.T) {
	for _, n := range []int{1, 2, 4} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			s := newSlots(n, 0)
			for i := 0; i < n; i++ {
				if err := s.acquire(context.Background()); err != nil {
					t.Fatalf("acquire %d of %d: %v", i+1, n, err)
				}
				if s.inUse() != i+1 {
					t.Fatalf("inUse = %d after %d acquires", s.inUse(), i+1)
				}
			}
			// Full: acquire waits until its context is done.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := s.acquire(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("acquire on full slots = %v, want context.Canceled", err)
			}
			if s.inUse() != n {
				t.Fatalf("a failed acquire took a slot: inUse = %d", s.inUse())
			}
			s.release()
			if s.inUse() != n-1 {
				t.Fatalf("inUse = %d after release", s.inUse())
			}
			if err := s.acquire(context.Background()); err != nil {
				t.Fatal(err)
			}
			if s.inUse() != n {
				t.Fatalf("inUse = %d, want %d", s.inUse(), n)
			}
		})
	}
}

// listen returns a real loopback listener, closed at the end of the test.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dial(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// countingListener counts the calls to the real listener's Accept: each
// is one accept(2) attempt, taking a connection out of the kernel backlog.
type countingListener struct {
	net.Listener
	accepts atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	l.accepts.Add(1)
	return l.Listener.Accept()
}

type acceptResult struct {
	c   net.Conn
	err error
}

func acceptAsync(l net.Listener) chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := l.Accept()
		ch <- acceptResult{c, err}
	}()
	return ch
}

// TestGatedListener checks that a worker with n slots accepts only while a
// slot is free, and that after accepting it waits (up to firstRequestGrace)
// for the new connection's first request to take its slot before it
// accepts again. synctest.Wait returns once every goroutine of the bubble is
// blocked on a channel; a goroutine inside accept(2) is not, so an Accept
// that wrongly went on to accept(2) is seen returning the waiting
// connection rather than being blocked.
func TestGatedListener(t *testing.T) {
	for _, n := range []int{1, 2, 3} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ln := &countingListener{Listener: listen(t)}
				s := newSlots(n, 0)
				gl := newGatedListener(ln, s)
				defer gl.Close()
				pending := func(res chan acceptResult, what string) {
					t.Helper()
					synctest.Wait()
					select {
					case r := <-res:
						t.Fatalf("%s: accepted %v, %v", what, r.c, r.err)
					default:
					}
				}

				// n connections, each of whose first request takes a slot
				// as soon as it is accepted.
				for i := 0; i < n; i++ {
					dial(t, ln)
					c, err := gl.Accept()
					if err != nil {
						t.Fatal(err)
					}
					sc, ok := c.(*slotConn)
					if !ok {
						t.Fatalf("Accept returned %T, want *slotConn", c)
					}
					t.Cleanup(func() { sc.Close() })
					if err := s.acquire(context.Background()); err != nil {
						t.Fatal(err)
					}
					sc.begin()
				}

				// Every slot is in use: one more client waits in the
				// backlog, accept(2) is not called.
				dial(t, ln)
				res := acceptAsync(gl)
				pending(res, "no free slot")
				if got := ln.accepts.Load(); got != int32(n) {
					t.Fatalf("%d accept(2) calls with no free slot, want %d", got, n)
				}

				// A request ends: the waiting connection is accepted.
				s.release()
				r := <-res
				if r.err != nil {
					t.Fatalf("Accept after release: %v", r.err)
				}
				next := r.c.(*slotConn)
				t.Cleanup(func() { next.Close() })

				// Before its first request begins, the next Accept waits.
				dial(t, ln)
				res = acceptAsync(gl)
				pending(res, "before the first request began")
				if got := ln.accepts.Load(); got != int32(n+1) {
					t.Fatalf("%d accept(2) calls, want %d", got, n+1)
				}
				// Its request takes the last slot: still nothing.
				if err := s.acquire(context.Background()); err != nil {
					t.Fatal(err)
				}
				next.begin()
				next.begin() // idempotent
				pending(res, "with every slot in use")
				s.release()
				r = <-res
				if r.err != nil {
					t.Fatal(r.err)
				}
				stall := r.c.(*slotConn)
				t.Cleanup(func() { stall.Close() })

				// A connection that sends nothing holds the loop up for
				// firstRequestGrace only.
				dial(t, ln)
				res = acceptAsync(gl)
				pending(res, "within the grace")
				time.Sleep(firstRequestGrace)
				r = <-res
				if r.err != nil {
					t.Fatalf("Accept after the grace: %v", r.err)
				}
				r.c.Close()

				// A free slot: Accept now sits in accept(2) until Close.
				res = acceptAsync(gl)
				time.Sleep(firstRequestGrace)
				if err := gl.Close(); err != nil {
					t.Fatalf("Close = %v", err)
				}
				if r := <-res; !errors.Is(r.err, net.ErrClosed) {
					t.Fatalf("Accept after Close = %v, %v; want net.ErrClosed", r.c, r.err)
				}
				if err := gl.Close(); err != nil {
					t.Fatalf("second Close = %v", err)
				}
			})
		})
	}
}

// TestGatedListenerCloseWhileFull checks that Close ends an Accept that
// waits for a slot, without accepting the waiting connection.
func TestGatedListenerCloseWhileFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := &countingListener{Listener: listen(t)}
		s := newSlots(1, 0)
		gl := newGatedListener(ln, s)
		if err := s.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		dial(t, ln)
		res := acceptAsync(gl)
		synctest.Wait()
		gl.Close()
		if got := ln.accepts.Load(); got != 0 {
			t.Errorf("%d accept(2) calls with no free slot", got)
		}
		if r := <-res; !errors.Is(r.err, net.ErrClosed) || r.c != nil {
			t.Fatalf("Accept = %v, %v; want net.ErrClosed", r.c, r.err)
		}
		if s.inUse() != 1 {
			t.Fatalf("inUse = %d, want 1 (the request's)", s.inUse())
		}
	})
}

// TestConnContext checks that a request finds its connection's slotConn,
// also under wrappers that expose the conn they wrap as NetConn.
func TestConnContext(t *testing.T) {
	ln := listen(t)
	s := newSlots(1, 0)
	gl := newGatedListener(ln, s)
	defer gl.Close()
	dial(t, ln)
	c, err := gl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct {
		name string
		conn net.Conn
		want *slotConn
	}{
		{"slot connection", c, c.(*slotConn)},
		{"wrapped", wrapped{wrapped{c}}, c.(*slotConn)},
		{"plain connection", c.(*slotConn).Conn, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := connContext(context.Background(), tt.conn)
			got, _ := ctx.Value(ctxKey{}).(*slotConn)
			if got != tt.want {
				t.Errorf("context holds %v, want %v", got, tt.want)
			}
		})
	}
}

// wrapped stands for a wrapper such as *tls.Conn.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

// TestSlotsLine checks that requests and the accept loop are served in the
// order they came, so kept-alive connections cannot starve new ones: with
// one thread and a pipeline of one, the accept loop waits behind the
// requests before it, and the requests after it wait behind it.
func TestSlotsLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(1, 1)
		ctx := context.Background()
		var order []string
		var mu sync.Mutex
		note := func(what string) {
			mu.Lock()
			order = append(order, what)
			mu.Unlock()
		}
		// Two requests fill the runtime (one running, one queued in it).
		for i := 0; i < 2; i++ {
			if err := s.acquire(ctx); err != nil {
				t.Fatal(err)
			}
		}
		go func() { s.acquire(ctx); note("request b") }()
		synctest.Wait()
		go func() { s.waitAccept(ctx, nil); note("accept") }()
		synctest.Wait()
		go func() { s.acquire(ctx); note("request d") }()
		synctest.Wait()
		if len(order) != 0 {
			t.Fatalf("woken with every slot taken: %v", order)
		}
		s.release() // b's turn: it takes the freed slot
		synctest.Wait()
		if got := fmt.Sprint(order); got != "[request b]" {
			t.Fatalf("after one release: %s, want [request b]", got)
		}
		s.release() // one request left in: not yet below --threads
		synctest.Wait()
		if got := fmt.Sprint(order); got != "[request b]" {
			// Neither the accept loop (a request is in) nor d (it is
			// behind the accept loop, though a pipeline slot is free).
			t.Fatalf("woken out of turn with a request in the runtime: %s", got)
		}
		s.release() // empty: the accept loop's turn, then d's
		synctest.Wait()
		if len(order) != 3 || !slices.Contains(order, "accept") || !slices.Contains(order, "request d") {
			t.Fatalf("order %v, want b, then the accept loop and d", order)
		}
		if s.inUse() != 1 {
			t.Fatalf("inUse = %d, want 1 (d's)", s.inUse())
		}
	})
}

// TestSlotsGiveUp checks that a waiter whose context ends leaves the line
// without losing or leaking a slot.
func TestSlotsGiveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSlots(1, 0)
		if err := s.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- s.acquire(ctx) }()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("acquire = %v, want context.Canceled", err)
		}
		s.release()
		if s.inUse() != 0 {
			t.Fatalf("inUse = %d after the only holder released", s.inUse())
		}
		if err := s.waitAccept(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSlotsAcceptAhead checks that a worker accepts ahead of a free slot
// only while the oldest request in its runtime is young and more
// connections wait in the backlog than there are workers, or, with a
// balance board, whenever no other worker is idle.
func TestSlotsAcceptAhead(t *testing.T) {
	const noBoard, peerIdle, peersBusy = 0, 1, 2 // board: none; a peer idle; every peer busy
	tests := []struct {
		name    string
		queued  int           // connections in the backlog
		age     time.Duration // of the request in the runtime
		workers int
		board   int
		want    bool
	}{
		{"young request, long backlog", 5, 0, 2, noBoard, true},
		{"slow request", 5, acceptYoung, 2, noBoard, false},
		{"backlog no longer than the workers", 2, 0, 2, noBoard, false},
		{"empty backlog", 0, 0, 1, noBoard, false},
		{"slow request, a peer idle", 5, acceptYoung, 2, peerIdle, false},
		{"young request, long backlog, a peer idle", 5, 0, 2, peerIdle, true},
		{"slow request, every peer busy", 1, acceptYoung, 2, peersBusy, true},
		{"alone, empty backlog", 0, time.Second, 1, peersBusy, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newSlots(1, 8)
				s.acceptAhead(4, tt.workers)
				if tt.board != noBoard {
					s.peerIdle = func() bool { return tt.board == peerIdle }
				}
				ctx := context.Background()
				if err := s.acquire(ctx); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tt.age)
				accepted := make(chan struct{})
				go func() { s.waitAccept(ctx, func() int { return tt.queued }); close(accepted) }()
				synctest.Wait()
				select {
				case <-accepted:
					if !tt.want {
						t.Fatal("accepted ahead")
					}
				default:
					if tt.want {
						t.Fatal("did not accept ahead")
					}
					s.release() // the free slot lets it accept
					synctest.Wait()
					select {
					case <-accepted:
					default:
						t.Fatal("not woken by the free slot")
					}
				}
			})
		})
	}
}

func TestPipelineDepth(t *testing.T) {
	tests := []struct {
		name    string
		threads int
		env     string
		want    int
	}{
		{"default", 1, "", defaultPipeline},
		{"more threads than the default", defaultPipeline + 8, "", defaultPipeline + 8},
		{"override", 1, "48", 48},
		{"override turns it off", 4, "0", 0},
		{"override wins over threads", 64, "8", 8},
		{"negative is ignored", 1, "-3", defaultPipeline},
		{"not a number is ignored", 1, "deep", defaultPipeline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := func(key string) string {
				if key == "GORN_PIPELINE" {
					return tt.env
				}
				return ""
			}
			if got := pipelineDepth(tt.threads, env); got != tt.want {
				t.Errorf("pipelineDepth(%d) with GORN_PIPELINE=%q = %d, want %d", tt.threads, tt.env, got, tt.want)
			}
		})
	}
}

// TestSlotsNearFront checks which requests in the runtime may carry their
// body's start: the first --threads + bodyQueue, counting the asking one.
func TestSlotsNearFront(t *testing.T) {
	tests := []struct {
		name              string
		threads, pipeline int
		held              int // slots taken, the asking request's included
		want              bool
	}{
		{"the only request", 1, 32, 1, true},
		{"last of the front", 1, 32, 1 + bodyQueue, true},
		{"first behind the front", 1, 32, 2 + bodyQueue, false},
		{"the pipeline's last", 1, 32, 33, false},
		{"more threads widen the front", 8, 32, 8 + bodyQueue, true},
		{"behind the wider front", 8, 32, 9 + bodyQueue, false},
		{"a pipeline no deeper than the front", 1, bodyQueue, 1 + bodyQueue, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSlots(tt.threads, tt.pipeline)
			for i := range tt.held {
				if err := s.acquire(context.Background()); err != nil {
					t.Fatalf("acquire %d: %v", i+1, err)
				}
			}
			if got := s.nearFront(); got != tt.want {
				t.Errorf("nearFront with %d of %d+%d slots held = %v, want %v", tt.held, tt.threads, tt.pipeline, got, tt.want)
			}
		})
	}
}
