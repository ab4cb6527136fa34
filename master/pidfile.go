package master

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// pidFile is the master's --pid file. A nil *pidFile is none: its
// methods do nothing.
type pidFile struct {
	path string
	pid  int
}

// writePidFile writes pid to path, whole or not at all: through a
// temporary file in the same directory, renamed over path.
func writePidFile(path string, pid int) (*pidFile, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".gorn-pid-*")
	if err != nil {
		return nil, fmt.Errorf("writing the pid file %s: %w", path, err)
	}
	_, err = fmt.Fprintf(tmp, "%d\n", pid)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("writing the pid file %s: %w", path, err)
	}
	return &pidFile{path: path, pid: pid}, nil
}

// rename moves the pid file to path (a promoted master's FILE.2 to FILE).
func (p *pidFile) rename(path string) error {
	if p == nil || p.path == path {
		return nil
	}
	if err := os.Rename(p.path, path); err != nil {
		return fmt.Errorf("renaming the pid file %s to %s: %w", p.path, path, err)
	}
	p.path = path
	return nil
}

// remove deletes the pid file if it still holds this master's pid: a file
// another master has written since is left alone.
func (p *pidFile) remove() {
	if p == nil {
		return
	}
	b, err := os.ReadFile(p.path)
	if err != nil {
		return
	}
	if n, err := strconv.Atoi(string(bytes.TrimSpace(b))); err == nil && n == p.pid {
		os.Remove(p.path)
	}
}
