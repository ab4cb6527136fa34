package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary play the roles the suite re-executes itself
// for: the pure Go server and the mixed workload's load generator.
func TestMain(m *testing.M) {
	switch os.Getenv("GORN_BENCH_ROLE") {
	case "server":
		os.Exit(goServerMain())
	case "loadgen":
		os.Exit(loadgenMain())
	}
	os.Exit(m.Run())
}

// TestSmoke runs the suite in -quick mode (two 1-second runs of hello and
// upload against gorn, the pure Go server and whichever peers are installed)
// and checks that it prints a table row for every server, with numbers for
// gorn and the Go server, and the targets summary, and that the runs went
// round by round. It never asserts a speed.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("the benchmark smoke takes ~20 s; skipped under -short")
	}
	for _, tool := range []string{"wrk", "taskset", "/usr/bin/python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed; ./test installs it on Debian as root", tool)
			}
			t.Skipf("%s is not installed (apt-get install wrk); CI fails instead of skipping", tool)
		}
	}
	// Two runs each, to see them go round by round.
	opts, err := parseFlags([]string{"-quick", "-runs", "2"})
	if err != nil {
		t.Fatal(err)
	}
	var out, log bytes.Buffer
	opts.out, opts.log = &out, &log
	if raceEnabled {
		opts.gornBuildFlags = []string{"-race"} // shares the e2e tests' build
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := run(ctx, opts); err != nil {
		t.Fatalf("run: %v\nlog:\n%s\noutput:\n%s", err, log.String(), out.String())
	}
	t.Logf("quick suite took %s\n%s", time.Since(start).Round(time.Millisecond), out.String())
	got := out.String()
	for _, w := range []string{"hello", "upload"} {
		section := sectionOf(got, "## "+w+" ")
		if section == "" {
			t.Fatalf("no table for workload %s in:\n%s", w, got)
		}
		for _, s := range servers {
			row := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(s.name) + `( \([^|]*\))? \| (\d+|skipped: [^|]+) \|`)
			if !row.MatchString(section) {
				t.Errorf("%s: no row with req/s or a skip note for %s in:\n%s", w, s.name, section)
			}
		}
		// gorn and the Go ceiling need nothing but Python and Go: they must
		// have numbers (a failed run would show its error instead).
		for _, name := range []string{"gorn", "go-nethttp"} {
			// req/s, p50, p99, CPU µs/req, load %, idle, RSS, peak, errors.
			row := regexp.MustCompile(`(?m)^\| ` + name + ` \| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| ([1-9]\d*) \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+ \| `)
			if !row.MatchString(section) {
				t.Errorf("%s: no measured row for %s in:\n%s\nlog:\n%s", w, name, section, log.String())
			}
		}
	}
	// Every server's first run comes before any server's second.
	for _, w := range []string{"hello", "upload"} {
		runs := regexp.MustCompile(`(?m)^bench: `+w+` / (\S+): run (\d)/2:`).FindAllStringSubmatch(log.String(), -1)
		started := strings.Count(log.String(), "bench: "+w+" / ")
		started -= len(runs) // the lines left are the "starting" ones
		if len(runs) != 2*started {
			t.Errorf("%s: %d runs in the log for %d servers started, want 2 each:\n%s", w, len(runs), started, log.String())
		}
		second := false
		for _, r := range runs {
			second = second || r[2] == "2"
			if second && r[2] == "1" {
				t.Errorf("%s: %s's run 1 came after a run 2: runs are not round by round:\n%s", w, r[1], log.String())
			}
		}
		if !second {
			t.Errorf("%s: no second runs in the log:\n%s", w, log.String())
		}
	}
	if !strings.Contains(got, "## Targets (issue 6)") || !regexp.MustCompile(`(?m)^\| hello \| req/s ≥ 0.75× pure Go \| [\d.]+× \(go-nethttp\)( †)? \| (yes|\*\*no\*\*) \|$`).MatchString(got) {
		t.Errorf("no targets summary with gorn against the Go ceiling in:\n%s", got)
	}
}

// TestRoundOrder checks the order of runs within a round: every server
// once, and each round starting one server later.
func TestRoundOrder(t *testing.T) {
	tests := []struct {
		round, n int
		want     []int
	}{
		{round: 0, n: 1, want: []int{0}},
		{round: 3, n: 1, want: []int{0}},
		{round: 0, n: 5, want: []int{0, 1, 2, 3, 4}},
		{round: 1, n: 5, want: []int{1, 2, 3, 4, 0}},
		{round: 2, n: 5, want: []int{2, 3, 4, 0, 1}},
		{round: 5, n: 5, want: []int{0, 1, 2, 3, 4}},
		{round: 7, n: 3, want: []int{1, 2, 0}},
	}
	for _, tc := range tests {
		if got := roundOrder(tc.round, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("roundOrder(%d, %d) = %v, want %v", tc.round, tc.n, got, tc.want)
		}
	}
}

// sectionOf returns the part of s from the heading that starts with prefix up
// to the next "## " heading.
func sectionOf(s, prefix string) string {
	i := strings.Index(s, prefix)
	if i < 0 {
		return ""
	}
	rest := s[i+len(prefix):]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return s[i:i+len(prefix)] + rest
}

// TestSelection checks -only and -quick's choice of workloads and servers.
func TestSelection(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		workloads string
		servers   string
		wantErr   bool
	}{
		{name: "everything", args: nil, workloads: "hello,hello-close,flask,stream,upload,mixed", servers: "gorn,gunicorn-sync,gunicorn-gthread,uwsgi,go-nethttp"},
		{name: "quick", args: []string{"-quick"}, workloads: "hello,upload", servers: "gorn,gunicorn-sync,gunicorn-gthread,uwsgi,go-nethttp"},
		{name: "quick with a workload", args: []string{"-quick", "-only", "mixed"}, workloads: "mixed", servers: "gorn,gunicorn-sync,gunicorn-gthread,uwsgi,go-nethttp"},
		{name: "workload only", args: []string{"-only", "flask"}, workloads: "flask", servers: "gorn,gunicorn-sync,gunicorn-gthread,uwsgi,go-nethttp"},
		{name: "server pattern", args: []string{"-only", "gunicorn-*,gorn"}, workloads: "hello,hello-close,flask,stream,upload,mixed", servers: "gorn,gunicorn-sync,gunicorn-gthread"},
		{name: "both", args: []string{"-only", "hello*,uwsgi"}, workloads: "hello,hello-close", servers: "uwsgi"},
		{name: "unknown", args: []string{"-only", "nginx"}, wantErr: true},
		{name: "bad runs", args: []string{"-runs", "0"}, wantErr: true},
		{name: "stray argument", args: []string{"hello"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args)
			var ws []workload
			var ss []server
			if err == nil {
				ws, ss, err = selection(o)
			}
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var sn []string
			for _, s := range ss {
				sn = append(sn, s.name)
			}
			if got := strings.ReplaceAll(names(ws), ", ", ","); got != tc.workloads {
				t.Errorf("workloads %q, want %q", got, tc.workloads)
			}
			if got := strings.Join(sn, ","); got != tc.servers {
				t.Errorf("servers %q, want %q", got, tc.servers)
			}
		})
	}
}

// TestParseWrk checks the parsing of report.lua's line.
func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		rps     float64
		p99     time.Duration
		errors  int
		wantErr bool
	}{
		{name: "ok", out: "Running 1s test\nBENCH_RESULT requests=5000 duration_us=500000 bytes=1 p50_us=100 p99_us=2500 connect=0 read=2 write=0 status=1 timeout=0\n", rps: 10000, p99: 2500 * time.Microsecond, errors: 3},
		{name: "no line", out: "unable to connect", wantErr: true},
		{name: "no requests", out: "BENCH_RESULT requests=0 duration_us=500000 bytes=0 p50_us=0 p99_us=0 connect=9 read=0 write=0 status=0 timeout=0", wantErr: true},
		{name: "garbage", out: "BENCH_RESULT requests=x", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseWrk(tc.out)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error for %q", tc.out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.rps != tc.rps || r.p99 != tc.p99 || r.errors != tc.errors {
				t.Errorf("got rps %v p99 %v errors %d, want %v %v %d", r.rps, r.p99, r.errors, tc.rps, tc.p99, tc.errors)
			}
		})
	}
}

// TestLoadShare checks the load % column's arithmetic on real processes:
// one that spins and one that sleeps, each for about 0.3 s. The bounds are
// loose, as other test binaries may share the CPUs.
func TestLoadShare(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		min, max float64
	}{
		{"spinning", `end=$(($(date +%s%N) + 300000000)); while [ "$(date +%s%N)" -lt "$end" ]; do :; done`, 20, 105},
		{"sleeping", "sleep 0.3", 0, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", tc.script)
			start := time.Now()
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			if got := loadShare(cmd.ProcessState, time.Since(start)); got < tc.min || got > tc.max {
				t.Errorf("load share %.1f %%, want %v–%v %%", got, tc.min, tc.max)
			}
		})
	}
	if got := loadShare(nil, time.Second); got != 0 {
		t.Errorf("load share of no process = %v, want 0", got)
	}
}

// TestPercentileAndMedian checks the statistics the tables are made of.
func TestPercentileAndMedian(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    int
		want time.Duration
	}{
		{name: "empty", in: nil, p: 99, want: 0},
		{name: "one", in: ms(7), p: 50, want: 7 * time.Millisecond},
		{name: "p50 of 4", in: ms(4, 1, 3, 2), p: 50, want: 2 * time.Millisecond},
		{name: "p99 of 100", in: append(ms(100), make([]time.Duration, 99)...), p: 99, want: 0},
		{name: "p99 of 101 with two slow", in: append(ms(100, 100), make([]time.Duration, 99)...), p: 99, want: 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %d) = %v, want %v", tc.in, tc.p, got, tc.want)
			}
		})
	}
	r := &row{samples: []sample{{rps: 3, p99: 9}, {rps: 1, p99: 1}, {rps: 2, p99: 5}}}
	if m, _ := r.med(); m.rps != 2 || m.p99 != 5 {
		t.Errorf("median of 3 runs: rps %v p99 %v, want 2 and 5", m.rps, m.p99)
	}
	r.samples = append(r.samples, sample{rps: 4, p99: 7})
	if m, _ := r.med(); m.rps != 2.5 || m.p99 != 6 {
		t.Errorf("median of 4 runs: rps %v p99 %v, want 2.5 and 6", m.rps, m.p99)
	}
}

// TestRuntimeLoop runs bench/runtime_loop.py briefly, for a small response,
// a streamed one, an upload, app threads and the cycle collector's counts,
// so the tool keeps working with the runtime it measures: it must report
// the requests and depth it was asked for, and nothing else.
func TestRuntimeLoop(t *testing.T) {
	python := "/usr/bin/python3"
	if _, err := exec.LookPath(python); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	figures := `^%s requests, depth %s: runtime CPU [0-9.]+ us/request.*\n`
	for _, tc := range []struct {
		args []string
		want string // the output, a regexp
	}{
		{[]string{"--requests", "300"}, fmt.Sprintf(figures, "300", "32") + `$`},
		{[]string{"--requests", "20", "--path", "/stream"}, fmt.Sprintf(figures, "20", "32") + `$`},
		{[]string{"--requests", "20", "--path", "/stream", "--no-shared"}, fmt.Sprintf(figures, "20", "32") + `$`},
		{[]string{"--requests", "20", "--path", "/echo", "--body", "100000"}, fmt.Sprintf(figures, "20", "32") + `$`},
		{[]string{"--requests", "50", "--depth", "8", "--threads", "2"}, fmt.Sprintf(figures, "50", "8") + `$`},
		{[]string{"--requests", "50", "--gc"}, fmt.Sprintf(figures, "50", "32") +
			`cycle collector: generation 0: [0-9]+ collections, [0-9]+ objects freed; generation 1: .*; generation 2: .*\n$`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, python, append([]string{"runtime_loop.py"}, tc.args...)...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("runtime_loop.py %v: %v\n%s", tc.args, err, out)
		}
		if want := regexp.MustCompile(tc.want); !want.Match(out) {
			t.Errorf("runtime_loop.py %v printed %q, want it to match %s", tc.args, out, want)
		}
	}
}
