package protocol

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

func TestGetPayloadSizes(t *testing.T) {
	for _, tc := range []struct {
		n       int
		wantCap int
	}{
		{0, 0},
		{1, 1},
		{PooledMin - 1, PooledMin - 1},
		{PooledMin, PooledMin},
		{PooledMin + 1, 2 * PooledMin},
		{64 << 10, 64 << 10},
		{64<<10 + 10, 128 << 10},
		{PooledMax, PooledMax},
		{PooledMax + 1, PooledMax + 1},
	} {
		b := GetPayload(tc.n)
		if len(b) != tc.n || cap(b) != tc.wantCap {
			t.Errorf("GetPayload(%d): len %d cap %d, want len %d cap %d", tc.n, len(b), cap(b), tc.n, tc.wantCap)
		}
		PutPayload(b)
	}
}

func TestPutPayloadIgnoresForeignBuffers(t *testing.T) {
	for _, b := range [][]byte{nil, make([]byte, 10), make([]byte, 5000), make([]byte, 2*PooledMax)} {
		PutPayload(b) // must not panic nor pool an odd size
	}
	if b := GetPayload(5000); cap(b) != 8192 {
		t.Fatalf("GetPayload(5000) has cap %d after a foreign Put, want 8192", cap(b))
	}
}

// ReadFramePooled returns the same frames as ReadFrame, whatever the sizes
// and however the stream is cut into reads.
func TestReadFramePooledMatchesReadFrame(t *testing.T) {
	var stream []byte
	var want []Frame
	for i, n := range []int{0, 3, PooledMin - 1, PooledMin, 70000, 300000, 5, 65536, 2 << 20} {
		p := bytes.Repeat([]byte{byte(i + 1)}, n)
		stream = AppendFrame(stream, Data, Flags(i%2), uint32(i), p)
		want = append(want, Frame{Type: Data, Flags: Flags(i % 2), ID: uint32(i), Payload: p})
	}
	for name, src := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
	} {
		r := NewReader(src)
		for i, w := range want {
			f, err := r.ReadFramePooled()
			if err != nil {
				t.Fatalf("%s: frame %d: %v", name, i, err)
			}
			if f.Type != w.Type || f.Flags != w.Flags || f.ID != w.ID || !bytes.Equal(f.Payload, w.Payload) {
				t.Fatalf("%s: frame %d differs: %v/%v/%d/%d bytes", name, i, f.Type, f.Flags, f.ID, len(f.Payload))
			}
			PutPayload(f.Payload)
		}
		if _, err := r.ReadFramePooled(); err != io.EOF {
			t.Fatalf("%s: at the end: %v, want io.EOF", name, err)
		}
	}
}

func TestReadFramePooledTruncated(t *testing.T) {
	stream := AppendFrame(nil, Data, 0, 1, make([]byte, 100000))
	for _, cut := range []int{5, HeaderSize, HeaderSize + 10, len(stream) - 1} {
		r := NewReader(bytes.NewReader(stream[:cut]))
		if _, err := r.ReadFramePooled(); err != io.ErrUnexpectedEOF {
			t.Errorf("cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
}

// TestPutPayloadSmallAllocatesNothing: giving back a buffer the pool does
// not keep costs no allocation (it cost one per frame while PutPayload
// took its parameter's address).
func TestPutPayloadSmallAllocatesNothing(t *testing.T) {
	for _, n := range []int{0, 100, PooledMin - 1, PooledMax + 1} {
		b := make([]byte, n)
		if allocs := testing.AllocsPerRun(100, func() { PutPayload(b) }); allocs != 0 {
			t.Errorf("PutPayload of a %d-byte buffer: %v allocations, want 0", n, allocs)
		}
	}
}
