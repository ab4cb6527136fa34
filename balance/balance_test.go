package balance

import (
	"testing"

	"golang.org/x/sys/unix"
)

// seat opens a worker's seat on b, as a worker does with its inherited
// descriptor (a dup, which Open closes).
func seat(t *testing.T, b *Board) *Seat {
	t.Helper()
	n, ok := b.Acquire()
	if !ok {
		t.Fatal("no free seat")
	}
	fd, err := unix.Dup(int(b.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(fd, n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestShouldYield(t *testing.T) {
	type peer struct {
		conns     int64
		accepting bool
		idle      bool
		gone      bool // exited and released by the master
	}
	tests := []struct {
		name  string
		mine  int64
		peers []peer
		want  bool
	}{
		{name: "alone", mine: 3},
		{name: "no connections yet", mine: 0, peers: []peer{{conns: 0, accepting: true}}},
		{name: "an accepting peer with fewer", mine: 1, peers: []peer{{conns: 0, accepting: true}}, want: true},
		{name: "a busy peer with fewer", mine: 1, peers: []peer{{conns: 0}}},
		{name: "an idle peer not in accept(2)", mine: 1, peers: []peer{{conns: 0, idle: true}}},
		{name: "an accepting peer with as many", mine: 2, peers: []peer{{conns: 2, accepting: true}}},
		{name: "an accepting peer with more", mine: 2, peers: []peer{{conns: 5, accepting: true}}},
		{name: "a released peer", mine: 2, peers: []peer{{conns: 0, accepting: true, idle: true, gone: true}}},
		{name: "one of several", mine: 3, peers: []peer{{conns: 3, accepting: true}, {conns: 1, idle: true}, {conns: 2, accepting: true}}, want: true},
		{name: "several, none better", mine: 3, peers: []peer{{conns: 3, accepting: true}, {conns: 1}, {conns: 4, accepting: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Create()
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			me := seat(t, b)
			defer me.Close()
			me.AddConns(tt.mine)
			for _, p := range tt.peers {
				s := seat(t, b)
				s.AddConns(p.conns)
				s.SetAccepting(p.accepting)
				s.SetIdle(p.idle)
				if p.gone {
					b.Release(s.self)
				}
				defer s.Close()
			}
			if got := me.ShouldYield(); got != tt.want {
				t.Fatalf("ShouldYield() = %v, want %v", got, tt.want)
			}
			wantIdle := false
			for _, p := range tt.peers {
				wantIdle = wantIdle || (p.idle && !p.gone)
			}
			if got := me.PeerIdle(); got != wantIdle {
				t.Fatalf("PeerIdle() = %v, want %v", got, wantIdle)
			}
		})
	}
}

// Seats are reused after Release, zeroed; a nil Board or Seat (no board)
// is a worker alone.
func TestSeatsAndNil(t *testing.T) {
	b, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a := seat(t, b)
	a.AddConns(4)
	a.SetAccepting(true)
	a.SetIdle(true)
	b.Release(a.self)
	a.Close()
	c := seat(t, b)
	defer c.Close()
	if c.self != a.self {
		t.Fatalf("the freed seat %d was not reused (got %d)", a.self, c.self)
	}
	if l := lineAt(c.mem, c.self); l.conns.Load() != 0 || l.accepting.Load() || l.idle.Load() || !l.live.Load() {
		t.Fatalf("a reused seat starts at conns %d accepting %v idle %v live %v", l.conns.Load(), l.accepting.Load(), l.idle.Load(), l.live.Load())
	}

	var none *Board
	if _, ok := none.Acquire(); ok {
		t.Fatal("a nil Board gave a seat")
	}
	none.Release(0)
	if err := none.Close(); err != nil {
		t.Fatal(err)
	}
	var alone *Seat
	alone.AddConns(1)
	alone.SetAccepting(true)
	alone.SetIdle(true)
	if alone.ShouldYield() || alone.PeerIdle() {
		t.Fatal("a nil Seat has peers")
	}
	if s, err := Open(0, 0); s != nil || err != nil {
		t.Fatalf("Open(0, 0) = %v, %v; want no seat and no error", s, err)
	}
	if _, err := Open(int(mustDup(t, b)), MaxSeats); err == nil {
		t.Fatal("Open accepted a seat out of range")
	}
}

func mustDup(t *testing.T, b *Board) int {
	fd, err := unix.Dup(int(b.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// Every seat can be taken, and no more.
func TestBoardFull(t *testing.T) {
	b, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range MaxSeats {
		if n, ok := b.Acquire(); !ok || n != i {
			t.Fatalf("Acquire #%d = %d, %v", i, n, ok)
		}
	}
	if _, ok := b.Acquire(); ok {
		t.Fatal("Acquire beyond MaxSeats succeeded")
	}
	b.Release(MaxSeats + 5) // out of range: ignored
	b.Release(7)
	if n, ok := b.Acquire(); !ok || n != 7 {
		t.Fatalf("after releasing 7, Acquire = %d, %v", n, ok)
	}
}
