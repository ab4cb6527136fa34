package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestExamples runs each example of examples/ with the command
// docs/README.md gives for it, from the repository root, and checks that
// it says hello on /. Every entry of examples/ must have its row there.
func TestExamples(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "examples"))
	if err != nil {
		t.Fatal(err)
	}
	// | [NAME](../examples/PATH)… | `gorn ARGS` | NEEDS |
	row := regexp.MustCompile("(?m)^\\| \\[[^]]+\\]\\(\\.\\./examples/([^)/]+)/?\\)[^|]* \\| `gorn ([^`]+)` \\| ([^|]+) \\|$")
	rows := row.FindAllStringSubmatch(string(doc), -1)
	documented := map[string]bool{}
	for _, r := range rows {
		documented[r[1]] = true
	}
	for _, e := range entries {
		if !documented[e.Name()] {
			t.Errorf("examples/%s has no row with its command in docs/README.md", e.Name())
		}
	}
	for _, r := range rows {
		t.Run(r[1], func(t *testing.T) {
			var modules []string
			for _, m := range []string{"Flask", "Django"} {
				if strings.Contains(r[3], m) {
					modules = append(modules, strings.ToLower(m))
				}
			}
			s := startIn(t, root, python(t, modules...), strings.Fields(r[2])...)
			s.ready("/")
			if code, body := s.get("/"); code != 200 || !strings.Contains(body, "Hello") {
				t.Errorf("gorn %s: GET / = %d %q", r[2], code, body)
			}
		})
	}
}
