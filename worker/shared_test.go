package worker

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gorn-project/gorn/protocol"
)

func sharedPayload(slot, n uint32) []byte {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, slot), n)
}

// testShared returns shared body memory as a runtime would get it.
func testShared(tb testing.TB) *sharedBodies {
	tb.Helper()
	s, f, err := newSharedBodies()
	if err != nil {
		tb.Fatal(err)
	}
	f.Close()
	return s
}

// fill does what the runtime does: marks slot filled and writes b into it.
func fill(s *sharedBodies, slot uint32, b []byte) []byte {
	s.state(slot).Store(1)
	copy(s.mem[sharedHeader+int(slot)*sharedSlotSize:], b)
	return sharedPayload(slot, uint32(len(b)))
}

func TestSharedBodiesCheck(t *testing.T) {
	s := testShared(t)
	fill(s, 3, []byte("x"))
	fill(s, sharedSlots-1, []byte("x"))
	for _, tc := range []struct {
		name    string
		payload []byte
		ok      bool
	}{
		{"filled slot", sharedPayload(3, 100), true},
		{"a whole slot", sharedPayload(3, sharedSlotSize), true},
		{"the last slot", sharedPayload(sharedSlots-1, 1), true},
		{"free slot", sharedPayload(2, 100), false},
		{"slot out of range", sharedPayload(sharedSlots, 100), false},
		{"huge slot", sharedPayload(1<<31, 100), false},
		{"no bytes", sharedPayload(3, 0), false},
		{"more than a slot", sharedPayload(3, sharedSlotSize+1), false},
		{"short payload", []byte{3, 0, 0, 0}, false},
		{"long payload", append(sharedPayload(3, 1), 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.check(tc.payload); (err == nil) != tc.ok {
				t.Errorf("check = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// frameBytes is what the worker writes for the checked Shared frame
// payload p alone.
func frameBytes(s *sharedBodies, p []byte) []byte {
	b, _ := s.joined([]protocol.Frame{{Type: protocol.Shared, Payload: p}}, 0)
	return b
}

// TestSharedBodiesJoined checks which Shared frames of a batch go out in
// one write: those whose bytes continue each other in the memory, up to
// the one that ends the stream.
func TestSharedBodiesJoined(t *testing.T) {
	const full = sharedSlotSize
	type frame struct {
		typ  protocol.Type
		slot uint32
		n    int
		end  bool
	}
	tests := []struct {
		name   string
		frames []frame
		from   int
		want   int // bytes joined
		last   int
	}{
		{"one frame", []frame{{protocol.Shared, 3, 100, false}}, 0, 100, 0},
		{"full slots end to end", []frame{{protocol.Shared, 0, full, false}, {protocol.Shared, 1, full, false}, {protocol.Shared, 2, 10, false}}, 0, 2*full + 10, 2},
		{"from the middle of the batch", []frame{{protocol.Shared, 0, full, false}, {protocol.Shared, 1, full, false}, {protocol.Shared, 2, 10, false}}, 1, full + 10, 2},
		{"a partial slot ends the run", []frame{{protocol.Shared, 0, full - 1, false}, {protocol.Shared, 1, full, false}}, 0, full - 1, 0},
		{"a slot further on", []frame{{protocol.Shared, 0, full, false}, {protocol.Shared, 2, full, false}}, 0, full, 0},
		{"a slot before", []frame{{protocol.Shared, 1, full, false}, {protocol.Shared, 0, full, false}}, 0, full, 0},
		{"the stream's end is the last", []frame{{protocol.Shared, 0, full, true}, {protocol.Shared, 1, full, false}}, 0, full, 0},
		{"joined up to the end", []frame{{protocol.Shared, 0, full, false}, {protocol.Shared, 1, 5, true}}, 0, full + 5, 1},
		{"a Data frame ends the run", []frame{{protocol.Shared, 0, full, false}, {protocol.Data, 0, 0, false}, {protocol.Shared, 1, full, false}}, 0, full, 0},
		{"the last response slot", []frame{{protocol.Shared, sharedSlots - 2, full, false}, {protocol.Shared, sharedSlots - 1, full, false}}, 0, 2 * full, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testShared(t)
			var events []protocol.Frame
			var want []byte
			for i, f := range tt.frames {
				ev := protocol.Frame{Type: f.typ, Payload: []byte("data")}
				if f.end {
					ev.Flags = protocol.FlagEnd
				}
				if f.typ == protocol.Shared {
					b := bytes.Repeat([]byte{byte(i + 1)}, f.n)
					ev.Payload = fill(s, f.slot, b)
					if i >= tt.from {
						want = append(want, b...)
					}
				}
				events = append(events, ev)
			}
			got, last := s.joined(events, tt.from)
			if last != tt.last || len(got) != tt.want {
				t.Fatalf("joined %d bytes up to frame %d, want %d bytes up to frame %d", len(got), last, tt.want, tt.last)
			}
			if !bytes.Equal(got, want[:tt.want]) || cap(got) != len(got) {
				t.Errorf("the joined bytes are not the frames' bytes in order (cap %d)", cap(got))
			}
		})
	}
}

func TestSharedBodiesBytesAndRelease(t *testing.T) {
	s := testShared(t)
	body := bytes.Repeat([]byte("abc"), 1000)
	p := fill(s, 5, body)
	if err := s.check(p); err != nil {
		t.Fatal(err)
	}
	got := frameBytes(s, p)
	if !bytes.Equal(got, body) || cap(got) != len(body) {
		t.Errorf("bytes: %d bytes (cap %d), want the %d written", len(got), cap(got), len(body))
	}
	if n := s.inUse(); n != 1 {
		t.Errorf("%d slots in use, want 1", n)
	}
	s.release(p)
	if n := s.inUse(); n != 0 {
		t.Errorf("%d slots in use after release, want 0", n)
	}
}

// Every Shared frame's slot is freed exactly when the frame is done with:
// after the handler wrote it (recycle), when the handler leaves with
// frames unread (close), and on arrival for a call already closed.
func TestCallFreesSharedSlots(t *testing.T) {
	s := testShared(t)
	shared := func(slot uint32) protocol.Frame {
		return protocol.Frame{Type: protocol.Shared, ID: 1, Payload: fill(s, slot, []byte("body"))}
	}
	data := protocol.Frame{Type: protocol.Data, ID: 1, Payload: []byte("inline")}
	for _, tc := range []struct {
		name string
		run  func(c *call) (afterTake, atEnd int)
	}{
		{"handled, then recycled", func(c *call) (int, int) {
			c.push(shared(0))
			c.push(data)
			c.push(shared(1))
			events := c.take(nil)
			n := s.inUse() // taken, not yet written: still held
			c.recycle(events)
			c.close()
			return n, s.inUse()
		}},
		{"left queued when the handler leaves", func(c *call) (int, int) {
			c.push(shared(0))
			events := c.take(nil)
			c.push(shared(1))
			c.push(shared(2))
			n := s.inUse()
			c.recycle(events)
			c.close()
			return n, s.inUse()
		}},
		{"arriving after the handler left", func(c *call) (int, int) {
			c.push(shared(0))
			c.recycle(c.take(nil))
			c.close()
			late := []protocol.Frame{shared(1), {Type: protocol.Shared, ID: 1, Flags: protocol.FlagEnd, Payload: fill(s, 2, []byte("end"))}}
			n := s.inUse() // filled by the runtime, on their way
			for _, f := range late {
				c.push(f) // the runtime ending a cancelled stream
			}
			return n, s.inUse()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &call{id: 1, shared: s, notify: make(chan struct{}, 1)}
			afterTake, atEnd := tc.run(c)
			if afterTake == 0 {
				t.Errorf("no slot held before the frames were done with")
			}
			if atEnd != 0 {
				t.Errorf("%d slots still held at the end, want 0", atEnd)
			}
			if len(c.events) != 0 {
				t.Errorf("%d frames left queued on a closed call", len(c.events))
			}
		})
	}
}

// FuzzSharedCheck: whatever a runtime sends, check either refuses it or
// names bytes inside one slot.
func FuzzSharedCheck(f *testing.F) {
	s := testShared(f)
	fill(s, 0, []byte("a"))
	fill(s, sharedSlots-1, []byte("z"))
	for _, seed := range [][]byte{
		sharedPayload(0, 1), sharedPayload(sharedSlots-1, sharedSlotSize), sharedPayload(1, 5),
		sharedPayload(0, 0), sharedPayload(sharedSlots, 1), sharedPayload(0, sharedSlotSize+1), {}, {1, 2, 3},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if s.check(p) != nil {
			return
		}
		slot, n, _ := protocol.SharedPayload(p)
		b := frameBytes(s, p)
		start := sharedHeader + int(slot)*sharedSlotSize
		if len(b) != int(n) || n == 0 || &b[0] != &s.mem[start] || start+len(b) > sharedHeader+(int(slot)+1)*sharedSlotSize {
			t.Fatalf("check passed slot %d, %d bytes: got %d bytes outside it", slot, n, len(b))
		}
	})
}

func TestBodySlots(t *testing.T) {
	s := testShared(t)
	var taken []uint32
	for range sharedBodySlots {
		slot, mem, ok := s.takeBodySlot()
		if !ok {
			t.Fatalf("only %d body slots could be taken, want %d", len(taken), sharedBodySlots)
		}
		if want := sharedHeader + (sharedSlots+int(slot))*sharedSlotSize; len(mem) != sharedSlotSize || &mem[0] != &s.mem[want] {
			t.Fatalf("body slot %d: its memory is not where the runtime looks", slot)
		}
		taken = append(taken, slot)
	}
	if _, _, ok := s.takeBodySlot(); ok {
		t.Fatal("took a body slot beyond the last")
	}
	for i, slot := range taken {
		if slot != uint32(i) {
			t.Fatalf("body slots taken in order %v, want lowest first", taken)
		}
	}
	// A stream's slot is freed once, when its runtime is done with it.
	c := &call{id: 1, shared: s, notify: make(chan struct{}, 1)}
	c.bodySlot.Store(5 + 1)
	c.releaseBody()
	c.releaseBody() // the end after a Read: nothing more to free
	s.releaseBodySlot(2)
	for _, want := range []uint32{2, 5} {
		if slot, _, ok := s.takeBodySlot(); !ok || slot != want {
			t.Errorf("took %d (%v), want the freed slot %d", slot, ok, want)
		}
	}
	if _, _, ok := s.takeBodySlot(); ok {
		t.Error("a body slot was freed twice")
	}
}

// inUse counts the response slots filled and not yet released.
func (s *sharedBodies) inUse() int {
	n := 0
	for i := range uint32(sharedSlots) {
		if s.state(i).Load() != 0 {
			n++
		}
	}
	return n
}
