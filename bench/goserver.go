package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// The pure Go net/http server: the ceiling. It serves the same routes as
// apps/wsgi_app.py and apps/flask_app.py with the same responses, with no
// Python at all. It runs as this program re-executed with
// GORN_BENCH_ROLE=server and listens on $GORN_BENCH_ADDR.

var (
	hello       = []byte("Hello, World!")
	streamChunk = make([]byte, 64<<10)
)

func init() {
	for i := range streamChunk {
		streamChunk[i] = 'x'
	}
}

func goServerMain() int {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		writeHello(w)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		writeHello(w)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(16*len(streamChunk)))
		for range 16 {
			if _, err := w.Write(streamChunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// Read and write interleaved, as the WSGI app does.
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(max(r.ContentLength, 0), 10))
		buf := make([]byte, 64<<10)
		_, _ = io.CopyBuffer(w, r.Body, buf)
	})
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		b, _ := json.Marshal(map[string]any{"message": "Hello, World!", "items": []int{1, 2, 3}, "ok": true})
		b = append(b, '\n')
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	})
	srv := &http.Server{Addr: os.Getenv("GORN_BENCH_ADDR"), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		os.Stderr.WriteString("go server: " + err.Error() + "\n")
		return 1
	}
	return 0
}

func writeHello(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", "13")
	_, _ = w.Write(hello)
}
