package protocol

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readers wraps a byte stream in the read patterns a socket can produce.
var readers = []struct {
	name string
	wrap func([]byte) io.Reader
}{
	{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"one byte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
	{"half", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
	{"data with EOF", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
	{"7-byte chunks", func(b []byte) io.Reader { return &chunkReader{b: b, n: 7} }},
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	m := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[m:]
	return m, nil
}

func TestFrameRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), (200<<10)/16) // grows the 64 KiB buffer
	huge := bytes.Repeat([]byte{0xa5}, 2<<20+3)                   // grows the buffer past 1 MiB
	frames := []Frame{
		{Type: Request, Flags: FlagEnd, ID: 1, Payload: []byte("\x02\x00\x00\x00{0")},
		{Type: Body, ID: 1, Payload: []byte("body")},
		{Type: Body, Flags: FlagEnd, ID: 1},
		{Type: Window, ID: 2, Payload: []byte{0, 0, 4, 0}},
		{Type: Cancel, ID: 3},
		{Type: Shutdown},
		{Type: Stacks},
		{Type: Ready, Payload: []byte(`{"protocol":1}`)},
		{Type: BootError, Payload: []byte(`{"code":3}`)},
		{Type: Start, Flags: FlagEnd, ID: 0xffffffff, Payload: []byte("\x06\x00\x00\x00200 OKhi")},
		{Type: Data, ID: 4, Payload: big},
		{Type: Data, Flags: FlagEnd, ID: 4},
		{Type: Read, ID: 5, Payload: []byte{0, 0, 1, 0}},
		{Type: Error, ID: 6, Payload: []byte("ValueError: x")},
		{Type: Data, ID: 7, Payload: huge},
		{Type: WorkerReady},
		{Type: WorkerBootError, Payload: []byte("{}")},
		{Type: WorkerHeartbeat},
		{Type: Type(0xee), Flags: 0xff, ID: 42, Payload: []byte{0}},
	}
	var stream []byte
	for _, f := range frames {
		stream = AppendFrame(stream, f.Type, f.Flags, f.ID, f.Payload)
	}
	for _, rd := range readers {
		t.Run(rd.name, func(t *testing.T) {
			r := NewReader(rd.wrap(stream))
			for i, want := range frames {
				got, err := r.ReadFrame()
				if err != nil {
					t.Fatalf("frame %d (%s): %v", i, want.Type, err)
				}
				if !frameEqual(got, want) {
					t.Fatalf("frame %d: got %s flags %#x id %d len %d, want %s flags %#x id %d len %d",
						i, got.Type, got.Flags, got.ID, len(got.Payload), want.Type, want.Flags, want.ID, len(want.Payload))
				}
				if len(want.Payload) == 0 && got.Payload != nil {
					t.Errorf("frame %d: empty payload should be nil", i)
				}
			}
			for range 2 { // io.EOF is sticky
				if _, err := r.ReadFrame(); err != io.EOF {
					t.Fatalf("after the last frame: %v, want io.EOF", err)
				}
			}
		})
	}
}

// TestFramePayloadOwned checks a frame's payload is not overwritten by the
// reads that follow.
func TestFramePayloadOwned(t *testing.T) {
	var stream []byte
	stream = AppendFrame(stream, Data, 0, 1, []byte("first"))
	stream = AppendFrame(stream, Data, 0, 1, []byte("second"))
	r := NewReader(bytes.NewReader(stream))
	a, err := r.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if string(a.Payload) != "first" {
		t.Errorf("first payload became %q", a.Payload)
	}
}

func TestReaderErrors(t *testing.T) {
	one := AppendFrame(nil, Data, FlagEnd, 9, []byte("payload"))
	boom := errors.New("boom")
	tests := []struct {
		name   string
		data   []byte
		frames int // read successfully before the error
		err    error
	}{
		{"empty", nil, 0, io.EOF},
		{"clean end", one, 1, io.EOF},
		{"1 header byte", one[:1], 0, io.ErrUnexpectedEOF},
		{"9 header bytes", one[:HeaderSize-1], 0, io.ErrUnexpectedEOF},
		{"header only", one[:HeaderSize], 0, io.ErrUnexpectedEOF},
		{"payload cut", one[:len(one)-1], 0, io.ErrUnexpectedEOF},
		{"second header cut", append(append([]byte{}, one...), one[:4]...), 1, io.ErrUnexpectedEOF},
		{"max payload announced, cut", AppendHeader(nil, Data, 0, 1, MaxPayload), 0, io.ErrUnexpectedEOF},
		{"too large", AppendHeader(nil, Data, 0, 1, MaxPayload+1), 0, ErrFrameTooLarge},
		{"too large after a frame", AppendHeader(append([]byte{}, one...), Data, 0, 1, 1<<31), 1, ErrFrameTooLarge},
		{"u32 max", []byte{0xff, 0xff, 0xff, 0xff, 0x13, 0, 1, 0, 0, 0}, 0, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				r := NewReader(rd.wrap(tt.data))
				for i := range tt.frames {
					if _, err := r.ReadFrame(); err != nil {
						t.Fatalf("frame %d: %v", i, err)
					}
				}
				_, err := r.ReadFrame()
				if err != tt.err {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
			})
		}
	}
	// An error other than EOF from the underlying reader is passed on,
	// mid-frame or between frames.
	for _, cut := range []int{0, 3, HeaderSize + 2} {
		r := NewReader(io.MultiReader(bytes.NewReader(one[:cut]), iotest.ErrReader(boom)))
		if _, err := r.ReadFrame(); err != boom {
			t.Errorf("cut at %d: err = %v, want boom", cut, err)
		}
	}
	// A transient error (a read deadline) inside a frame loses nothing:
	// the next call resumes where the stream stopped.
	for _, cut := range []int{3, HeaderSize, HeaderSize + 2} {
		r := NewReader(&scriptReader{steps: []step{{one[:cut], nil}, {nil, boom}, {one[cut:], nil}, {one, nil}}})
		if _, err := r.ReadFrame(); err != boom {
			t.Fatalf("cut at %d: err = %v, want boom", cut, err)
		}
		for i := range 2 {
			f, err := r.ReadFrame()
			if err != nil || f.Type != Data || f.ID != 9 || string(f.Payload) != "payload" {
				t.Fatalf("cut at %d: frame %d after the error: %+v, %v", cut, i, f, err)
			}
		}
		if _, err := r.ReadFrame(); err != io.EOF {
			t.Fatalf("cut at %d: err = %v, want io.EOF", cut, err)
		}
	}
}

type step struct {
	data []byte
	err  error
}

// scriptReader returns each step's data and error in one Read, then io.EOF.
type scriptReader struct{ steps []step }

func (s *scriptReader) Read(p []byte) (int, error) {
	if len(s.steps) == 0 {
		return 0, io.EOF
	}
	st := &s.steps[0]
	n := copy(p, st.data)
	st.data = st.data[n:]
	if len(st.data) > 0 {
		return n, nil
	}
	err := st.err
	s.steps = s.steps[1:]
	return n, err
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		ty    Type
		flags Flags
		id    uint32
		n     int
		err   error
	}{
		{"short", make([]byte, HeaderSize-1), 0, 0, 0, 0, io.ErrUnexpectedEOF},
		{"zero", make([]byte, HeaderSize), 0, 0, 0, 0, nil},
		{"fields", []byte{5, 0, 0, 0, 0x13, 1, 0x78, 0x56, 0x34, 0x12, 'x'}, Data, FlagEnd, 0x12345678, 5, nil},
		{"max", AppendHeader(nil, Read, 0, 1, MaxPayload), Read, 0, 1, MaxPayload, nil},
		{"too large", AppendHeader(nil, Read, 0, 1, MaxPayload+1), 0, 0, 0, 0, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ty, f, id, n, err := ParseHeader(tt.in)
			if ty != tt.ty || f != tt.flags || id != tt.id || n != tt.n || err != tt.err {
				t.Errorf("ParseHeader = %v %v %v %v %v, want %v %v %v %v %v", ty, f, id, n, err, tt.ty, tt.flags, tt.id, tt.n, tt.err)
			}
		})
	}
}

func TestUint32Payload(t *testing.T) {
	tests := []struct {
		in   []byte
		want uint32
		ok   bool
	}{
		{[]byte{0, 0, 1, 0}, 65536, true},
		{[]byte{0xff, 0xff, 0xff, 0xff}, 0xffffffff, true},
		{nil, 0, false},
		{[]byte{1, 2, 3}, 0, false},
		{[]byte{1, 2, 3, 4, 5}, 0, false},
	}
	for _, tt := range tests {
		got, err := Uint32Payload(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("Uint32Payload(%x) = %d, %v", tt.in, got, err)
		}
	}
	for _, v := range []uint32{0, 1, InitialWindow, 0xffffffff} {
		f, err := NewReader(bytes.NewReader(AppendUint32Frame(nil, Window, 3, v))).ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Uint32Payload(f.Payload)
		if err != nil || got != v || f.Type != Window || f.ID != 3 || f.Flags != 0 {
			t.Errorf("Window %d: got %+v %d %v", v, f, got, err)
		}
	}
}

func TestTypeString(t *testing.T) {
	seen := map[string]bool{}
	for _, ty := range []Type{Request, Body, Window, Cancel, Shutdown, Stacks, ReopenLogs, Ready, BootError, Start, Data, Read, Error, WorkerReady, WorkerBootError, WorkerHeartbeat, WorkerTired} {
		s := ty.String()
		if s == "" || strings.HasPrefix(s, "type(") || seen[s] {
			t.Errorf("Type(%#x).String() = %q", uint8(ty), s)
		}
		seen[s] = true
	}
	if got := Type(0x7f).String(); got != "type(0x7f)" {
		t.Errorf("unknown type: %q", got)
	}
}
