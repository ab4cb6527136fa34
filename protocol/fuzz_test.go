package protocol

import (
	"bytes"
	"io"
	"slices"
	"testing"
	"testing/iotest"
)

// readAll decodes frames from r until an error.
func readAll(r io.Reader) ([]Frame, error) { return readAllWith(r, (*Reader).ReadFrame) }

func readAllWith(r io.Reader, read func(*Reader) (Frame, error)) ([]Frame, error) {
	fr := NewReader(r)
	var out []Frame
	for {
		f, err := read(fr)
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

// FuzzReadFrame checks the Reader on arbitrary streams: it never panics,
// ends with one of its documented errors, decodes the same frames however
// the stream is split into reads, and the frames it returns re-encode to
// the bytes they came from.
func FuzzReadFrame(f *testing.F) {
	v := loadVectors(f)
	var all []byte
	for _, c := range v.Frames {
		f.Add([]byte(c.Encoded))
		all = append(all, c.Encoded...)
	}
	for _, c := range v.Starts {
		f.Add([]byte(c.Encoded))
	}
	for _, c := range v.Invalid.Frames {
		f.Add([]byte(c.Data))
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, err := readAll(bytes.NewReader(data))
		switch {
		case err == io.EOF, err == io.ErrUnexpectedEOF, err == ErrFrameTooLarge:
		default:
			t.Fatalf("unexpected error %v", err)
		}
		var enc []byte
		for _, fr := range frames {
			enc = AppendFrame(enc, fr.Type, fr.Flags, fr.ID, fr.Payload)
		}
		if !bytes.HasPrefix(data, enc) {
			t.Fatalf("frames re-encode to %x, not a prefix of the input", enc)
		}
		rest := data[len(enc):]
		switch err {
		case io.EOF:
			if len(rest) != 0 {
				t.Fatalf("io.EOF with %d bytes left", len(rest))
			}
		case io.ErrUnexpectedEOF:
			if len(rest) == 0 {
				t.Fatal("io.ErrUnexpectedEOF at a frame boundary")
			}
			if len(rest) >= HeaderSize {
				_, _, _, n, herr := ParseHeader(rest)
				if herr != nil || len(rest) >= HeaderSize+n {
					t.Fatalf("io.ErrUnexpectedEOF, but %x holds a whole frame", rest)
				}
			}
		case ErrFrameTooLarge:
			if _, _, _, _, herr := ParseHeader(rest); herr != ErrFrameTooLarge {
				t.Fatalf("ErrFrameTooLarge, but the next header parses: %v", herr)
			}
		}
		slow, serr := readAll(iotest.OneByteReader(bytes.NewReader(data)))
		if serr != err || len(slow) != len(frames) {
			t.Fatalf("one byte per read: %d frames, %v; whole: %d frames, %v", len(slow), serr, len(frames), err)
		}
		for i := range slow {
			if !frameEqual(slow[i], frames[i]) {
				t.Fatalf("frame %d differs when read one byte at a time", i)
			}
		}
		for name, src := range map[string]io.Reader{"whole": bytes.NewReader(data), "one byte": iotest.OneByteReader(bytes.NewReader(data))} {
			pooled, perr := readAllWith(src, (*Reader).ReadFramePooled)
			if perr != err || len(pooled) != len(frames) {
				t.Fatalf("ReadFramePooled (%s): %d frames, %v; ReadFrame: %d frames, %v", name, len(pooled), perr, len(frames), err)
			}
			for i := range pooled {
				if !frameEqual(pooled[i], frames[i]) {
					t.Fatalf("frame %d differs from ReadFramePooled (%s)", i, name)
				}
			}
		}
	})
}

// FuzzParseStart checks ParseStart never panics, that what it accepts is
// safe to send and survives a round trip through AppendStart, and that a
// HeadCache answers as ParseStart does.
func FuzzParseStart(f *testing.F) {
	v := loadVectors(f)
	for _, c := range v.Starts {
		f.Add([]byte(c.Encoded[HeaderSize:]))
	}
	for _, c := range v.Invalid.Starts {
		f.Add([]byte(c.Payload))
	}
	var cache HeadCache
	f.Fuzz(func(t *testing.T, p []byte) {
		h, body, err := ParseStart(p)
		for range 2 { // a cache miss, then (for a kept head) a hit
			ch, cbody, cerr := cache.ParseStart(p)
			if (cerr == nil) != (err == nil) || ch.Status != h.Status || ch.Code != h.Code || !slices.Equal(ch.Headers, h.Headers) || !bytes.Equal(cbody, body) {
				t.Fatalf("HeadCache.ParseStart = %+v %q %v, ParseStart %+v %q %v", ch, cbody, cerr, h, body, err)
			}
		}
		if err != nil {
			return
		}
		if h.Code < 100 || h.Code > 999 {
			t.Fatalf("code %d", h.Code)
		}
		if !bytes.HasSuffix(p, body) {
			t.Fatal("body is not the end of the payload")
		}
		if !validHeaderValue(h.Status) {
			t.Fatalf("accepted status %q", h.Status)
		}
		for _, kv := range h.Headers {
			if !validHeaderName(kv[0]) || !validHeaderValue(kv[1]) || bytes.ContainsAny([]byte(kv[0]+kv[1]), "\r\n\x00") {
				t.Fatalf("accepted header %q", kv)
			}
		}
		enc := AppendStart(nil, 0, 1, h.Status, h.Headers, body)
		h2, body2, err := ParseStart(enc[HeaderSize:])
		if err != nil {
			t.Fatalf("re-encoded head refused: %v", err)
		}
		if h2.Status != h.Status || h2.Code != h.Code || !slices.Equal(h2.Headers, h.Headers) || !bytes.Equal(body2, body) {
			t.Fatalf("round trip: %+v %q, want %+v %q", h2, body2, h, body)
		}
		if !bytes.Equal(enc[HeaderSize:], p) {
			t.Fatalf("accepted payload %x re-encodes to %x", p, enc[HeaderSize:])
		}
	})
}

// FuzzDecodeEnviron checks DecodeEnviron never panics and that what it
// accepts encodes back to a dict that decodes the same.
func FuzzDecodeEnviron(f *testing.F) {
	v := loadVectors(f)
	for _, c := range v.Environs {
		f.Add([]byte(c.Marshal))
	}
	for _, c := range v.Invalid.Environs {
		f.Add([]byte(c.Marshal))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := DecodeEnviron(b)
		if err != nil {
			return
		}
		enc := encodeEnviron(ps)
		back, err := DecodeEnviron(enc)
		if err != nil {
			t.Fatalf("re-encoded environ refused: %v", err)
		}
		if !slices.Equal(back, ps) {
			t.Fatalf("round trip: %q, want %q", back, ps)
		}
		if len(enc) > len(b) {
			t.Fatalf("canonical encoding %x is longer than the accepted input %x", enc, b)
		}
	})
}

// FuzzEnvironRoundTrip checks any byte strings survive Environ and
// DecodeEnviron unchanged.
func FuzzEnvironRoundTrip(f *testing.F) {
	v := loadVectors(f)
	for _, c := range v.Environs {
		for _, p := range c.Pairs {
			f.Add([]byte(p[0]), []byte(p[1]), []byte("K"), []byte(""))
		}
	}
	f.Add([]byte("\x00\xff"), bytes.Repeat([]byte("\xe9"), 300), bytes.Repeat([]byte("a"), 256), []byte("\xc3\xa9"))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 []byte) {
		ps := [][2]string{{string(k1), string(v1)}, {string(k2), string(v2)}}
		got, err := DecodeEnviron(encodeEnviron(ps))
		if err != nil {
			t.Fatalf("DecodeEnviron: %v", err)
		}
		if want := environEntries(ps); !slices.Equal(got, want) {
			t.Fatalf("round trip: %q, want %q", got, want)
		}
	})
}
