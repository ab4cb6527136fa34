package protocol

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

// encoded builds an expected encoding: the values of EnvironKeys given by
// index (encoded already), the other entries' encoded dict body, and the
// mask of the keys without a value.
func encoded(fixed map[int]string, other string) []byte {
	b := []byte{')', byte(len(EnvironKeys) + 2)}
	var absent uint32
	for i := range EnvironKeys {
		if v, ok := fixed[i]; ok {
			b = append(b, v...)
		} else {
			b = append(b, 'N')
			absent |= 1 << i
		}
	}
	b = append(b, '{')
	b = append(b, other...)
	b = append(b, '0', 'i')
	return binary.LittleEndian.AppendUint32(b, absent)
}

func TestEnvironEncoding(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name  string
		pairs [][2]string
		want  []byte
	}{
		{"empty", nil, encoded(nil, "")},
		{"ascii", [][2]string{{"A", "bc"}}, encoded(nil, "z\x01Az\x02bc")},
		{"empty value", [][2]string{{"K", ""}}, encoded(nil, "z\x01Kz\x00")},
		{"255 bytes is short", [][2]string{{"K", long[:255]}}, encoded(nil, "z\x01Kz\xff"+long[:255])},
		{"256 bytes is long", [][2]string{{"K", long[:256]}}, encoded(nil, "z\x01Ka\x00\x01\x00\x00"+long[:256])},
		{"latin-1 byte", [][2]string{{"K", "\xe9"}}, encoded(nil, "z\x01Ku\x02\x00\x00\x00\xc3\xa9")},
		{"utf-8 bytes are two code points", [][2]string{{"K", "\xc3\xa9"}}, encoded(nil, "z\x01Ku\x04\x00\x00\x00\xc3\x83\xc2\xa9")},
		{"non-ascii key", [][2]string{{"\xff", "v"}}, encoded(nil, "u\x02\x00\x00\x00\xc3\xbfz\x01v")},
		{"order kept", [][2]string{{"B", "1"}, {"A", "2"}}, encoded(nil, "z\x01Bz\x011z\x01Az\x012")},
		{"keys in the tuple", [][2]string{{"PATH_INFO", "/"}, {"REQUEST_METHOD", "GET"}},
			encoded(map[int]string{0: "z\x03GET", 2: "z\x01/"}, "")},
		{"a key in the tuple twice: the last value", [][2]string{{"HTTP_HOST", "a"}, {"HTTP_HOST", "b"}},
			encoded(map[int]string{11: "z\x01b"}, "")},
		{"an empty value is not an absent one", [][2]string{{"QUERY_STRING", ""}}, encoded(map[int]string{3: "z\x00"}, "")},
		{"both", [][2]string{{"HTTP_X", "1"}, {"wsgi.url_scheme", "https"}, {"CONTENT_TYPE", "t"}},
			encoded(map[int]string{12: "z\x05https"}, "z\x06HTTP_Xz\x011z\x0cCONTENT_TYPEz\x01t")},
		{"a value in the tuple is latin-1 too", [][2]string{{"PATH_INFO", "/\xe9"}},
			encoded(map[int]string{2: "u\x03\x00\x00\x00/\xc3\xa9"}, "")},
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
			if want := environEntries(tt.pairs); !slices.Equal(back, want) {
				t.Errorf("DecodeEnviron = %q, want %q", back, want)
			}
		})
	}
}

// TestEnvironReuse checks Reset starts over and keeps the buffer, that
// Add works on a zero Environ, and that AppendTo appends.
func TestEnvironReuse(t *testing.T) {
	var e Environ
	e.Add("A", "1")
	e.Add("PATH_INFO", "/a")
	if got, want := e.AppendTo(nil), encoded(map[int]string{2: "z\x02/a"}, "z\x01Az\x011"); !bytes.Equal(got, want) {
		t.Fatalf("zero Environ: %q, want %q", got, want)
	}
	other := &e.other[0]
	e.Reset()
	e.Add("B", "2")
	if got, want := e.AppendTo(nil), encoded(nil, "z\x01Bz\x012"); !bytes.Equal(got, want) {
		t.Fatalf("after Reset: %q, want %q", got, want)
	}
	if &e.other[0] != other {
		t.Error("Reset did not keep the buffer")
	}
	var empty Environ
	if got, want := empty.AppendTo(nil), encoded(nil, ""); !bytes.Equal(got, want) {
		t.Fatalf("empty Environ: %q, want %q", got, want)
	}
	got := e.AppendTo([]byte("HEAD"))
	if want := append([]byte("HEAD"), encoded(nil, "z\x01Bz\x012")...); !bytes.Equal(got, want) {
		t.Fatalf("AppendTo after a prefix: %q, want %q", got, want)
	}
}

// BenchmarkEnviron encodes the environ of the bench's hello request.
func BenchmarkEnviron(b *testing.B) {
	var e Environ
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		e.Reset()
		for _, kv := range [][2]string{{"REQUEST_METHOD", "GET"}, {"SCRIPT_NAME", ""}, {"PATH_INFO", "/"},
			{"QUERY_STRING", ""}, {"RAW_URI", "/"}, {"SERVER_PROTOCOL", "HTTP/1.1"}, {"SERVER_SOFTWARE", "gorn/1"},
			{"REMOTE_ADDR", "127.0.0.1"}, {"REMOTE_PORT", "40000"}, {"SERVER_NAME", "127.0.0.1"},
			{"SERVER_PORT", "8000"}, {"HTTP_HOST", "127.0.0.1:8000"}, {"wsgi.url_scheme", "http"}} {
			e.Add(kv[0], kv[1])
		}
		buf = e.AppendTo(buf[:0])
	}
}

func TestDecodeEnvironErrors(t *testing.T) {
	u32 := func(n uint32) string { return string(binary.LittleEndian.AppendUint32(nil, n)) }
	nones := strings.Repeat("N", len(EnvironKeys))
	all := u32(allKeys)
	head := ")\x0f"
	// raw is a tuple of the given values (all the keys'), other entries and mask.
	raw := func(values, other, mask string) string { return head + values + "{" + other + "0i" + mask }
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"the old dict", "{z\x01az\x01b0"},
		{"tuple of 14", ")\x0e" + nones + "{0i" + all},
		{"tuple of 16", ")\x10" + nones + "{0i" + all + "N"},
		{"a list", "[\x0f\x00\x00\x00" + nones + "{0i" + all},
		{"tuple cut in its values", head + "NNN"},
		{"int for a value", raw("i\x01\x00\x00\x00"+nones[1:], "", u32(allKeys&^1))},
		{"interned ascii value", raw("Z\x01a"+nones[1:], "", u32(allKeys&^1))},
		{"non-ascii in a z value", raw("z\x01\xe9"+nones[1:], "", u32(allKeys&^1))},
		{"code point above 0xff in a value", raw("u\x02\x00\x00\x00\xc4\x80"+nones[1:], "", u32(allKeys&^1))},
		{"huge value length", head + "a" + u32(0xffffffff) + "abc"},
		{"no dict", head + nones + "0i" + all},
		{"dict without its end", head + nones + "{z\x01az\x01b"},
		{"key without value", raw(nones, "z\x01a", all)},
		{"other key cut", raw(nones, "z\x05abc", all)},
		{"long other key cut", raw(nones, "a"+u32(10)+"abc", all)},
		{"huge unicode length", head + nones + "{u" + u32(0x80000000) + "abc"},
		{"int as another value", raw(nones, "z\x01ai\x01\x00\x00\x00", all)},
		{"non-ascii in an a key", raw(nones, "a"+u32(1)+"\xe9z\x00", all)},
		{"invalid utf-8", raw(nones, "z\x01au\x01\x00\x00\x00\xe9", all)},
		{"surrogate", raw(nones, "z\x01au\x03\x00\x00\x00\xed\xa0\x80", all)},
		{"a key of the tuple among the others", raw(nones, "z\x09PATH_INFOz\x01/", all)},
		{"no mask", head + nones + "{0"},
		{"mask cut", head + nones + "{0i\x01"},
		{"mask of another type", head + nones + "{0z\x01a"},
		{"mask without a bit for a None", raw(nones, "", u32(allKeys&^1))},
		{"mask with a bit for a value", raw("z\x01a"+nones[1:], "", all)},
		{"mask with a bit past the keys", raw(nones, "", u32(allKeys|1<<20))},
		{"trailing bytes", raw(nones, "", all) + "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := DecodeEnviron([]byte(tt.in)); err == nil {
				t.Errorf("DecodeEnviron(%q) = %q, want an error", tt.in, got)
			}
		})
	}
	// The builder above makes what DecodeEnviron accepts, given valid parts.
	if _, err := DecodeEnviron([]byte(raw("z\x01a"+nones[1:], "z\x01kz\x01v", u32(allKeys&^1)))); err != nil {
		t.Errorf("a valid environ refused: %v", err)
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
