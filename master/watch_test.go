package master

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestChanged(t *testing.T) {
	t0 := time.Unix(1000, 0)
	t1 := t0.Add(time.Nanosecond)
	base := map[string]fileStamp{"/a.py": {t0, 10}, "/b.py": {t0, 20}}
	tests := []struct {
		name  string
		after map[string]fileStamp
		want  string
	}{
		{"same", map[string]fileStamp{"/a.py": {t0, 10}, "/b.py": {t0, 20}}, ""},
		{"modified a nanosecond later", map[string]fileStamp{"/a.py": {t0, 10}, "/b.py": {t1, 20}}, "/b.py"},
		{"same time, new size", map[string]fileStamp{"/a.py": {t0, 11}, "/b.py": {t0, 20}}, "/a.py"},
		{"added", map[string]fileStamp{"/a.py": {t0, 10}, "/b.py": {t0, 20}, "/c.py": {t0, 1}}, "/c.py"},
		{"removed", map[string]fileStamp{"/b.py": {t0, 20}}, "/a.py"},
		{"several: the first by name", map[string]fileStamp{"/a.py": {t1, 10}, "/b.py": {t1, 20}}, "/a.py"},
	}
	for _, tt := range tests {
		got, ok := changed(base, tt.after)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("%s: changed = %q, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
}

func TestWatchSetSnapshot(t *testing.T) {
	root := t.TempDir()
	write := func(rel string) string {
		t.Helper()
		path := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x = 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	watched := []string{
		write("app.py"),
		write("shop/models.py"),
		write("shop/views/list.py"),
	}
	for _, rel := range []string{
		"README.md", "shop/template.html", // not Python
		".git/hooks/x.py", ".venv/lib/x.py", "__pycache__/app.py", "shop/__pycache__/models.py",
		"node_modules/x.py", "env/lib/python3.11/site-packages/pkg/x.py",
		"venv/lib/x.py", "venv/pyvenv.cfg", // a virtual environment, by its pyvenv.cfg
	} {
		write(rel)
	}
	extra := filepath.Join(root, "settings.toml")
	missing := filepath.Join(root, "later.txt")
	if err := os.WriteFile(extra, []byte("a = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := watchSet{roots: []string{root}, extra: []string{extra, missing}}
	files, full := w.snapshot()
	if full {
		t.Errorf("snapshot says the limit was reached")
	}
	var got []string
	for p := range files {
		got = append(got, p)
	}
	slices.Sort(got)
	want := append(watched, extra, missing)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("watched\n%q\nwant\n%q", got, want)
	}
	if !files[missing].mod.IsZero() {
		t.Errorf("a missing extra file has a stamp: %+v", files[missing])
	}
	// Creating the missing extra file is a change.
	if err := os.WriteFile(missing, []byte("now\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	after, _ := w.snapshot()
	if p, ok := changed(files, after); !ok || p != missing {
		t.Errorf("changed after creating %s = %q, %v", missing, p, ok)
	}
}

// TestWatchSetLimits: a tree too big to poll every second is cut short,
// by its Python files or by the entries walked to find them.
func TestWatchSetLimits(t *testing.T) {
	root := t.TempDir()
	for i := range 30 {
		name := filepath.Join(root, "d", string(rune('a'+i%26))+strconv.Itoa(i))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		ext := ".py"
		if i%2 == 1 {
			ext = ".txt"
		}
		if err := os.WriteFile(name+ext, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		maxFiles, maxEntries int
		full                 bool
		atMost               int
	}{
		{0, 0, false, 15}, // the defaults: all 15 Python files
		{10, 0, true, 10}, // cut by Python files
		{0, 12, true, 12}, // cut by entries walked (the root and d count too)
		{15, 100, false, 15},
	}
	for _, tt := range tests {
		w := watchSet{roots: []string{root}, maxFiles: tt.maxFiles, maxEntries: tt.maxEntries}
		files, full := w.snapshot()
		if full != tt.full || len(files) > tt.atMost || (!tt.full && len(files) != tt.atMost) {
			t.Errorf("limits %d/%d: %d files, full %v; want at most %d, full %v", tt.maxFiles, tt.maxEntries, len(files), full, tt.atMost, tt.full)
		}
	}
	if !skipDir("/proc", "proc") || skipDir("/srv/proc", "proc") {
		t.Errorf("skipDir: /proc must be skipped, /srv/proc not")
	}
}
