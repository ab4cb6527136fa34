package protocol

import (
	"io"
	"math/bits"
	"sync"
)

// Payload buffers of PooledMin bytes and more come from a pool of size
// classes (powers of two up to PooledMax), so streaming a large response
// does not allocate a fresh 64 KiB buffer per frame.
const (
	// PooledMin is the smallest payload, in bytes, that ReadFramePooled
	// takes from the pool.
	PooledMin = 4 << 10
	// PooledMax is the largest pooled buffer, in bytes; larger payloads
	// are allocated and left to the garbage collector.
	PooledMax = 1 << 20
)

const (
	minClass = 12 // log2(PooledMin)
	maxClass = 20 // log2(PooledMax)
)

var payloadPools [maxClass - minClass + 1]sync.Pool // *[]byte

// class is the index of the smallest size class that holds n bytes.
func class(n int) int {
	return bits.Len(uint(n-1)) - minClass
}

// GetPayload returns a buffer of length n: pooled when n is in
// [PooledMin, PooledMax], else freshly allocated.
func GetPayload(n int) []byte {
	if n < PooledMin || n > PooledMax {
		return make([]byte, n)
	}
	c := class(n)
	if p, ok := payloadPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(c+minClass))
}

// PutPayload gives a buffer from GetPayload back to the pool; the caller
// must not use it afterwards. Buffers not from the pool are ignored.
func PutPayload(b []byte) {
	c := cap(b)
	if c < PooledMin || c > PooledMax || c&(c-1) != 0 {
		return
	}
	// A fresh pointer, not &b: taking b's address would move the parameter
	// to the heap on every call, the many small payloads that return
	// above included.
	p := new([]byte)
	*p = b[:0]
	payloadPools[class(c)].Put(p)
}

// ReadFramePooled is ReadFrame for a reader that owns its stream and uses
// no deadlines: payloads of PooledMin bytes and more come from GetPayload
// (give them back with PutPayload once done), and the part of a large
// payload not yet buffered is read straight into it. After an error the
// stream is unusable.
func (r *Reader) ReadFramePooled() (Frame, error) {
	t, f, id, n, err := r.peekHeader()
	if err != nil {
		return Frame{}, err
	}
	if n < PooledMin {
		return r.readBuffered(t, f, id, n)
	}
	r.off += HeaderSize
	fr := Frame{Type: t, Flags: f, ID: id, Payload: GetPayload(n)}
	got := copy(fr.Payload, r.buf[r.off:r.end])
	r.off += got
	if r.off == r.end {
		r.off, r.end = 0, 0
	}
	if got < n {
		if _, err := io.ReadFull(r.r, fr.Payload[got:]); err != nil {
			PutPayload(fr.Payload)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
	}
	return fr, nil
}
