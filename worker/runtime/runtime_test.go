package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// interpreters returns the Python interpreters to run the runtime's unit
// tests under: /usr/bin/python3, python3 on PATH and pythonX.Y on PATH for
// every minor version gorn supports (3.9 on), and each pyenv build of those
// versions, so that a machine with several Pythons tests them all. Each once.
func interpreters(t *testing.T) []string {
	var out []string
	seen := map[string]bool{}
	// add keeps p under the name of the interpreter it runs: a pyenv shim
	// runs the build pyenv selects, or fails for a version not selected.
	add := func(p string) {
		real, err := exec.Command(p, "-c", "import sys; print(sys.executable)").Output()
		if err != nil {
			return
		}
		p = strings.TrimSpace(string(real))
		if abs, err := filepath.EvalSymlinks(p); err == nil {
			p = abs
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	names := []string{"/usr/bin/python3", "python3"}
	for minor := 9; minor <= 14; minor++ {
		names = append(names, fmt.Sprintf("python3.%d", minor))
	}
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			add(p)
		}
	}
	pyenv := os.Getenv("PYENV_ROOT")
	if pyenv == "" {
		home, _ := os.UserHomeDir()
		pyenv = filepath.Join(home, ".pyenv")
	}
	builds, _ := filepath.Glob(filepath.Join(pyenv, "versions", "3.*", "bin", "python3"))
	for _, p := range builds {
		var minor int
		version := filepath.Base(filepath.Dir(filepath.Dir(p)))
		if _, err := fmt.Sscanf(version, "3.%d", &minor); err == nil && minor >= 9 {
			add(p)
		}
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
