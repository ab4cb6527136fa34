package worker

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gorn-project/gorn/protocol"
)

// sharedBodies is memory a worker shares with one runtime for large
// response body chunks: the runtime copies a chunk into a free slot and
// sends a small Shared frame naming it, instead of pushing the bytes
// through the socketpair (a copy into the kernel and one out of it); the
// worker writes the bytes to the client straight from the slot and frees
// it. A runtime that finds no free slot sends the bytes in a Data frame.
//
// Layout: sharedHeader bytes of slot states, one uint32 per slot (0 free,
// 1 filled by the runtime and not yet written out by the worker), then
// sharedSlots slots of sharedSlotSize bytes. The runtime only turns a
// free slot into a filled one, the worker only a filled one into a free
// one, so each state has one writer at a time.
//
// The mapping is unmapped when the sharedBodies is garbage: everything
// that reads a slot holds it (the runtime's reader, a handler through its
// runtimeProc, a call with frames to free).
type sharedBodies struct {
	mem []byte
}

// Shared memory geometry: 32 slots of 64 KiB (the chunk size most apps
// and file wrappers yield), 2 MiB, of which only slots that have been in
// use are ever touched (the lowest free one is taken first). The pages
// count in the RSS of both the worker and its runtime. 64 slots were no
// faster on the benchmark's 1 MiB streams and touched twice the memory;
// 16 were 10-15 % slower.
const (
	sharedSlots    = 32
	sharedSlotSize = 64 << 10
	sharedHeader   = 4096
	sharedSize     = sharedHeader + sharedSlots*sharedSlotSize
)

// newSharedBodies creates the memory and returns it with the file the
// runtime maps (its descriptor is close-on-exec; pass it in ExtraFiles).
func newSharedBodies() (*sharedBodies, *os.File, error) {
	fd, err := unix.MemfdCreate("gorn-bodies", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the shared body memory: %w", err)
	}
	f := os.NewFile(uintptr(fd), "gorn-bodies")
	if err := f.Truncate(sharedSize); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("sizing the shared body memory: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, sharedSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mapping the shared body memory: %w", err)
	}
	s := &sharedBodies{mem: mem}
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

// bytes returns the body bytes a checked Shared frame's payload names.
// They stay valid until release.
func (s *sharedBodies) bytes(p []byte) []byte {
	slot, n, _ := protocol.SharedPayload(p)
	off := sharedHeader + int(slot)*sharedSlotSize
	return s.mem[off : off+int(n) : off+int(n)]
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

// inUse counts the slots filled and not yet released.
func (s *sharedBodies) inUse() int {
	n := 0
	for i := range uint32(sharedSlots) {
		if s.state(i).Load() != 0 {
			n++
		}
	}
	return n
}
