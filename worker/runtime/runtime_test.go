package runtime

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// interpreters returns the Python interpreters to run the runtime's unit
// tests under: /usr/bin/python3 and python3 on PATH, each once.
func interpreters(t *testing.T) []string {
	var out []string
	seen := map[string]bool{}
	for _, name := range []string{"/usr/bin/python3", "python3"} {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	if len(out) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("no python3 interpreter found")
		}
		t.Skip("no python3 interpreter found")
	}
	return out
}

// TestPythonRuntime runs test_gorn_runtime.py, the unit tests of the
// runtime's codec and WSGI objects, under every interpreter found.
func TestPythonRuntime(t *testing.T) {
	for _, py := range interpreters(t) {
		t.Run(py, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, py, "-B", "-m", "unittest", "-v", "test_gorn_runtime")
			cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONHASHSEED=0")
			var out bytes.Buffer
			cmd.Stdout = &out
			cmd.Stderr = &out
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("%s: the unit tests did not finish within 2 minutes:\n%s", py, out.String())
			}
			if err != nil {
				t.Fatalf("%s -m unittest test_gorn_runtime: %v\n%s", py, err, out.String())
			}
			if !bytes.Contains(out.Bytes(), []byte("\nOK")) {
				t.Fatalf("%s: no OK from unittest:\n%s", py, out.String())
			}
			t.Logf("%s:\n%s", py, lastLines(out.Bytes(), 3))
		})
	}
}

func lastLines(b []byte, n int) []byte {
	b = bytes.TrimRight(b, "\n")
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}
