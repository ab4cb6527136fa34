package protocol

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// startPayload is a Start frame's payload: head, then body.
func startPayload(head, body string) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(head))), head+body...)
}

func TestHeadCache(t *testing.T) {
	hello := "200 OK\x00Content-Type\x00text/plain\x00Content-Length\x005"
	long := "200 OK\x00X-Long\x00" + strings.Repeat("v", HeadCacheMaxHead)
	distinct := func(i int) string { return fmt.Sprintf("200 OK\x00ETag\x00\"%d\"", i) }
	cases := []struct {
		name    string
		heads   []string // sent in this order, each with body "hello"
		wantErr []bool   // per head, nil: none refused
		n       int      // heads kept afterwards
		off     bool
	}{
		{"a head seen again is kept once", []string{hello, hello, hello}, nil, 1, false},
		{"a refused head is refused again and not kept", []string{"20 OK", "20 OK", "200 OK\x00Bad Name\x00v"}, []bool{true, true, true}, 0, false},
		{"a long head is not kept", []string{long, long}, nil, 0, false},
		{"heads that never repeat turn it off", func() (h []string) {
			for i := range HeadCacheSize + 1 {
				h = append(h, distinct(i))
			}
			return h
		}(), nil, 0, true},
		{"heads that repeat make it start over when full", func() (h []string) {
			for i := range HeadCacheSize {
				h = append(h, distinct(i), distinct(i))
			}
			return append(h, distinct(HeadCacheSize))
		}(), nil, 1, false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			var c HeadCache
			for i, head := range tt.heads {
				p := startPayload(head, "hello")
				want, wantBody, wantErr := ParseStart(p)
				got, body, err := c.ParseStart(p)
				if (err != nil) != (tt.wantErr != nil && tt.wantErr[i]) || (err == nil) != (wantErr == nil) {
					t.Fatalf("head %d %q: error %v, ParseStart's %v", i, head, err, wantErr)
				}
				if err != nil {
					continue
				}
				if got.Status != want.Status || got.Code != want.Code || !slices.Equal(got.Headers, want.Headers) || string(body) != string(wantBody) {
					t.Fatalf("head %d: %+v %q, want ParseStart's %+v %q", i, got, body, want, wantBody)
				}
			}
			if n, off := c.Len(); n != tt.n || off != tt.off {
				t.Errorf("Len() = %d, %v; want %d, %v", n, off, tt.n, tt.off)
			}
		})
	}
}

// TestHeadCacheShares checks that a head seen again comes from the cache
// (the same Headers array), not from a new decoding, and that a cache that
// is off decodes every time.
func TestHeadCacheShares(t *testing.T) {
	var c HeadCache
	p := startPayload("200 OK\x00Content-Length\x000", "")
	a, _, _ := c.ParseStart(p)
	b, _, _ := c.ParseStart(p)
	if &a.Headers[0] != &b.Headers[0] {
		t.Error("the second ParseStart of a head decoded it again")
	}
	c.off, c.heads = true, nil
	d, _, _ := c.ParseStart(p)
	e, _, _ := c.ParseStart(p)
	if &d.Headers[0] == &e.Headers[0] {
		t.Error("a cache that is off returned a kept head")
	}
}

// TestHeadCacheConcurrent runs the cache from several goroutines, for the
// race detector, through fills, start-overs and hits.
func TestHeadCacheConcurrent(t *testing.T) {
	var c HeadCache
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				head := fmt.Sprintf("200 OK\x00X-N\x00%d", (i*7+g)%300)
				want, _, _ := ParseStart(startPayload(head, ""))
				got, _, err := c.ParseStart(startPayload(head, ""))
				if err != nil || !slices.Equal(got.Headers, want.Headers) {
					t.Errorf("%q: %+v, %v; want %+v", head, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkHeadCache is BenchmarkParseStart's head, seen again.
func BenchmarkHeadCache(b *testing.B) {
	var c HeadCache
	p := startPayload("200 OK\x00Content-Type\x00text/plain\x00Content-Length\x0013", "Hello, World!")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.ParseStart(p); err != nil {
			b.Fatal(err)
		}
	}
}
