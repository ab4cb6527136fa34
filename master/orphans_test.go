package master

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		line  string
		state byte
		ppid  int
		ok    bool
	}{
		{"42 (python3) Z 7 42 42 0 -1 4194564", 'Z', 7, true},
		{"42 (sleep) S 1 42 42 0 -1", 'S', 1, true},
		{"42 (gorn: worker [app]) R 9 1 1", 'R', 9, true},
		{"42 (a) Z 50) S 3 1 1", 'S', 3, true}, // a command name that fakes a state
		{"42 ()) Z 5 1", 'Z', 5, true},
		{"42 (x) Z 0", 'Z', 0, true},
		{"", 0, 0, false},
		{"42 python3 Z 7", 0, 0, false},
		{"42 (python3) Z", 0, 0, false},
		{"42 (python3) Z x", 0, 0, false},
		{"42 (python3) Z -3", 0, 0, false},
		{"42 (python3) ZZ 7", 0, 0, false},
		{"42 (python3) \x02 7", 0, 0, false},
		{"42 (python3) 9 7", 0, 0, false},
	} {
		state, ppid, ok := parseStat([]byte(tc.line))
		if state != tc.state || ppid != tc.ppid || ok != tc.ok {
			t.Errorf("parseStat(%q) = %q, %d, %v; want %q, %d, %v", tc.line, state, ppid, ok, tc.state, tc.ppid, tc.ok)
		}
	}
}

// TestStrayZombies reads proc trees made up for it: only the exited
// children of the process that are not known count, found through the
// process's task/*/children files when it has them, else among every
// process.
func TestStrayZombies(t *testing.T) {
	const self = 50
	procs := map[string]string{
		"1":   "1 (init) S 0 1 1",
		"50":  "50 (gorn) S 1 50 50",         // self
		"100": "100 (sleep) Z 50 100 100",    // an orphan that exited: reaped
		"101": "101 (gorn) Z 50 101 101",     // a worker, known: left to its waiter
		"102": "102 (sleep) S 50 102 102",    // an orphan still running
		"103": "103 (python3) Z 7 103 103",   // another process's child
		"104": "104 (a) Z 50) S 50 104 104",  // a name that fakes a zombie
		"105": "105 (x y (z)) Z 50 105 105",  // an odd name, a real zombie
		"106": "",                            // unreadable: gone meanwhile
		"abc": "abc (not a pid) Z 50 0 0",    // not a process directory
		"107": "107 (sh) Z 50",               // truncated after the parent's pid
		"108": "garbage without parentheses", // unparsable
		"109": "109 (sh) Z 50 109 109",       // in no children file (see below)
	}
	for _, tc := range []struct {
		name     string
		children map[string]string // thread id: its children file
		want     []int
	}{
		{"every process", nil, []int{100, 105, 107, 109}},
		{"children files", map[string]string{"50": "100 101 102 104 \n", "51": "105 106 107 108\n", "52": ""}, []int{100, 105, 107}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, stat := range procs {
				dir := filepath.Join(root, name)
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if stat == "" {
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for tid, kids := range tc.children {
				dir := filepath.Join(root, "50", "task", tid)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "children"), []byte(kids), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// A plain file in /proc (like /proc/uptime) is skipped too.
			if err := os.WriteFile(filepath.Join(root, "uptime"), []byte("1.0 2.0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := strayZombies(root, self, func(pid int) bool { return pid == 101 })
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("strayZombies = %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := strayZombies(filepath.Join(t.TempDir(), "missing"), self, func(int) bool { return false }); err == nil {
		t.Error("strayZombies of a missing proc tree: no error")
	}
}

// FuzzParseStat: any stat line either fails or gives a state that is a
// letter and a parent pid that is not negative; a line written from a
// command name, a state and a parent pid parses back to them.
func FuzzParseStat(f *testing.F) {
	for _, seed := range []string{"42 (python3) Z 7 42", "1 (a) b) S 0", "(", ")", "42 (x) Z -1", ""} {
		f.Add(seed, "comm (x)", byte('Z'), 7)
	}
	f.Fuzz(func(t *testing.T, line, comm string, state byte, ppid int) {
		if s, p, ok := parseStat([]byte(line)); ok && (p < 0 || !isLetter(s)) {
			t.Fatalf("parseStat(%q) = %q, %d, true", line, s, p)
		}
		if ppid < 0 || !isLetter(state) {
			return
		}
		built := fmt.Sprintf("42 (%s) %c %d 1 1", comm, state, ppid)
		if s, p, ok := parseStat([]byte(built)); !ok || s != state || p != ppid {
			t.Fatalf("parseStat(%q) = %q, %d, %v; want %q, %d", built, s, p, ok, state, ppid)
		}
	})
}
