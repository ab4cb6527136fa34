package master

import (
	"cmp"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gorn-project/gorn/config"
)

// --reload (development): the master polls the app's Python files and the
// --reload-extra-file files, and reloads the workers (as on HUP) when one
// changes, is added or is removed. gunicorn's workers watch the modules
// they have imported; gorn's master cannot see into the runtimes, so it
// watches the source trees instead: --chdir (or the start directory) and
// --pythonpath, less virtual environments, hidden directories,
// __pycache__ and node_modules.

// watchInterval is how often --reload looks at the files.
const watchInterval = time.Second

// watchLimit bounds the Python files --reload watches, and walkLimit the
// directory entries it looks at to find them (a start directory of / would
// otherwise have it walk /proc and /sys every second); a tree bigger than
// either is cut short, with a warning, so polling stays cheap.
const (
	watchLimit = 20000
	walkLimit  = 200000
)

// fileStamp is what tells one version of a file from the next.
type fileStamp struct {
	mod  time.Time
	size int64
}

// reloadEvent tells Run's loop that a watched file changed.
type reloadEvent struct{ path string }

// watchSet is the files --reload watches: the Python files under roots and
// the extra files.
type watchSet struct {
	roots []string
	extra []string
	// maxFiles and maxEntries cut the walk short: watchLimit and
	// walkLimit (0 means those).
	maxFiles, maxEntries int
}

// snapshot stamps every watched file; full says the limit was reached.
func (w watchSet) snapshot() (files map[string]fileStamp, full bool) {
	files = make(map[string]fileStamp)
	maxFiles, maxEntries := cmp.Or(w.maxFiles, watchLimit), cmp.Or(w.maxEntries, walkLimit)
	walked := 0
	for _, root := range w.roots {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // gone or unreadable: not watched
			}
			if walked++; walked > maxEntries {
				full = true
				return filepath.SkipAll
			}
			if d.IsDir() {
				if path != root && skipDir(path, d.Name()) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(d.Name(), ".py") {
				return nil
			}
			if len(files) >= maxFiles {
				full = true
				return filepath.SkipAll
			}
			if info, err := d.Info(); err == nil {
				files[path] = fileStamp{info.ModTime(), info.Size()}
			}
			return nil
		})
	}
	for _, path := range w.extra {
		if info, err := os.Stat(path); err == nil {
			files[path] = fileStamp{info.ModTime(), info.Size()}
		} else {
			files[path] = fileStamp{} // watched until it appears
		}
	}
	return files, full
}

// skipDir says a directory holds no source of the app's own: hidden ones
// (.git, .venv), caches, node_modules, virtual environments, and the
// kernel's /proc, /sys and /dev.
func skipDir(path, name string) bool {
	switch path {
	case "/proc", "/sys", "/dev": // not source, and costly to walk
		return true
	}
	if strings.HasPrefix(name, ".") || name == "__pycache__" || name == "node_modules" || name == "site-packages" {
		return true
	}
	_, err := os.Stat(filepath.Join(path, "pyvenv.cfg"))
	return err == nil
}

// changed returns the first path (in sorted order) that differs between
// two snapshots: modified, added or removed.
func changed(before, after map[string]fileStamp) (string, bool) {
	var paths []string
	for p, s := range after {
		if b, ok := before[p]; !ok || !b.mod.Equal(s.mod) || b.size != s.size {
			paths = append(paths, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		return "", false
	}
	slices.Sort(paths)
	return paths[0], true
}

// watchSet is what --reload watches for cfg: the current directory (the
// --chdir one), --pythonpath and --reload-extra-file.
func (m *Master) watchSet(cfg *config.Config) watchSet {
	var w watchSet
	if wd, err := os.Getwd(); err == nil {
		w.roots = append(w.roots, wd)
	}
	w.roots = append(w.roots, cfg.PythonPath...)
	for _, f := range cfg.ReloadExtraFiles {
		if abs, err := filepath.Abs(f); err == nil {
			f = abs
		}
		w.extra = append(w.extra, f)
	}
	return w
}

// watch polls the files until done is closed, and sends a reloadEvent for
// each round in which something changed. It is started by Run and ends
// with it.
func (m *Master) watch(w watchSet, done <-chan struct{}) {
	before, full := w.snapshot()
	if full {
		m.log.Warn("--reload watches only part of the tree: it is too big to poll every second", "python_files", watchLimit, "entries", walkLimit)
	}
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		after, _ := w.snapshot()
		path, ok := changed(before, after)
		before = after
		if !ok {
			continue
		}
		select {
		case m.events <- reloadEvent{path: path}:
		case <-done:
			return
		}
	}
}
