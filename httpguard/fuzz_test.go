package httpguard

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/gorn-project/gorn/httpguard/corpus"
)

// addCorpus seeds a fuzz target with the request corpus.
func addCorpus(f *testing.F, add func(raw []byte)) {
	cases, err := corpus.Load("../testdata/requests")
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range cases {
		add(c.Raw)
	}
}

// differential reads what the guard passes with net/http's own parser:
// every request the guard lets through must be one net/http accepts, and
// every body it lets through one net/http reads without an error of its
// own. It never panics.
func differential(t *testing.T, cfg *Config, raw []byte, step int) {
	g := Wrap(&fakeConn{r: bytes.NewReader(raw), step: step}, cfg)
	br := bufio.NewReader(g)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if err == io.EOF {
				return
			}
			t.Fatalf("net/http refused a request the guard passed: %v\ninput %q", err, raw)
		}
		if _, _, ok := Rejected(req.Header); ok {
			if req.Method != "GET" || req.URL.Path != "/" {
				t.Fatalf("a rejection is not the synthetic request: %s %s", req.Method, req.URL)
			}
			return
		}
		_, err = io.Copy(io.Discard, req.Body)
		var be *BodyError
		switch {
		case errors.As(err, &be):
			return
		case errors.Is(err, io.ErrUnexpectedEOF):
			return // the input ended inside a body
		case err != nil:
			t.Fatalf("net/http refused a body the guard passed: %v\ninput %q", err, raw)
		}
	}
}

// FuzzGuard feeds arbitrary bytes to the guard, in reads of varying size.
func FuzzGuard(f *testing.F) {
	addCorpus(f, func(raw []byte) { f.Add(raw, uint8(0), false) })
	f.Fuzz(func(t *testing.T, raw []byte, step uint8, fold bool) {
		cfg := Defaults()
		cfg.PermitObsFold = fold
		cfg.Body = 1 << 20
		differential(t, &cfg, raw, int(step%16))
	})
}

// FuzzChunked fuzzes a chunked body and its trailers after a valid head.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "5;a=b;c=\"d e\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"0x5\r\nhello\r\n0\r\n\r\n", "5 ;a\r\nhello\r\n0\r\n\r\n", "5\r\nhelloX\r\n0\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n", "ffffffffffffffff\r\n", "1\r\na\r\n0\r\nContent-Length: 1\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(0))
	}
	const head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	f.Fuzz(func(t *testing.T, body []byte, step uint8) {
		raw := append([]byte(head), body...)
		raw = append(raw, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"...)
		differential(t, nil, raw, int(step%16))
	})
}

// FuzzCorpusParse checks the corpus file parser never panics.
func FuzzCorpusParse(f *testing.F) {
	f.Add("status: 200\n---\nGET / HTTP/1.1\\r\\n\\R{3}{a}\\x41\n")
	f.Add("status: 200 400\nenv: A=\\x\nbody: \\R{2}{\n---\n")
	f.Fuzz(func(t *testing.T, text string) {
		corpus.Parse("fuzz", text)
	})
}
