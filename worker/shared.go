package worker

import (
	"fmt"
	"math/bits"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/internal/shm"
	"github.com/gorn-project/gorn/protocol"
)

// sharedBodies is memory a worker shares with one runtime for large body
// chunks, so their bytes do not cross the pipes (a copy into the
// kernel, one out of it, and a wake-up per chunk).
//
// Response bodies: the runtime copies a chunk into a free response slot
// and sends a small Shared frame naming it; the worker writes the bytes to
// the client straight from the slot and frees it. A runtime that finds no
// free slot sends the bytes in a Data frame.
//
// Request bodies: the worker reads the client's bytes straight into a free
// body slot and answers the runtime's Read with a SharedBody frame naming
// it; the runtime copies them out. The slot is the worker's again when the
// stream's next Read or its end arrives (the runtime asks for more only
// once it has taken what it had). With no free body slot the bytes go in
// a Body frame.
//
// Layout: sharedHeader bytes of response slot states, one uint32 per slot
// (0 free, 1 filled by the runtime and not yet written out by the
// worker), then sharedSlots response slots and sharedBodySlots body slots,
// all of sharedSlotSize bytes. The runtime only turns a free response
// slot into a filled one, the worker only a filled one into a free one, so
// each state has one writer at a time. Body slots are tracked by the
// worker alone.
//
// The mapping is unmapped when the sharedBodies is garbage: everything
// that reads a slot holds it (the runtime's reader, a handler through its
// runtimeProc, a call with frames to free).
type sharedBodies struct {
	mem []byte

	bodyMu   sync.Mutex
	bodyFree uint64 // bit i set: body slot i is free
}

// Shared memory geometry: 32 slots of 64 KiB (the chunk size most apps
// and file wrappers yield), 2 MiB, of which only slots that have been in
// use are ever touched (the lowest free one is taken first). The pages
// count in the RSS of both the worker and its runtime. 64 slots were no
// faster on the benchmark's 1 MiB streams and touched twice the memory;
// 16 were 10-15 % slower.
//
// Body slots: one is in use per stream whose body the runtime is reading,
// so 8 (512 KiB) serve as many --threads reading uploads at once; more
// fall back to Body frames.
const (
	sharedSlots     = 32
	sharedBodySlots = 8
	sharedSlotSize  = 64 << 10
	sharedHeader    = 4096
	sharedSize      = sharedHeader + (sharedSlots+sharedBodySlots)*sharedSlotSize
)

// newSharedBodies creates the memory and returns it with the file the
// runtime maps (its descriptor is close-on-exec; pass it in ExtraFiles).
func newSharedBodies() (*sharedBodies, *os.File, error) {
	f, mem, err := shm.Create("gorn-bodies", "the shared body memory", sharedSize)
	if err != nil {
		return nil, nil, err
	}
	s := &sharedBodies{mem: mem, bodyFree: 1<<sharedBodySlots - 1}
	runtime.AddCleanup(s, func(mem []byte) { unix.Munmap(mem) }, mem)
	return s, f, nil
}

// check validates a Shared frame's payload: a slot in range, filled, with
// 1 to sharedSlotSize bytes.
func (s *sharedBodies) check(p []byte) error {
	slot, n, err := protocol.SharedPayload(p)
	if err != nil {
		return err
	}
	if slot >= sharedSlots || n == 0 || n > sharedSlotSize {
		return fmt.Errorf("shared slot %d with %d bytes is out of range", slot, n)
	}
	if s.state(slot).Load() != 1 {
		return fmt.Errorf("shared slot %d is not filled", slot)
	}
	return nil
}

// joined returns the bytes of the checked Shared frame events[i] together
// with those of the Shared frames right after it whose bytes continue them
// in the memory (a full slot, then the next slot), as one slice, and the
// index of the last frame joined. The runtime fills the lowest free slot
// first, so the chunks of a streamed response usually lie end to end, and
// the worker writes them to the client in one write(2) instead of one per
// slot: the client is woken once, not once per 64 KiB. The frame that ends
// the stream is always the last one joined.
func (s *sharedBodies) joined(events []protocol.Frame, i int) (body []byte, last int) {
	start, end := s.span(events[i].Payload)
	for !events[i].End() && i+1 < len(events) && events[i+1].Type == protocol.Shared {
		off, next := s.span(events[i+1].Payload)
		if off != end {
			break
		}
		end = next
		i++
	}
	return s.mem[start:end:end], i
}

// span is where the bytes a checked Shared frame's payload names lie in
// the memory: from start up to end.
func (s *sharedBodies) span(p []byte) (start, end int) {
	slot, n, _ := protocol.SharedPayload(p)
	start = sharedHeader + int(slot)*sharedSlotSize
	return start, start + int(n)
}

// release frees the slot a checked Shared frame's payload names: the
// runtime may fill it again.
func (s *sharedBodies) release(p []byte) {
	slot, _, _ := protocol.SharedPayload(p)
	s.state(slot).Store(0)
	runtime.KeepAlive(s)
}

func (s *sharedBodies) state(slot uint32) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&s.mem[4*slot]))
}

// takeBodySlot takes the lowest free body slot and returns it with its
// memory; ok false if none is free.
func (s *sharedBodies) takeBodySlot() (slot uint32, mem []byte, ok bool) {
	s.bodyMu.Lock()
	defer s.bodyMu.Unlock()
	if s.bodyFree == 0 {
		return 0, nil, false
	}
	slot = uint32(bits.TrailingZeros64(s.bodyFree))
	s.bodyFree &^= 1 << slot
	off := sharedHeader + (sharedSlots+int(slot))*sharedSlotSize
	return slot, s.mem[off : off+sharedSlotSize : off+sharedSlotSize], true
}

// releaseBodySlot frees a body slot taken with takeBodySlot.
func (s *sharedBodies) releaseBodySlot(slot uint32) {
	s.bodyMu.Lock()
	s.bodyFree |= 1 << slot
	s.bodyMu.Unlock()
}
