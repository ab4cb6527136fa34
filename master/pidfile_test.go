package master

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestPidFile(t *testing.T) {
	dir := t.TempDir()
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	path := filepath.Join(dir, "gorn.pid")
	p, err := writePidFile(path+".2", 1234)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(path + ".2"); got != "1234\n" {
		t.Fatalf("pid file = %q, want 1234", got)
	}
	if fi, err := os.Stat(path + ".2"); err != nil || fi.Mode().Perm()&0o044 != 0o044 {
		t.Errorf("pid file mode = %v, %v; want readable by all", fi.Mode(), err)
	}
	// The old master's file, written over by nobody else: promotion
	// replaces it.
	if err := os.WriteFile(path, []byte("999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.rename(path); err != nil {
		t.Fatal(err)
	}
	if got := read(path); got != "1234\n" {
		t.Errorf("after rename the pid file = %q, want 1234", got)
	}
	if _, err := os.Stat(path + ".2"); !os.IsNotExist(err) {
		t.Errorf("FILE.2 still exists after rename: %v", err)
	}
	// A file another master has written since is not removed.
	if err := os.WriteFile(path, []byte(strconv.Itoa(5678)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.remove()
	if got := read(path); got != "5678\n" {
		t.Errorf("remove deleted another master's pid file (now %q)", got)
	}
	os.WriteFile(path, []byte("1234\n"), 0o644)
	p.remove()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("remove left the master's own pid file: %v", err)
	}
	var none *pidFile
	none.remove()
	if err := none.rename(path); err != nil {
		t.Errorf("nil rename = %v", err)
	}
	if _, err := writePidFile(filepath.Join(dir, "missing", "gorn.pid"), 1); err == nil {
		t.Errorf("writing a pid file in a missing directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}
