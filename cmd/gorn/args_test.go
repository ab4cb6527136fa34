package main

import (
	"slices"
	"strings"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	// The wants are Python's shlex.split of the same text.
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "", want: nil},
		{in: "   \t\n ", want: nil},
		{in: "--bind=0.0.0.0:8000 --workers=3", want: []string{"--bind=0.0.0.0:8000", "--workers=3"}},
		{in: "  -b  0.0.0.0:80\t-w 2 ", want: []string{"-b", "0.0.0.0:80", "-w", "2"}},
		{in: `--access-logformat '%(h)s "%(r)s" %(s)s'`, want: []string{"--access-logformat", `%(h)s "%(r)s" %(s)s`}},
		{in: `--name "my app" x"y z"w`, want: []string{"--name", "my app", "xy zw"}},
		{in: `a "b\$c" "d\` + "`" + `e" "f\"g" "h\\i" "j\nk"`, want: []string{"a", `b\$c`, "d\\`e", `f"g`, `h\i`, `j\nk`}},
		{in: `a\ b c\\d`, want: []string{"a b", `c\d`}},
		{in: "e\\\nf", want: []string{"e\nf"}},
		{in: `''`, want: []string{""}},
		{in: `'it'"'"'s'`, want: []string{"it's"}},
		{in: `'a\b'`, want: []string{`a\b`}},
		{in: `"unterminated`, err: true},
		{in: `'unterminated`, err: true},
		{in: `trailing\`, err: true},
	}
	for _, tt := range tests {
		got, err := splitArgs(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("splitArgs(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !tt.err && !slices.Equal(got, tt.want) {
			t.Errorf("splitArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDropFlag(t *testing.T) {
	tests := []struct {
		args, want []string
	}{
		{[]string{"-b", "x", "-w", "2"}, []string{"-w", "2"}},
		{[]string{"--bind", "x", "--bind=y", "-bz", "--workers=2"}, []string{"--workers=2"}},
		{[]string{"--backlog=10", "--bind-x"}, []string{"--backlog=10", "--bind-x"}},
		{[]string{"-w", "2", "--", "-b", "x"}, []string{"-w", "2", "--", "-b", "x"}},
		{[]string{"-b"}, nil},
		{nil, nil},
	}
	for _, tt := range tests {
		got := dropFlag(tt.args, "b", "bind")
		if !slices.Equal(got, tt.want) {
			t.Errorf("dropFlag(%q) = %q, want %q", tt.args, got, tt.want)
		}
		if has := hasFlag(tt.args, "b", "bind"); has != (len(got) != len(tt.args)) {
			t.Errorf("hasFlag(%q) = %v", tt.args, has)
		}
	}
}

// FuzzSplitArgs: splitting never fails on text quoted word by word, and
// gives the words back.
func FuzzSplitArgs(f *testing.F) {
	for _, s := range []string{"--bind=0.0.0.0:80", `a "b c" 'd'`, `x\ y`, "", `"`, `'it'"'"'s'`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := splitArgs(s)
		if err != nil {
			return
		}
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, "'"+strings.ReplaceAll(w, "'", `'"'"'`)+"'")
		}
		again, err := splitArgs(strings.Join(quoted, " "))
		if err != nil || !slices.Equal(again, words) {
			t.Fatalf("%q split to %q; quoted back and split again: %q, %v", s, words, again, err)
		}
	})
}
