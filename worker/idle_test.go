package worker

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorn-project/gorn/balance"
	"golang.org/x/sys/unix"
)

// hookConn calls onClose when closed, as net/http reports StateClosed
// when a connection it serves is closed.
type hookConn struct {
	net.Conn
	onClose func()
}

func (c *hookConn) Close() error {
	c.onClose()
	return nil
}

// TestIdleConnectionsLeaveTheBoard checks what the balance board counts as
// a worker's load as its connections go idle, are swept, come back, close,
// or are closed to make room.
func TestIdleConnectionsLeaveTheBoard(t *testing.T) {
	type step struct {
		op   string // new, idle, active, closed, sweep, room
		conn int
		at   time.Duration // sweep: how long after the idle steps
	}
	tests := []struct {
		name      string
		maxConns  int64
		steps     []step
		wantBoard int64
		wantOpen  int64
	}{
		{"a new connection counts", 0, []step{{op: "new"}}, 1, 1},
		{"briefly idle still counts", 0, []step{{op: "new"}, {op: "idle"}, {op: "sweep", at: idleUncounted / 2}}, 1, 1},
		{"idle for long does not count", 0, []step{{op: "new"}, {op: "idle"}, {op: "sweep", at: idleUncounted}}, 0, 1},
		{"swept twice comes off once", 0, []step{{op: "new"}, {op: "idle"}, {op: "sweep", at: idleUncounted}, {op: "sweep", at: 3 * idleUncounted}}, 0, 1},
		{"active again counts again", 0, []step{{op: "new"}, {op: "idle"}, {op: "sweep", at: idleUncounted}, {op: "active"}}, 1, 1},
		{"idle again after active", 0, []step{{op: "new"}, {op: "idle"}, {op: "sweep", at: idleUncounted}, {op: "active"}, {op: "idle"}, {op: "sweep", at: idleUncounted / 2}}, 1, 1},
		{"closing an uncounted connection", 0, []step{{op: "new"}, {op: "idle"}, {op: "sweep", at: idleUncounted}, {op: "closed"}}, 0, 0},
		{"closing a counted idle connection", 0, []step{{op: "new"}, {op: "idle"}, {op: "closed"}}, 0, 0},
		{"closing an active connection", 0, []step{{op: "new"}, {op: "idle"}, {op: "active"}, {op: "closed"}}, 0, 0},
		{"only the idle one comes off", 0, []step{{op: "new"}, {op: "idle"}, {op: "new", conn: 1}, {op: "sweep", at: idleUncounted}}, 1, 2},
		{"making room closes an uncounted connection", 1, []step{{op: "new"}, {op: "idle"}, {op: "sweep", at: idleUncounted}, {op: "room"}}, 0, 0},
		{"making room closes a counted connection", 1, []step{{op: "new"}, {op: "idle"}, {op: "room"}}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seat := openSeat(t)
			s := &state{seat: seat, maxConns: tt.maxConns, closed: make(chan struct{}, 1)}
			conns := make([]*slotConn, 2)
			for i := range conns {
				sc := &slotConn{started: make(chan struct{})}
				sc.Conn = &hookConn{onClose: func() { s.connState(sc, http.StateClosed) }}
				conns[i] = sc
			}
			var idleAt time.Time
			for _, st := range tt.steps {
				c := conns[st.conn]
				switch st.op {
				case "new":
					s.connState(c, http.StateNew)
				case "idle":
					idleAt = time.Now()
					s.connState(c, http.StateIdle)
				case "active":
					s.connState(c, http.StateActive)
				case "closed":
					s.connState(c, http.StateClosed)
				case "sweep":
					s.sweepIdle(idleAt.Add(st.at + time.Millisecond))
				case "room":
					if err := s.waitRoom(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := seat.Conns(); got != tt.wantBoard {
				t.Errorf("the board counts %d connections, want %d", got, tt.wantBoard)
			}
			if got := s.open.Load(); got != tt.wantOpen {
				t.Errorf("%d connections open, want %d", got, tt.wantOpen)
			}
		})
	}
}

// openSeat opens a seat on a fresh balance board, as a worker does.
func openSeat(t *testing.T) *balance.Seat {
	t.Helper()
	b, err := balance.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	n, ok := b.Acquire()
	if !ok {
		t.Fatal("no free seat")
	}
	fd, err := unix.Dup(int(b.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	seat, err := balance.Open(fd, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seat.Close() })
	return seat
}
