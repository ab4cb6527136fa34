package logs

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

var stamp = time.Date(2026, 11, 24, 8, 15, 20, 123456789, time.FixedZone("", 0))

func TestParseLevel(t *testing.T) {
	tests := []struct {
		name string
		want slog.Level
	}{
		{"debug", slog.LevelDebug},
		{"info", slog.LevelInfo},
		{"warning", slog.LevelWarn},
		{"warn", slog.LevelWarn},
		{"WARNING", slog.LevelWarn},
		{"error", slog.LevelError},
		{"Error", slog.LevelError},
		{"critical", LevelCritical},
		{"CRITICAL", LevelCritical},
		{"", slog.LevelInfo},
		{"verbose", slog.LevelInfo},
	}
	for _, tt := range tests {
		if got := ParseLevel(tt.name); got != tt.want {
			t.Errorf("ParseLevel(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestHandlerFormat(t *testing.T) {
	tests := []struct {
		name  string
		time  time.Time
		level slog.Level
		msg   string
		attrs []slog.Attr
		with  []slog.Attr // added with WithAttrs
		want  string
	}{
		{
			name: "info", time: stamp, level: slog.LevelInfo, msg: "Booting worker with pid: 1235",
			want: "[2026-11-24 08:15:20 +0000] [1234] [INFO] Booting worker with pid: 1235\n",
		},
		{
			name: "zone offset", time: stamp.In(time.FixedZone("", -(5*3600 + 30*60))), level: slog.LevelInfo, msg: "x",
			want: "[2026-11-24 02:45:20 -0530] [1234] [INFO] x\n",
		},
		{name: "debug", time: stamp, level: slog.LevelDebug, msg: "m", want: "[2026-11-24 08:15:20 +0000] [1234] [DEBUG] m\n"},
		{name: "below debug", time: stamp, level: slog.LevelDebug - 4, msg: "m", want: "[2026-11-24 08:15:20 +0000] [1234] [DEBUG] m\n"},
		{name: "between info and warning", time: stamp, level: slog.LevelInfo + 2, msg: "m", want: "[2026-11-24 08:15:20 +0000] [1234] [INFO] m\n"},
		{name: "warning", time: stamp, level: slog.LevelWarn, msg: "m", want: "[2026-11-24 08:15:20 +0000] [1234] [WARNING] m\n"},
		{name: "error", time: stamp, level: slog.LevelError, msg: "m", want: "[2026-11-24 08:15:20 +0000] [1234] [ERROR] m\n"},
		{name: "critical", time: stamp, level: LevelCritical, msg: "WORKER TIMEOUT (pid:7)", want: "[2026-11-24 08:15:20 +0000] [1234] [CRITICAL] WORKER TIMEOUT (pid:7)\n"},
		{name: "above critical", time: stamp, level: LevelCritical + 4, msg: "m", want: "[2026-11-24 08:15:20 +0000] [1234] [CRITICAL] m\n"},
		{
			name: "attrs", time: stamp, level: slog.LevelInfo, msg: "Worker ready",
			attrs: []slog.Attr{slog.Int("pid", 42), slog.String("python", "/usr/bin/python3"), slog.Bool("ok", true), slog.Duration("took", 1500*time.Millisecond)},
			want:  "[2026-11-24 08:15:20 +0000] [1234] [INFO] Worker ready pid=42 python=/usr/bin/python3 ok=true took=1.5s\n",
		},
		{
			name: "quoting", time: stamp, level: slog.LevelError, msg: "m",
			attrs: []slog.Attr{
				slog.String("space", "a b"),
				slog.String("empty", ""),
				slog.String("quote", `say "hi"`),
				slog.String("equals", "a=b"),
				slog.String("tab", "a\tb"),
				slog.String("newline", "a\nb"),
				slog.String("cr", "a\rb"),
				slog.String("nul", "a\x00b"),
				slog.String("unicode", "héllo"),
				slog.Any("err", errors.New("connection refused")),
			},
			want: `[2026-11-24 08:15:20 +0000] [1234] [ERROR] m space="a b" empty="" quote="say \"hi\"" equals="a=b" tab="a\tb" newline="a\nb" cr="a\rb" nul="a\x00b" unicode=héllo err="connection refused"` + "\n",
		},
		{
			name: "traceback on its own lines", time: stamp, level: slog.LevelError, msg: "Exception in worker process",
			attrs: []slog.Attr{slog.String("traceback", "Traceback (most recent call last):\n  File \"app.py\", line 1, in <module>\nImportError: no\n\n")},
			want:  "[2026-11-24 08:15:20 +0000] [1234] [ERROR] Exception in worker process\nTraceback (most recent call last):\n  File \"app.py\", line 1, in <module>\nImportError: no\n",
		},
		{
			name: "with attrs first", time: stamp, level: slog.LevelWarn, msg: "m",
			with:  []slog.Attr{slog.String("worker", "1"), {}},
			attrs: []slog.Attr{slog.String("uri", "/x y")},
			want:  `[2026-11-24 08:15:20 +0000] [1234] [WARNING] m worker=1 uri="/x y"` + "\n",
		},
		{
			name: "empty attr skipped", time: stamp, level: slog.LevelInfo, msg: "m",
			attrs: []slog.Attr{{}, slog.Int("n", 1)},
			want:  "[2026-11-24 08:15:20 +0000] [1234] [INFO] m n=1\n",
		},
		{
			name: "log valuer resolved", time: stamp, level: slog.LevelInfo, msg: "m",
			attrs: []slog.Attr{slog.Any("v", valuer("a b"))},
			want:  `[2026-11-24 08:15:20 +0000] [1234] [INFO] m v="a b"` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			var h slog.Handler = NewHandler(&buf, slog.LevelDebug-8, 1234)
			if tt.with != nil {
				h = h.WithAttrs(tt.with)
			}
			r := slog.NewRecord(tt.time, tt.level, tt.msg, 0)
			r.AddAttrs(tt.attrs...)
			if err := h.Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

type valuer string

func (v valuer) LogValue() slog.Value { return slog.StringValue(string(v)) }

func TestHandlerWithAttrsDoesNotLeak(t *testing.T) {
	var buf bytes.Buffer
	base := NewHandler(&buf, slog.LevelInfo, 1)
	slog.New(base.WithAttrs([]slog.Attr{slog.String("a", "1")})).Info("first")
	slog.New(base).Info("second")
	lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	if len(lines) != 2 || !bytes.HasSuffix(lines[0], []byte("first a=1")) || !bytes.HasSuffix(lines[1], []byte("[INFO] second")) {
		t.Errorf("got %q", buf.String())
	}
}

func TestHandlerLevelFiltering(t *testing.T) {
	line := regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[99\] \[([A-Z]+)\] (\w+)$`)
	tests := []struct {
		level string
		want  []string // messages logged, in order
	}{
		{"debug", []string{"debug", "info", "warning", "error", "critical"}},
		{"info", []string{"info", "warning", "error", "critical"}},
		{"warning", []string{"warning", "error", "critical"}},
		{"error", []string{"error", "critical"}},
		{"critical", []string{"critical"}},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			var buf bytes.Buffer
			h := NewHandler(&buf, ParseLevel(tt.level), 99)
			log := slog.New(h)
			ctx := context.Background()
			log.Debug("debug")
			log.Info("info")
			log.Warn("warning")
			log.Error("error")
			log.Log(ctx, LevelCritical, "critical")
			var got []string
			for _, l := range bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n")) {
				if len(l) == 0 {
					continue
				}
				m := line.FindSubmatch(l)
				if m == nil {
					t.Fatalf("line %q not in gunicorn format", l)
				}
				if want := bytes.ToUpper(m[2]); !bytes.Equal(m[1], want) {
					t.Errorf("level name %s for message %s", m[1], m[2])
				}
				got = append(got, string(m[2]))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("logged %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("logged %q, want %q", got, tt.want)
				}
			}
			if h.Enabled(ctx, ParseLevel(tt.level)-1) {
				t.Errorf("Enabled below %s", tt.level)
			}
		})
	}
}

func TestHandlerZeroTime(t *testing.T) {
	var buf bytes.Buffer
	h := NewHandler(&buf, slog.LevelInfo, 5)
	before := time.Now().Truncate(time.Second)
	if err := h.Handle(context.Background(), slog.NewRecord(time.Time{}, slog.LevelInfo, "m", 0)); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got, err := time.Parse("[2006-01-02 15:04:05 -0700]", buf.String()[:len("[2006-01-02 15:04:05 -0700]")])
	if err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if got.Before(before) || got.After(after) {
		t.Errorf("zero record time stamped %v, want now (%v..%v)", got, before, after)
	}
}

func TestAppendAccess(t *testing.T) {
	full := AccessEntry{
		RemoteAddr: "127.0.0.1",
		Time:       stamp,
		Method:     "GET",
		RequestURI: "/a?b=1",
		Proto:      "HTTP/1.1",
		Status:     200,
		Bytes:      12,
		Referer:    "http://example.com/",
		UserAgent:  "curl/8.5.0",
	}
	tests := []struct {
		name string
		edit func(e *AccessEntry)
		want string
	}{
		{
			name: "full",
			want: `127.0.0.1 - - [24/Nov/2026:08:15:20 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "http://example.com/" "curl/8.5.0"` + "\n",
		},
		{
			name: "zone",
			edit: func(e *AccessEntry) { e.Time = stamp.In(time.FixedZone("", 2*3600)) },
			want: `127.0.0.1 - - [24/Nov/2026:10:15:20 +0200] "GET /a?b=1 HTTP/1.1" 200 12 "http://example.com/" "curl/8.5.0"` + "\n",
		},
		{
			name: "empty fields and zero bytes",
			edit: func(e *AccessEntry) { e.RemoteAddr, e.Referer, e.UserAgent, e.Bytes, e.Status = "", "", "", 0, 304 },
			want: `- - - [24/Nov/2026:08:15:20 +0000] "GET /a?b=1 HTTP/1.1" 304 0 "-" "-"` + "\n",
		},
		{
			name: "client gone",
			edit: func(e *AccessEntry) { e.Status, e.Bytes = 499, 0 },
			want: `127.0.0.1 - - [24/Nov/2026:08:15:20 +0000] "GET /a?b=1 HTTP/1.1" 499 - "http://example.com/" "curl/8.5.0"` + "\n",
		},
		{
			name: "large body",
			edit: func(e *AccessEntry) { e.Bytes = 10 << 30 },
			want: `127.0.0.1 - - [24/Nov/2026:08:15:20 +0000] "GET /a?b=1 HTTP/1.1" 200 10737418240 "http://example.com/" "curl/8.5.0"` + "\n",
		},
		{
			name: "quotes and backslashes",
			edit: func(e *AccessEntry) { e.UserAgent, e.Referer = `a "quoted" agent`, `c:\dir` },
			want: `127.0.0.1 - - [24/Nov/2026:08:15:20 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "c:\\dir" "a \"quoted\" agent"` + "\n",
		},
		{
			name: "control bytes cannot forge a line",
			edit: func(e *AccessEntry) {
				e.UserAgent = "x\n127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"y"
				e.Referer = "\r\t\x00\x1b\x7f"
			},
			want: `127.0.0.1 - - [24/Nov/2026:08:15:20 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "\x0d\x09\x00\x1b\x7f" "x\x0a127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"y"` + "\n",
		},
		{
			name: "request line escaped",
			edit: func(e *AccessEntry) { e.Method, e.RequestURI = "GET", "/\"x\"?q=\\" },
			want: `127.0.0.1 - - [24/Nov/2026:08:15:20 +0000] "GET /\"x\"?q=\\ HTTP/1.1" 200 12 "http://example.com/" "curl/8.5.0"` + "\n",
		},
		{
			name: "a refused request's line, escaped",
			edit: func(e *AccessEntry) { e.RequestLine, e.Status = "GET /bad\x01\"x\" HTTP/1.1", 400 },
			want: `127.0.0.1 - - [24/Nov/2026:08:15:20 +0000] "GET /bad\x01\"x\" HTTP/1.1" 400 12 "http://example.com/" "curl/8.5.0"` + "\n",
		},
		{
			name: "non-ASCII bytes kept",
			edit: func(e *AccessEntry) { e.UserAgent = "naïve" },
			want: `127.0.0.1 - - [24/Nov/2026:08:15:20 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "http://example.com/" "naïve"` + "\n",
		},
		{
			name: "basic auth user",
			edit: func(e *AccessEntry) { e.User = `al"ice` },
			want: `127.0.0.1 - al\"ice [24/Nov/2026:08:15:20 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "http://example.com/" "curl/8.5.0"` + "\n",
		},
		{
			name: "ipv6 client",
			edit: func(e *AccessEntry) { e.RemoteAddr = "::1" },
			want: `::1 - - [24/Nov/2026:08:15:20 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "http://example.com/" "curl/8.5.0"` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := full
			if tt.edit != nil {
				tt.edit(&e)
			}
			prefix := []byte("previous\n")
			got := AppendAccess(append([]byte(nil), prefix...), &e)
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("AppendAccess overwrote dst: %q", got)
			}
			if s := string(got[len(prefix):]); s != tt.want {
				t.Errorf("got  %q\nwant %q", s, tt.want)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	for _, path := range []string{"", "-"} {
		f, err := Open(path, os.Stderr)
		if err != nil || f != os.Stderr {
			t.Errorf("Open(%q) = %v, %v; want os.Stderr", path, f, err)
		}
	}
	path := filepath.Join(t.TempDir(), "error.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("new\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := os.ReadFile(path); string(b) != "old\nnew\n" {
		t.Errorf("log file holds %q, want it appended to", b)
	}
	created := filepath.Join(t.TempDir(), "access.log")
	f, err = Open(created, os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, err := os.Stat(created); err != nil || fi.Mode().Perm()&0o600 != 0o600 {
		t.Errorf("created log file: %v, %v", fi, err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "x.log"), os.Stderr); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

// TestFileSwitch switches a File between the standard stream and files,
// and checks where each write lands and that an unopenable path changes
// nothing.
func TestFileSwitch(t *testing.T) {
	dir := t.TempDir()
	std, err := os.Create(filepath.Join(dir, "std"))
	if err != nil {
		t.Fatal(err)
	}
	defer std.Close()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	f, err := OpenFile("-", std)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		to      string // "" writes without switching
		wantErr bool
		write   string
	}{
		{write: "1"},
		{to: a, write: "2"},
		{to: b, write: "3"},
		{to: filepath.Join(dir, "missing", "c.log"), wantErr: true, write: "4"},
		{to: "-", write: "5"},
		{to: a, write: "6"},
	}
	for _, st := range steps {
		if st.to != "" {
			if err := f.Switch(st.to); (err != nil) != st.wantErr {
				t.Fatalf("Switch(%q) = %v, want an error: %v", st.to, err, st.wantErr)
			}
		}
		if _, err := f.Write([]byte(st.write)); err != nil {
			t.Fatalf("writing %q: %v", st.write, err)
		}
	}
	if f.Path() != a {
		t.Errorf("Path() = %q, want %q", f.Path(), a)
	}
	for path, want := range map[string]string{std.Name(): "15", a: "26", b: "34"} {
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s holds %q (%v), want %q", filepath.Base(path), got, err, want)
		}
	}
	if _, err := std.Write([]byte("")); err != nil {
		t.Errorf("the standard stream was closed: %v", err)
	}
}
