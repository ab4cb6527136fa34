package protocol

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

func TestEnvironEncoding(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name  string
		pairs [][2]string
		want  []byte
	}{
		{"empty", nil, []byte("{0")},
		{"ascii", [][2]string{{"A", "bc"}}, []byte("{z\x01Az\x02bc0")},
		{"empty value", [][2]string{{"K", ""}}, []byte("{z\x01Kz\x000")},
		{"255 bytes is short", [][2]string{{"K", long[:255]}}, append([]byte("{z\x01Kz\xff"), long[:255]+"0"...)},
		{"256 bytes is long", [][2]string{{"K", long[:256]}}, append([]byte("{z\x01Ka\x00\x01\x00\x00"), long[:256]+"0"...)},
		{"latin-1 byte", [][2]string{{"K", "\xe9"}}, []byte("{z\x01Ku\x02\x00\x00\x00\xc3\xa90")},
		{"utf-8 bytes are two code points", [][2]string{{"K", "\xc3\xa9"}}, []byte("{z\x01Ku\x04\x00\x00\x00\xc3\x83\xc2\xa90")},
		{"non-ascii key", [][2]string{{"\xff", "v"}}, []byte("{u\x02\x00\x00\x00\xc3\xbfz\x01v0")},
		{"order kept", [][2]string{{"B", "1"}, {"A", "2"}}, []byte("{z\x01Bz\x011z\x01Az\x0120")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encodeEnviron(tt.pairs)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("encoded %q, want %q", got, tt.want)
			}
			back, err := DecodeEnviron(got)
			if err != nil {
				t.Fatalf("DecodeEnviron: %v", err)
			}
			if !slices.Equal(back, tt.pairs) {
				t.Errorf("DecodeEnviron = %q, want %q", back, tt.pairs)
			}
		})
	}
}

// TestEnvironReuse checks Reset starts over and that Add works on a zero
// Environ.
func TestEnvironReuse(t *testing.T) {
	var e Environ
	e.Add("A", "1")
	if got := string(e.Bytes()); got != "{z\x01Az\x0110" {
		t.Fatalf("zero Environ: %q", got)
	}
	e.Reset()
	e.Add("B", "2")
	if got := string(e.Bytes()); got != "{z\x01Bz\x0120" {
		t.Fatalf("after Reset: %q", got)
	}
	var empty Environ
	if got := string(empty.Bytes()); got != "{0" {
		t.Fatalf("empty Environ: %q", got)
	}
	buf := make([]byte, 0, 64)
	e.ResetAfter(append(buf, "HEAD"...))
	e.Add("C", "3")
	got := e.Bytes()
	if string(got) != "HEAD{z\x01Cz\x0130" {
		t.Fatalf("after ResetAfter: %q", got)
	}
	if &got[0] != &buf[:1][0] {
		t.Fatal("ResetAfter did not build in the prefix's buffer")
	}
	if d, err := DecodeEnviron(got[4:]); err != nil || len(d) != 1 || d[0] != [2]string{"C", "3"} {
		t.Fatalf("the dict after the prefix decodes to %q, %v", d, err)
	}
}

func TestDecodeEnvironErrors(t *testing.T) {
	u32 := func(n uint32) string { return string(binary.LittleEndian.AppendUint32(nil, n)) }
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"only brace", "{"},
		{"not a dict", "z\x01a"},
		{"no terminator", "{z\x01az\x01b"},
		{"key without value", "{z\x01a0"},
		{"key then end of input", "{z\x01a"},
		{"short length only", "{z"},
		{"long length cut", "{a\x01\x00"},
		{"short string cut", "{z\x05abc"},
		{"long string cut", "{a" + u32(10) + "abc"},
		{"huge length", "{a" + u32(0xffffffff) + "abc"},
		{"huge unicode length", "{u" + u32(0x80000000) + "abc"},
		{"unknown type", "{i\x01\x00\x00\x00z\x00" + "0"},
		{"interned ascii", "{Z\x01az\x01b0"},
		{"non-ascii in z", "{z\x01\xe9z\x000"},
		{"non-ascii in a", "{a" + u32(1) + "\xe9z\x000"},
		{"code point above 0xff", "{z\x01au\x02\x00\x00\x00\xc4\x800"},
		{"invalid utf-8", "{z\x01au\x01\x00\x00\x00\xe90"},
		{"surrogate", "{z\x01au\x03\x00\x00\x00\xed\xa0\x800"},
		{"trailing bytes", "{z\x01az\x01b0x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := DecodeEnviron([]byte(tt.in)); err == nil {
				t.Errorf("DecodeEnviron(%q) = %q, want an error", tt.in, got)
			}
		})
	}
}

func TestParseStart(t *testing.T) {
	payload := func(head, body string) []byte {
		return append(binary.LittleEndian.AppendUint32(nil, uint32(len(head))), head+body...)
	}
	ok := []struct {
		name    string
		head    string
		body    string
		code    int
		headers [][2]string
	}{
		{"status only", "200 OK", "", 200, nil},
		{"bare code", "404", "", 404, nil},
		{"code and space", "500 ", "", 500, nil},
		{"max code", "999 Whatever", "", 999, nil},
		{"min code", "100 Continue", "", 100, nil},
		{"headers and body", "201 Created\x00Location\x00/x\x00X-A\x00", "body\x00\r\n", 201, [][2]string{{"Location", "/x"}, {"X-A", ""}}},
		{"latin-1 status and value", "200 \xe9t\xe9\x00X\x00caf\xe9", "", 200, [][2]string{{"X", "caf\xe9"}}},
		{"tab and spaces in value", "200 OK\x00X\x00 a\tb ", "", 200, [][2]string{{"X", " a\tb "}}},
		{"repeated header", "200 OK\x00Set-Cookie\x00a\x00Set-Cookie\x00b", "", 200, [][2]string{{"Set-Cookie", "a"}, {"Set-Cookie", "b"}}},
	}
	for _, tt := range ok {
		t.Run("ok/"+tt.name, func(t *testing.T) {
			h, body, err := ParseStart(payload(tt.head, tt.body))
			if err != nil {
				t.Fatalf("ParseStart: %v", err)
			}
			if h.Code != tt.code || h.Status != strings.SplitN(tt.head, "\x00", 2)[0] || !slices.Equal(h.Headers, tt.headers) || string(body) != tt.body {
				t.Errorf("ParseStart = %+v %q", h, body)
			}
		})
	}
	bad := []struct{ name, head string }{
		{"empty", ""},
		{"short code", "20"},
		{"letters", "abc OK"},
		{"no space", "200OK"},
		{"tab separator", "200\tOK"},
		{"below 100", "099 X"},
		{"plus sign", "+20 X"},
		{"minus sign", "-20 X"},
		{"leading space", " 200 OK"},
		{"CR in status", "200 OK\r"},
		{"LF in status", "200 OK\nX: y"},
		{"odd fields", "200 OK\x00X-A"},
		{"CR in value", "200 OK\x00X\x00a\rb"},
		{"LF in value", "200 OK\x00X\x00a\nb"},
		{"DEL in value", "200 OK\x00X\x00\x7f"},
		{"control in value", "200 OK\x00X\x00\x01"},
		{"empty name", "200 OK\x00\x00v"},
		{"space in name", "200 OK\x00X A\x00v"},
		{"colon in name", "200 OK\x00X:\x00v"},
		{"CRLF in name", "200 OK\x00X\r\nY\x00v"},
		{"non-ascii name", "200 OK\x00\xe9\x00v"},
	}
	for _, tt := range bad {
		t.Run("bad/"+tt.name, func(t *testing.T) {
			if h, _, err := ParseStart(payload(tt.head, "")); err == nil {
				t.Errorf("ParseStart(%q) = %+v, want an error", tt.head, h)
			}
		})
	}
	for _, p := range [][]byte{nil, {1}, {0, 0, 0}, {7, 0, 0, 0, '2', '0', '0'}, {0xff, 0xff, 0xff, 0xff}} {
		if _, _, err := ParseStart(p); err == nil {
			t.Errorf("ParseStart(%x): want an error", p)
		}
	}
}

// BenchmarkParseStart decodes the Start frame of the bench's hello
// response: a status and two headers. The head is copied once, and the
// status, names and values are slices of that copy.
func BenchmarkParseStart(b *testing.B) {
	head := "200 OK\x00Content-Type\x00text/plain\x00Content-Length\x0013"
	p := append(binary.LittleEndian.AppendUint32(nil, uint32(len(head))), head+"Hello, World!"...)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseStart(p); err != nil {
			b.Fatal(err)
		}
	}
}
