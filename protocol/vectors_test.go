package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"testing/iotest"
)

// hexBytes is a byte string written as hex in vectors.json.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = d
	return nil
}

// latin1 is a byte string written in vectors.json either as text whose
// code points (all <= 0xff) are the bytes, or as {"hex": "..."}.
type latin1 string

func (l *latin1) UnmarshalJSON(b []byte) error {
	var obj struct {
		Hex *hexBytes `json:"hex"`
	}
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &obj); err != nil {
			return err
		}
		if obj.Hex == nil {
			return errors.New(`latin1 object without "hex"`)
		}
		*l = latin1(*obj.Hex)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return fmt.Errorf("code point %U in latin-1 text %q", r, s)
		}
		out = append(out, byte(r))
	}
	*l = latin1(out)
	return nil
}

type vectorFrame struct {
	Name    string   `json:"name"`
	Type    Type     `json:"type"`
	Flags   Flags    `json:"flags"`
	ID      uint32   `json:"id"`
	Payload hexBytes `json:"payload"`
	Encoded hexBytes `json:"encoded"`
}

type vectorEnviron struct {
	Name    string      `json:"name"`
	Pairs   [][2]latin1 `json:"pairs"`
	Marshal hexBytes    `json:"marshal"`
}

type vectorRequest struct {
	Name    string      `json:"name"`
	ID      uint32      `json:"id"`
	Flags   Flags       `json:"flags"`
	Pairs   [][2]latin1 `json:"pairs"`
	Body    hexBytes    `json:"body"`
	Encoded hexBytes    `json:"encoded"`
}

type vectorStart struct {
	Name    string      `json:"name"`
	ID      uint32      `json:"id"`
	Flags   Flags       `json:"flags"`
	Status  latin1      `json:"status"`
	Headers [][2]latin1 `json:"headers"`
	Body    hexBytes    `json:"body"`
	Code    int         `json:"code"`
	Encoded hexBytes    `json:"encoded"`
}

type vectorInvalid struct {
	Name    string   `json:"name"`
	Data    hexBytes `json:"data"`    // frames
	Marshal hexBytes `json:"marshal"` // environs
	Payload hexBytes `json:"payload"` // starts
	Error   string   `json:"error"`
}

type vectorFile struct {
	Frames      []vectorFrame   `json:"frames"`
	EnvironKeys []string        `json:"environ_keys"`
	Environs    []vectorEnviron `json:"environs"`
	Requests    []vectorRequest `json:"requests"`
	Starts      []vectorStart   `json:"starts"`
	Invalid     struct {
		Frames   []vectorInvalid `json:"frames"`
		Environs []vectorInvalid `json:"environs"`
		Starts   []vectorInvalid `json:"starts"`
	} `json:"invalid"`
}

func loadVectors(tb testing.TB) *vectorFile {
	tb.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatalf("decoding vectors.json: %v", err)
	}
	if len(v.Frames) == 0 || len(v.Environs) == 0 || len(v.Requests) == 0 || len(v.Starts) == 0 ||
		len(v.Invalid.Frames) == 0 || len(v.Invalid.Environs) == 0 || len(v.Invalid.Starts) == 0 {
		tb.Fatal("vectors.json lacks a section")
	}
	return &v
}

func pairs(ps [][2]latin1) [][2]string {
	out := make([][2]string, len(ps))
	for i, p := range ps {
		out[i] = [2]string{string(p[0]), string(p[1])}
	}
	return out
}

func encodeEnviron(ps [][2]string) []byte {
	var e Environ
	for _, p := range ps {
		e.Add(p[0], p[1])
	}
	return e.AppendTo(nil)
}

// environEntries is what the runtime's environ holds after pairs ps went
// through Environ, in DecodeEnviron's order: the keys of EnvironKeys that
// were added, in that order, with their last values; then the others, in
// the order they were added.
func environEntries(ps [][2]string) [][2]string {
	var fixed [len(EnvironKeys)]*string
	var out [][2]string
	for _, p := range ps {
		if i := slices.Index(EnvironKeys[:], p[0]); i >= 0 {
			fixed[i] = &p[1]
		}
	}
	for i, v := range fixed {
		if v != nil {
			out = append(out, [2]string{EnvironKeys[i], *v})
		}
	}
	for _, p := range ps {
		if !slices.Contains(EnvironKeys[:], p[0]) {
			out = append(out, p)
		}
	}
	return out
}

// errorClass maps an error to the class names vectors.json uses.
func errorClass(err error) string {
	switch {
	case err == nil:
		return ""
	case err == io.EOF:
		return "eof"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected_eof"
	case errors.Is(err, ErrFrameTooLarge):
		return "too_large"
	}
	return "other: " + err.Error()
}

func TestVectorFrames(t *testing.T) {
	v := loadVectors(t)
	var stream []byte
	for _, c := range v.Frames {
		t.Run(c.Name, func(t *testing.T) {
			got := AppendFrame(nil, c.Type, c.Flags, c.ID, c.Payload)
			if !bytes.Equal(got, c.Encoded) {
				t.Errorf("AppendFrame = %x, want %x", got, c.Encoded)
			}
			if len(c.Payload) == 4 {
				u := AppendUint32Frame(nil, c.Type, c.ID, uint32(c.Payload[0])|uint32(c.Payload[1])<<8|uint32(c.Payload[2])<<16|uint32(c.Payload[3])<<24)
				if c.Flags == 0 && !bytes.Equal(u, c.Encoded) {
					t.Errorf("AppendUint32Frame = %x, want %x", u, c.Encoded)
				}
			}
			ty, fl, id, n, err := ParseHeader(c.Encoded)
			if err != nil || ty != c.Type || fl != c.Flags || id != c.ID || n != len(c.Payload) {
				t.Errorf("ParseHeader = %v %v %v %v %v", ty, fl, id, n, err)
			}
			f, err := NewReader(bytes.NewReader(c.Encoded)).ReadFrame()
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			want := Frame{Type: c.Type, Flags: c.Flags, ID: c.ID, Payload: c.Payload}
			if !frameEqual(f, want) {
				t.Errorf("ReadFrame = %+v, want %+v", f, want)
			}
			if f.End() != (c.Flags&FlagEnd != 0) {
				t.Errorf("End() = %v for flags %#x", f.End(), c.Flags)
			}
		})
		stream = append(stream, c.Encoded...)
	}
	// All the vectors back to back, one byte per read.
	r := NewReader(iotest.OneByteReader(bytes.NewReader(stream)))
	for _, c := range v.Frames {
		f, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("stream: %s: %v", c.Name, err)
		}
		if want := (Frame{Type: c.Type, Flags: c.Flags, ID: c.ID, Payload: c.Payload}); !frameEqual(f, want) {
			t.Errorf("stream: %s: got %+v", c.Name, f)
		}
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Errorf("after the stream: %v, want io.EOF", err)
	}
}

func TestVectorEnvirons(t *testing.T) {
	v := loadVectors(t)
	if !slices.Equal(v.EnvironKeys, EnvironKeys[:]) {
		t.Errorf("EnvironKeys = %q, vectors.json has %q", EnvironKeys, v.EnvironKeys)
	}
	for i, k := range EnvironKeys {
		if environKey(k) != i {
			t.Errorf("environKey(%q) = %d, want %d", k, environKey(k), i)
		}
	}
	for _, c := range v.Environs {
		t.Run(c.Name, func(t *testing.T) {
			ps := pairs(c.Pairs)
			if got := encodeEnviron(ps); !bytes.Equal(got, c.Marshal) {
				t.Errorf("Environ = %x, want %x", got, c.Marshal)
			}
			got, err := DecodeEnviron(c.Marshal)
			if err != nil {
				t.Fatalf("DecodeEnviron: %v", err)
			}
			if want := environEntries(ps); !slices.Equal(got, want) {
				t.Errorf("DecodeEnviron = %q, want %q", got, want)
			}
		})
	}
}

func TestVectorRequests(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Requests {
		t.Run(c.Name, func(t *testing.T) {
			e := encodeEnviron(pairs(c.Pairs))
			payload := append(append([]byte{byte(len(e)), byte(len(e) >> 8), byte(len(e) >> 16), byte(len(e) >> 24)}, e...), c.Body...)
			if got := AppendFrame(nil, Request, c.Flags, c.ID, payload); !bytes.Equal(got, c.Encoded) {
				t.Errorf("request frame = %x, want %x", got, c.Encoded)
			}
		})
	}
}

func TestVectorStarts(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Starts {
		t.Run(c.Name, func(t *testing.T) {
			hs := pairs(c.Headers)
			got := AppendStart(nil, c.Flags, c.ID, string(c.Status), hs, c.Body)
			if !bytes.Equal(got, c.Encoded) {
				t.Errorf("AppendStart = %x, want %x", got, c.Encoded)
			}
			f, err := NewReader(bytes.NewReader(c.Encoded)).ReadFrame()
			if err != nil || f.Type != Start || f.ID != c.ID || f.Flags != c.Flags {
				t.Fatalf("ReadFrame = %+v, %v", f, err)
			}
			head, body, err := ParseStart(f.Payload)
			if err != nil {
				t.Fatalf("ParseStart: %v", err)
			}
			if head.Status != string(c.Status) || head.Code != c.Code || !slices.Equal(head.Headers, hs) || !bytes.Equal(body, c.Body) {
				t.Errorf("ParseStart = %+v, %x; want %q %d %q %x", head, body, c.Status, c.Code, hs, c.Body)
			}
		})
	}
}

func TestVectorInvalid(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Invalid.Frames {
		t.Run("frames/"+c.Name, func(t *testing.T) {
			for _, slow := range []bool{false, true} {
				var src io.Reader = bytes.NewReader(c.Data)
				if slow {
					src = iotest.OneByteReader(src)
				}
				r := NewReader(src)
				var err error
				for range 10 {
					if _, err = r.ReadFrame(); err != nil {
						break
					}
				}
				if got := errorClass(err); got != c.Error {
					t.Errorf("one byte per read %v: error %q, want %q", slow, got, c.Error)
				}
			}
		})
	}
	for _, c := range v.Invalid.Environs {
		t.Run("environs/"+c.Name, func(t *testing.T) {
			if c.Error != "environ" {
				t.Fatalf("unknown error class %q", c.Error)
			}
			if got, err := DecodeEnviron(c.Marshal); err == nil {
				t.Errorf("DecodeEnviron(%x) = %q, want an error", c.Marshal, got)
			}
		})
	}
	for _, c := range v.Invalid.Starts {
		t.Run("starts/"+c.Name, func(t *testing.T) {
			if c.Error != "start" {
				t.Fatalf("unknown error class %q", c.Error)
			}
			if h, body, err := ParseStart(c.Payload); err == nil {
				t.Errorf("ParseStart(%q) = %+v, %q; want an error", c.Payload, h, body)
			}
		})
	}
}

func frameEqual(a, b Frame) bool {
	return a.Type == b.Type && a.Flags == b.Flags && a.ID == b.ID && bytes.Equal(a.Payload, b.Payload)
}
