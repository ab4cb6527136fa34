// Package protocol holds gorn's wire formats: the frames a worker and its
// Python app runtime exchange over their socketpair, and the control messages
// between the master and a worker, which use the same framing.
//
// The format is specified in docs/protocol.md; testdata/vectors.json holds
// test vectors that both the Go codec and the Python runtime's codec check.
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderSize is the size of a frame header in bytes: a little-endian uint32
// payload length, a type byte, a flags byte and a little-endian uint32
// stream id.
const HeaderSize = 10

// MaxPayload is the largest payload a frame may carry (16 MiB). A peer that
// announces a larger one is broken, and the connection is dropped.
const MaxPayload = 16 << 20

// Version is the runtime protocol version announced in the Ready frame.
const Version = 1

// InitialWindow is the response credit, in bytes, that each request starts
// with: the runtime may send this many body bytes for a request before the
// worker grants more with a Window frame. 512 KiB: a quarter of the shared
// response slots, so a runtime answering pipelined requests cannot run
// ahead of their clients by more than the slots hold (docs/performance.md,
// entry 15).
const InitialWindow = 512 << 10

// Type says what a frame carries.
type Type uint8

// Frames from the worker to the runtime.
const (
	// Request starts a request: payload is a uint32 environ length, the
	// environ as a marshal dict, then the first body bytes. FlagEnd set
	// means the body is complete.
	Request Type = 0x01
	// Body carries request body bytes asked for by a Read frame; FlagEnd
	// marks the end of the body.
	Body Type = 0x02
	// Window grants the runtime more response credit: payload is a uint32
	// byte count.
	Window Type = 0x03
	// Cancel tells the runtime the client has gone; the runtime stops the
	// app's response and still ends the stream.
	Cancel Type = 0x04
	// Shutdown (stream 0) asks the runtime to finish its requests and exit.
	Shutdown Type = 0x05
	// Stacks (stream 0) asks the runtime to dump every thread's Python
	// stack to its standard error.
	Stacks Type = 0x06
	// ReopenLogs (stream 0) asks the runtime to reopen the error log file
	// on its standard error (after USR1).
	ReopenLogs Type = 0x07
	// SharedBody is a Body frame whose bytes are in the memory the worker
	// shares with its runtime: payload is a uint32 request-body slot index
	// and a uint32 length (see SharedPayload). FlagEnd marks the end of
	// the body. The slot is the worker's again once the runtime sends the
	// stream's next Read or ends the stream.
	SharedBody Type = 0x08
)

// Frames from the runtime to the worker.
const (
	// Ready (stream 0) says the app is imported; payload is a JSON
	// ReadyInfo.
	Ready Type = 0x10
	// BootError (stream 0) says the app failed to load; payload is a JSON
	// BootErrorInfo. The runtime exits after sending it.
	BootError Type = 0x11
	// Start carries the response status and headers, then the first body
	// bytes; FlagEnd set means the response is complete.
	Start Type = 0x12
	// Data carries response body bytes; FlagEnd marks the end of the
	// response. Each Data frame is flushed to the client.
	Data Type = 0x13
	// Read asks for up to a uint32 number of request body bytes.
	Read Type = 0x14
	// Error ends a stream whose app raised: a 500 when no Start was sent,
	// else the client connection is closed. Payload is a UTF-8 message.
	Error Type = 0x15
	// Shared is a Data frame whose bytes are in the memory the worker
	// shares with its runtime: payload is a uint32 slot index and a
	// uint32 length (see SharedPayload). Only sent to a worker that gave
	// the runtime shared memory; the worker frees the slot once it has
	// written the bytes.
	Shared Type = 0x16
)

// Control messages between the master and a worker (stream 0).
const (
	// WorkerReady: the worker's runtime has imported the app. Payload is a
	// JSON ReadyInfo.
	WorkerReady Type = 0x20
	// WorkerBootError: the worker's app failed to load. Payload is a JSON
	// BootErrorInfo; the worker exits with its code afterwards.
	WorkerBootError Type = 0x21
	// WorkerHeartbeat: the worker's Go side is alive. Payload: the uint32
	// pid of its current app runtime (0 while none runs).
	WorkerHeartbeat Type = 0x22
	// WorkerTired: the worker reached --max-requests and asks to be
	// replaced; it serves on until the master retires it. No payload.
	WorkerTired Type = 0x23
)

// Flags modify a frame.
type Flags uint8

// FlagEnd marks the last frame of a request body or a response.
const FlagEnd Flags = 0x01

// String names the type for logs and errors.
func (t Type) String() string {
	switch t {
	case Request:
		return "request"
	case Body:
		return "body"
	case Window:
		return "window"
	case Cancel:
		return "cancel"
	case Shutdown:
		return "shutdown"
	case Stacks:
		return "stacks"
	case Ready:
		return "ready"
	case BootError:
		return "boot-error"
	case Start:
		return "start"
	case Data:
		return "data"
	case Read:
		return "read"
	case Error:
		return "error"
	case Shared:
		return "shared"
	case WorkerReady:
		return "worker-ready"
	case WorkerBootError:
		return "worker-boot-error"
	case WorkerHeartbeat:
		return "worker-heartbeat"
	case WorkerTired:
		return "worker-tired"
	case ReopenLogs:
		return "reopen-logs"
	case SharedBody:
		return "shared-body"
	}
	return fmt.Sprintf("type(0x%02x)", uint8(t))
}

// Frame is one decoded frame. Payload is owned by the frame.
type Frame struct {
	Type    Type
	Flags   Flags
	ID      uint32
	Payload []byte
}

// End reports whether FlagEnd is set.
func (f Frame) End() bool { return f.Flags&FlagEnd != 0 }

// ErrFrameTooLarge is returned for a header announcing more than MaxPayload.
var ErrFrameTooLarge = errors.New("protocol: frame payload exceeds 16 MiB")

// AppendHeader appends a frame header for a payload of n bytes to dst.
func AppendHeader(dst []byte, t Type, f Flags, id uint32, n int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, byte(t), byte(f))
	return binary.LittleEndian.AppendUint32(dst, id)
}

// AppendFrame appends a whole frame to dst.
func AppendFrame(dst []byte, t Type, f Flags, id uint32, payload []byte) []byte {
	dst = AppendHeader(dst, t, f, id, len(payload))
	return append(dst, payload...)
}

// AppendSharedFrame appends a Shared or SharedBody frame naming n bytes in
// slot.
func AppendSharedFrame(dst []byte, t Type, f Flags, id, slot, n uint32) []byte {
	dst = AppendHeader(dst, t, f, id, 8)
	dst = binary.LittleEndian.AppendUint32(dst, slot)
	return binary.LittleEndian.AppendUint32(dst, n)
}

// AppendUint32Frame appends a frame whose payload is one uint32 (Window and
// Read frames).
func AppendUint32Frame(dst []byte, t Type, id uint32, v uint32) []byte {
	dst = AppendHeader(dst, t, 0, id, 4)
	return binary.LittleEndian.AppendUint32(dst, v)
}

// ParseHeader decodes a frame header from the first HeaderSize bytes of b and
// returns the payload length.
func ParseHeader(b []byte) (t Type, f Flags, id uint32, n int, err error) {
	if len(b) < HeaderSize {
		return 0, 0, 0, 0, io.ErrUnexpectedEOF
	}
	size := binary.LittleEndian.Uint32(b)
	if size > MaxPayload {
		return 0, 0, 0, 0, ErrFrameTooLarge
	}
	return Type(b[4]), Flags(b[5]), binary.LittleEndian.Uint32(b[6:]), int(size), nil
}

// Uint32Payload decodes the payload of a Window or Read frame.
func Uint32Payload(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("protocol: want a 4-byte payload, got %d bytes", len(p))
	}
	return binary.LittleEndian.Uint32(p), nil
}

// SharedPayload decodes the payload of a Shared or SharedBody frame: the
// slot holding the bytes and how many there are.
func SharedPayload(p []byte) (slot, n uint32, err error) {
	if len(p) != 8 {
		return 0, 0, fmt.Errorf("protocol: want an 8-byte shared payload, got %d bytes", len(p))
	}
	return binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:]), nil
}

// Reader decodes frames from a stream. It buffers its reads, so one read
// system call usually yields several frames.
type Reader struct {
	r   io.Reader
	buf []byte
	off int // start of unread data in buf
	end int // end of unread data in buf
}

// NewReader returns a Reader with a 64 KiB read buffer.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, 64<<10)}
}

// fill makes at least n unread bytes available.
func (r *Reader) fill(n int) error {
	if r.end-r.off >= n {
		return nil
	}
	if n > len(r.buf) {
		nb := make([]byte, max(n, 2*len(r.buf)))
		r.end = copy(nb, r.buf[r.off:r.end])
		r.off = 0
		r.buf = nb
	} else if r.off+n > len(r.buf) {
		r.end = copy(r.buf, r.buf[r.off:r.end])
		r.off = 0
	}
	for r.end-r.off < n {
		m, err := r.r.Read(r.buf[r.end:])
		r.end += m
		if err != nil {
			if r.end-r.off >= n {
				return nil
			}
			if err == io.EOF && r.end != r.off {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// ReadFrame reads the next frame. At a clean end of stream it returns io.EOF;
// a stream cut inside a frame gives io.ErrUnexpectedEOF. After any other
// error from the underlying reader, such as a deadline, nothing is lost:
// the next call resumes the same frame.
func (r *Reader) ReadFrame() (Frame, error) {
	t, f, id, n, err := r.peekHeader()
	if err != nil {
		return Frame{}, err
	}
	return r.readBuffered(t, f, id, n)
}

// peekHeader decodes the next frame's header without consuming it.
func (r *Reader) peekHeader() (t Type, f Flags, id uint32, n int, err error) {
	if err := r.fill(HeaderSize); err != nil {
		return 0, 0, 0, 0, err
	}
	return ParseHeader(r.buf[r.off:r.end])
}

// readBuffered reads the frame whose header peekHeader returned, payload
// copied out of the buffer.
func (r *Reader) readBuffered(t Type, f Flags, id uint32, n int) (Frame, error) {
	// The header stays unread until the whole frame is here, so a read
	// that fails transiently (a deadline) can be retried.
	if err := r.fill(HeaderSize + n); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	r.off += HeaderSize
	fr := Frame{Type: t, Flags: f, ID: id}
	if n > 0 {
		fr.Payload = make([]byte, n)
		copy(fr.Payload, r.buf[r.off:r.off+n])
		r.off += n
	}
	if r.off == r.end {
		r.off, r.end = 0, 0
		if len(r.buf) > 1<<20 {
			r.buf = make([]byte, 64<<10) // drop a buffer grown for one large frame
		}
	}
	return fr, nil
}
