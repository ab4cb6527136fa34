package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzRead: Read never panics, consumes exactly the header it returns (at
// most MaxV1Length bytes for version 1), consumes nothing when it finds
// none, and what it returns re-encodes to the same endpoints.
func FuzzRead(f *testing.F) {
	seeds := [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\r\nGET / HTTP/1.1\r\n\r\n"),
		[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 54321 80\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		[]byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n"),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		v2(0x21, 0x11, inet4Body),
		v2(0x21, 0x21, inet6Body),
		v2(0x21, 0x11, append(append([]byte{}, inet4Body...), tlvs...)),
		v2(0x20, 0x00, nil),
		v2(0x21, 0x31, make([]byte, 216)),
		v2len(0x21, 0x11, 40, inet4Body),
	}
	for _, s := range seeds {
		f.Add(s, uint8(Auto))
	}
	f.Fuzz(func(t *testing.T, data []byte, m uint8) {
		mode := Mode(m % 4)
		r := bufio.NewReaderSize(bytes.NewReader(data), 256)
		h, err := Read(r, mode)
		rest, _ := io.ReadAll(r)
		consumed := len(data) - len(rest)
		if err != nil {
			if h != nil {
				t.Fatalf("header %+v with error %v", h, err)
			}
			if !errors.Is(err, ErrInvalid) && err != io.EOF && err != io.ErrUnexpectedEOF {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if h == nil {
			if consumed != 0 {
				t.Fatalf("no header, but %d bytes consumed", consumed)
			}
			return
		}
		if h.Version == 1 && consumed > MaxV1Length {
			t.Fatalf("version 1 header of %d bytes", consumed)
		}
		if (h.Version == 1 && mode == V2) || (h.Version == 2 && mode == V1) || mode == Off {
			t.Fatalf("version %d header in mode %v", h.Version, mode)
		}
		if !h.HasAddrs() {
			return
		}
		for _, b := range [][]byte{h.AppendV1(nil), h.AppendV2(nil, nil)} {
			again, err := Read(bufio.NewReader(bytes.NewReader(b)), Auto)
			if err != nil || again.Source != h.Source || again.Destination != h.Destination {
				t.Fatalf("%+v re-encoded as %q reads as %+v, %v", h, b, again, err)
			}
		}
	})
}
