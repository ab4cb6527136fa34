package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a version 2 header by hand: signature, version/command byte,
// family/protocol byte, length, then body.
func v2(verCmd, famProto byte, body []byte) []byte {
	b := append([]byte(nil), v2Signature...)
	b = append(b, verCmd, famProto, byte(len(body)>>8), byte(len(body)))
	return append(b, body...)
}

func v2len(verCmd, famProto byte, length int, body []byte) []byte {
	b := append([]byte(nil), v2Signature...)
	b = append(b, verCmd, famProto, byte(length>>8), byte(length))
	return append(b, body...)
}

var (
	inet4Body = []byte{192, 0, 2, 1, 198, 51, 100, 7, 0x30, 0x39, 0x01, 0xbb} // 192.0.2.1:12345 -> 198.51.100.7:443
	inet6Body = append(append(append([]byte{}, netip.MustParseAddr("2001:db8::1").AsSlice()...), netip.MustParseAddr("2001:db8::2").AsSlice()...), 0xd4, 0x31, 0x00, 0x50)
	tlvs      = []byte{0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00, 0xee, 0x00, 0x01, 0x00} // ALPN "h2", NOOP empty, unknown type 0xee with 1 byte
)

func TestRead(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	src4 := netip.MustParseAddrPort("192.0.2.1:12345")
	dst4 := netip.MustParseAddrPort("198.51.100.7:443")
	src6 := netip.MustParseAddrPort("[2001:db8::1]:54321")
	dst6 := netip.MustParseAddrPort("[2001:db8::2]:80")
	long := "PROXY UNKNOWN " + strings.Repeat("x", MaxV1Length-len("PROXY UNKNOWN ")-2) + "\r\n"
	tests := []struct {
		name    string
		mode    Mode
		in      []byte
		want    *Header // nil: no header
		invalid bool    // the error wraps ErrInvalid
		ioErr   error   // the error is this one
	}{
		{name: "v1 TCP4", mode: Auto, in: []byte("PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\r\n" + req),
			want: &Header{Version: 1, Protocol: "TCP4", Source: src4, Destination: dst4}},
		{name: "v1 TCP6", mode: V1, in: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 54321 80\r\n" + req),
			want: &Header{Version: 1, Protocol: "TCP6", Source: src6, Destination: dst6}},
		{name: "v1 TCP6 v4-mapped", mode: Auto, in: []byte("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n" + req),
			want: &Header{Version: 1, Protocol: "TCP6", Source: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"), Destination: netip.MustParseAddrPort("[::1]:2")}},
		{name: "v1 UNKNOWN", mode: Auto, in: []byte("PROXY UNKNOWN\r\n" + req), want: &Header{Version: 1, Protocol: "UNKNOWN"}},
		{name: "v1 UNKNOWN with ignored fields", mode: Auto, in: []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n" + req), want: &Header{Version: 1, Protocol: "UNKNOWN"}},
		{name: "v1 longest allowed", mode: Auto, in: []byte(long + req), want: &Header{Version: 1, Protocol: "UNKNOWN"}},
		{name: "v1 oversized", mode: Auto, in: []byte("PROXY UNKNOWN " + strings.Repeat("x", 200) + "\r\n" + req), invalid: true},
		{name: "v1 one byte over", mode: Auto, in: []byte(long[:len(long)-2] + "x\r\n" + req), invalid: true},
		{name: "v1 LF only", mode: Auto, in: []byte("PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\n" + req), invalid: true},
		{name: "v1 bad protocol", mode: Auto, in: []byte("PROXY UDP4 192.0.2.1 198.51.100.7 12345 443\r\n"), invalid: true},
		{name: "v1 empty protocol", mode: Auto, in: []byte("PROXY \r\n"), invalid: true},
		{name: "v1 TCP4 with IPv6", mode: Auto, in: []byte("PROXY TCP4 2001:db8::1 198.51.100.7 1 2\r\n"), invalid: true},
		{name: "v1 TCP6 with IPv4", mode: Auto, in: []byte("PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n"), invalid: true},
		{name: "v1 leading-zero address", mode: Auto, in: []byte("PROXY TCP4 192.0.2.01 198.51.100.7 1 2\r\n"), invalid: true},
		{name: "v1 zone", mode: Auto, in: []byte("PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n"), invalid: true},
		{name: "v1 port too big", mode: Auto, in: []byte("PROXY TCP4 192.0.2.1 198.51.100.7 65536 443\r\n"), invalid: true},
		{name: "v1 signed port", mode: Auto, in: []byte("PROXY TCP4 192.0.2.1 198.51.100.7 +1 443\r\n"), invalid: true},
		{name: "v1 leading-zero port", mode: Auto, in: []byte("PROXY TCP4 192.0.2.1 198.51.100.7 080 443\r\n"), invalid: true},
		{name: "v1 missing field", mode: Auto, in: []byte("PROXY TCP4 192.0.2.1 198.51.100.7 12345\r\n"), invalid: true},
		{name: "v1 extra field", mode: Auto, in: []byte("PROXY TCP4 192.0.2.1 198.51.100.7 1 2 3\r\n"), invalid: true},
		{name: "v1 double space", mode: Auto, in: []byte("PROXY TCP4  192.0.2.1 198.51.100.7 1 2\r\n"), invalid: true},
		{name: "v1 truncated", mode: Auto, in: []byte("PROXY TCP4 192.0.2.1"), ioErr: io.ErrUnexpectedEOF},
		{name: "v1 prefix truncated", mode: Auto, in: []byte("PROX"), ioErr: io.ErrUnexpectedEOF},
		{name: "v1 ignored in v2 mode", mode: V2, in: []byte("PROXY UNKNOWN\r\n")},
		{name: "plain HTTP", mode: Auto, in: []byte(req)},
		{name: "plain HTTP starting with P", mode: Auto, in: []byte("POST / HTTP/1.1\r\n\r\n")},
		{name: "plain HTTP PROXY-like method", mode: Auto, in: []byte("PROXYX / HTTP/1.1\r\n\r\n")},
		{name: "empty connection", mode: Auto, in: nil, ioErr: io.EOF},
		{name: "off", mode: Off, in: []byte("PROXY UNKNOWN\r\n")},

		{name: "v2 TCP4", mode: Auto, in: append(v2(0x21, 0x11, inet4Body), req...),
			want: &Header{Version: 2, Protocol: "TCP4", Source: src4, Destination: dst4}},
		{name: "v2 TCP6", mode: V2, in: append(v2(0x21, 0x21, inet6Body), req...),
			want: &Header{Version: 2, Protocol: "TCP6", Source: src6, Destination: dst6}},
		{name: "v2 TCP4 with TLVs", mode: Auto, in: append(v2(0x21, 0x11, append(append([]byte{}, inet4Body...), tlvs...)), req...),
			want: &Header{Version: 2, Protocol: "TCP4", Source: src4, Destination: dst4}},
		{name: "v2 TCP4 with 60 KiB of TLVs", mode: Auto, in: append(v2(0x21, 0x11, append(append([]byte{}, inet4Body...), bytes.Repeat([]byte{0x04, 0x00, 0x00}, 20000)...)), req...),
			want: &Header{Version: 2, Protocol: "TCP4", Source: src4, Destination: dst4}},
		{name: "v2 LOCAL", mode: Auto, in: append(v2(0x20, 0x00, nil), req...), want: &Header{Version: 2, Protocol: "LOCAL"}},
		{name: "v2 LOCAL with addresses", mode: Auto, in: append(v2(0x20, 0x11, inet4Body), req...), want: &Header{Version: 2, Protocol: "LOCAL"}},
		{name: "v2 LOCAL ignores family", mode: Auto, in: append(v2(0x20, 0xff, nil), req...), want: &Header{Version: 2, Protocol: "LOCAL"}},
		{name: "v2 UNSPEC", mode: Auto, in: append(v2(0x21, 0x00, nil), req...), want: &Header{Version: 2, Protocol: "UNSPEC"}},
		{name: "v2 UNIX", mode: Auto, in: append(v2(0x21, 0x31, make([]byte, 216)), req...), want: &Header{Version: 2, Protocol: "UNIX"}},
		{name: "v2 ignored in v1 mode", mode: V1, in: v2(0x21, 0x11, inet4Body)},
		{name: "v2 bad signature", mode: Auto, in: append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 12)},
		{name: "v2 version 1", mode: Auto, in: v2(0x11, 0x11, inet4Body), invalid: true},
		{name: "v2 version 3", mode: Auto, in: v2(0x31, 0x11, inet4Body), invalid: true},
		{name: "v2 bad command", mode: Auto, in: v2(0x22, 0x11, inet4Body), invalid: true},
		{name: "v2 bad family", mode: Auto, in: v2(0x21, 0x41, inet4Body), invalid: true},
		{name: "v2 bad protocol", mode: Auto, in: v2(0x21, 0x13, inet4Body), invalid: true},
		{name: "v2 DGRAM", mode: Auto, in: v2(0x21, 0x12, inet4Body), invalid: true},
		{name: "v2 TCP4 short addresses", mode: Auto, in: v2(0x21, 0x11, inet4Body[:11]), invalid: true},
		{name: "v2 TCP6 short addresses", mode: Auto, in: v2(0x21, 0x21, inet4Body), invalid: true},
		{name: "v2 UNIX short addresses", mode: Auto, in: v2(0x21, 0x31, make([]byte, 100)), invalid: true},
		{name: "v2 truncated signature", mode: Auto, in: v2Signature[:7], ioErr: io.ErrUnexpectedEOF},
		{name: "v2 truncated fixed part", mode: Auto, in: v2(0x21, 0x11, nil)[:14], ioErr: io.ErrUnexpectedEOF},
		{name: "v2 truncated addresses", mode: Auto, in: v2len(0x21, 0x11, 12, inet4Body[:6]), ioErr: io.ErrUnexpectedEOF},
		{name: "v2 truncated TLVs", mode: Auto, in: v2len(0x21, 0x11, 40, inet4Body), ioErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(bytes.NewReader(tt.in), 256)
			h, err := Read(r, tt.mode)
			switch {
			case tt.invalid:
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			case tt.ioErr != nil:
				if err != tt.ioErr {
					t.Fatalf("err = %v, want %v", err, tt.ioErr)
				}
				return
			case err != nil:
				t.Fatalf("err = %v", err)
			}
			if (h == nil) != (tt.want == nil) || (h != nil && *h != *tt.want) {
				t.Fatalf("header = %+v, want %+v", h, tt.want)
			}
			// What follows the header, or the whole input when there is
			// none, is left to read.
			rest, _ := io.ReadAll(r)
			wantRest := tt.in
			if tt.want != nil {
				wantRest = []byte(req)
			}
			if !bytes.Equal(rest, wantRest) {
				t.Fatalf("left %q, want %q", rest, wantRest)
			}
		})
	}
}

func TestAppendRoundTrip(t *testing.T) {
	headers := []*Header{
		{Version: 1, Protocol: "TCP4", Source: netip.MustParseAddrPort("10.1.2.3:1"), Destination: netip.MustParseAddrPort("10.0.0.1:65535")},
		{Version: 1, Protocol: "TCP6", Source: netip.MustParseAddrPort("[2001:db8::5]:0"), Destination: netip.MustParseAddrPort("[::1]:8000")},
		{Version: 1, Protocol: "UNKNOWN"},
	}
	for _, h := range headers {
		for _, version := range []int{1, 2} {
			var b []byte
			if version == 1 {
				b = h.AppendV1(nil)
			} else {
				b = h.AppendV2(nil, tlvs)
			}
			got, err := Read(bufio.NewReader(bytes.NewReader(b)), Auto)
			if err != nil {
				t.Fatalf("v%d %q: %v", version, b, err)
			}
			want := *h
			want.Version = version
			if version == 2 && h.Protocol == "UNKNOWN" {
				want.Protocol = "LOCAL"
			}
			if *got != want {
				t.Errorf("v%d: got %+v, want %+v", version, got, want)
			}
		}
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in   string
		want Mode
		ok   bool
	}{
		{"", Off, true}, {"off", Off, true}, {"false", Off, true}, {"v1", V1, true}, {"v2", V2, true},
		{"auto", Auto, true}, {"true", Auto, true}, {"V1", Off, false}, {"on", Off, false}, {"v3", Off, false},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && tt.in != "" && tt.in != "true" && tt.in != "false" && got.String() != tt.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
}
