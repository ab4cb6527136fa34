package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

// The mixed workload's load generator. wrk cannot report latencies per
// path, so this small client does: a fixed number of connections, each
// sending one request at a time with keep-alive (reconnecting when the server
// closes), for a bounded duration; each request is independently slow
// (GET /sleep, 100 ms in the app) with probability SlowPercent/100, else fast
// (GET /). It runs as this program re-executed with GORN_BENCH_ROLE=loadgen,
// pinned to the load core; its configuration is the JSON in
// $GORN_BENCH_LOADGEN and it prints a loadgenResult as JSON.

type loadgenConfig struct {
	Addr        string        `json:"addr"`
	Connections int           `json:"connections"`
	Duration    time.Duration `json:"duration"`
	SlowPercent int           `json:"slow_percent"`
	Seed        uint64        `json:"seed"`
}

type loadgenResult struct {
	Fast     int           `json:"fast"`
	Slow     int           `json:"slow"`
	Errors   int           `json:"errors"`
	Elapsed  time.Duration `json:"elapsed"`
	FastP50  time.Duration `json:"fast_p50"`
	FastP99  time.Duration `json:"fast_p99"`
	SlowP50  time.Duration `json:"slow_p50"`
	SlowP99  time.Duration `json:"slow_p99"`
	FirstErr string        `json:"first_error,omitempty"`
}

func loadgenMain() int {
	var cfg loadgenConfig
	if err := json.Unmarshal([]byte(os.Getenv("GORN_BENCH_LOADGEN")), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: bad $GORN_BENCH_LOADGEN:", err)
		return 2
	}
	res := runLoad(cfg)
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

func runLoad(cfg loadgenConfig) loadgenResult {
	type connResult struct {
		fast, slow []time.Duration
		errors     int
		firstErr   error
	}
	results := make([]connResult, cfg.Connections)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for i := range cfg.Connections {
		wg.Go(func() {
			r := &results[i]
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
			var conn net.Conn
			var br *bufio.Reader
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			for time.Now().Before(deadline) {
				slow := rng.IntN(100) < cfg.SlowPercent
				path := "/"
				if slow {
					path = "/sleep"
				}
				if conn == nil {
					c, err := net.DialTimeout("tcp", cfg.Addr, 5*time.Second)
					if err != nil {
						r.errors++
						r.firstErr = cmpErr(r.firstErr, err)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					conn, br = c, bufio.NewReader(c)
				}
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				t0 := time.Now()
				_, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gorn-bench\r\n\r\n", path, cfg.Addr)
				var resp *http.Response
				if err == nil {
					resp, err = http.ReadResponse(br, nil)
				}
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("GET %s: %s", path, resp.Status)
					}
				}
				d := time.Since(t0)
				if err != nil {
					r.errors++
					r.firstErr = cmpErr(r.firstErr, err)
					conn.Close()
					conn = nil
					continue
				}
				if slow {
					r.slow = append(r.slow, d)
				} else {
					r.fast = append(r.fast, d)
				}
				if resp.Close {
					conn.Close()
					conn = nil
				}
			}
		})
	}
	wg.Wait()
	var out loadgenResult
	out.Elapsed = time.Since(start)
	var fast, slow []time.Duration
	for _, r := range results {
		fast = append(fast, r.fast...)
		slow = append(slow, r.slow...)
		out.Errors += r.errors
		if r.firstErr != nil && out.FirstErr == "" {
			out.FirstErr = r.firstErr.Error()
		}
	}
	out.Fast, out.Slow = len(fast), len(slow)
	out.FastP50, out.FastP99 = percentile(fast, 50), percentile(fast, 99)
	out.SlowP50, out.SlowP99 = percentile(slow, 50), percentile(slow, 99)
	return out
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// percentile returns the p-th percentile (nearest rank) of ds, 0 if empty.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100 // ceil(p/100 * n)
	return s[max(rank, 1)-1]
}
