// Package corpus reads gorn's request corpus, testdata/requests at the
// repository root: one file per case, each a few "key: value" lines, a
// "---" line, then the raw request bytes. The httpguard unit tests and the
// end-to-end tests replay the same files.
//
// The format (see testdata/requests/README.md):
//
//	# comment
//	status: 200 400        the status of each response, in order (required)
//	env: PATH_INFO=/a      the first response's environ has PATH_INFO "/a"
//	noenv: HTTP_X_A        ... and no HTTP_X_A
//	body: abc              the app read this request body (escapes allowed)
//	flags: --header-map refuse   extra gorn flags, space-separated
//	---
//	GET / HTTP/1.1\r\n
//	Host: x\r\n
//	\r\n
//
// The lines after "---" are joined without their own line breaks and
// unescaped: \r \n \t \0 \\ \xHH, and \R{N}{text} repeats text N times.
package corpus

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Case is one corpus file.
type Case struct {
	Name     string   // the file name without .http
	Statuses []int    // the expected status of each response
	Env      []string // KEY=VALUE the first response's environ must hold
	NoEnv    []string // keys it must not hold
	Body     *string  // the request body the app must have read
	Flags    []string // extra gorn flags
	Raw      []byte   // the bytes to send
}

// Load reads every *.http file in dir, sorted by name.
func Load(dir string) ([]Case, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.http"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var cases []Case
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		c, err := Parse(strings.TrimSuffix(filepath.Base(n), ".http"), string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		cases = append(cases, c)
	}
	return cases, nil
}

// Parse reads one case from its text.
func Parse(name, text string) (Case, error) {
	c := Case{Name: name}
	meta, raw, ok := strings.Cut(text, "\n---\n")
	if !ok {
		return c, fmt.Errorf("no --- line")
	}
	for _, line := range strings.Split(meta, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return c, fmt.Errorf("bad line %q", line)
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "status":
			for _, f := range strings.Fields(v) {
				n, err := strconv.Atoi(f)
				if err != nil {
					return c, fmt.Errorf("bad status %q", f)
				}
				c.Statuses = append(c.Statuses, n)
			}
		case "env":
			if !strings.Contains(v, "=") {
				return c, fmt.Errorf("env wants KEY=VALUE, not %q", v)
			}
			k, val, _ := strings.Cut(v, "=")
			u, err := Unescape(val)
			if err != nil {
				return c, err
			}
			c.Env = append(c.Env, k+"="+string(u))
		case "noenv":
			c.NoEnv = append(c.NoEnv, v)
		case "body":
			u, err := Unescape(v)
			if err != nil {
				return c, err
			}
			s := string(u)
			c.Body = &s
		case "flags":
			c.Flags = strings.Fields(v)
		default:
			return c, fmt.Errorf("unknown key %q", k)
		}
	}
	if len(c.Statuses) == 0 {
		return c, fmt.Errorf("no status")
	}
	var b strings.Builder
	for _, line := range strings.Split(raw, "\n") {
		b.WriteString(line)
	}
	u, err := Unescape(b.String())
	if err != nil {
		return c, err
	}
	c.Raw = u
	return c, nil
}

// Unescape decodes the corpus escapes.
func Unescape(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("trailing backslash in %q", s)
		}
		i++
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("short \\x in %q", s)
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("bad \\x in %q", s)
			}
			out = append(out, byte(n))
			i += 2
		case 'R':
			// \R{N}{text}
			rest := s[i+1:]
			if !strings.HasPrefix(rest, "{") {
				return nil, fmt.Errorf("bad \\R in %q", s)
			}
			num, after, ok1 := strings.Cut(rest[1:], "}{")
			text, _, ok2 := strings.Cut(after, "}")
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("bad \\R in %q", s)
			}
			n, err := strconv.Atoi(num)
			if err != nil {
				return nil, fmt.Errorf("bad \\R count in %q", s)
			}
			inner, err := Unescape(text)
			if err != nil {
				return nil, err
			}
			for range n {
				out = append(out, inner...)
			}
			i += 1 + len(num) + 2 + len(text) + 1
		default:
			return nil, fmt.Errorf("unknown escape \\%c in %q", s[i], s)
		}
	}
	return out, nil
}
