package main

import (
	"errors"
	"strings"
)

// splitArgs splits s into arguments as Python's shlex.split does (POSIX
// mode, no comments), which is how gunicorn reads $GUNICORN_CMD_ARGS:
// blanks separate words; 'single quotes' keep everything; "double quotes"
// keep everything but a backslash before \\ or "; a backslash outside
// quotes keeps the next character, whatever it is.
func splitArgs(s string) ([]string, error) {
	var args []string
	var word strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				args = append(args, word.String())
				word.Reset()
				inWord = false
			}
		case c == '\\':
			inWord = true
			if i+1 >= len(s) {
				return nil, errors.New("no escaped character after the last backslash")
			}
			i++
			word.WriteByte(s[i])
		case c == '\'':
			inWord = true
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("no closing quotation")
			}
			word.WriteString(s[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			inWord = true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '\\' || s[i+1] == '"') {
					i++
				}
				word.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("no closing quotation")
			}
		default:
			inWord = true
			word.WriteByte(c)
		}
	}
	if inWord {
		args = append(args, word.String())
	}
	return args, nil
}

// hasFlag reports whether args set the flag -short or --long.
func hasFlag(args []string, short, long string) bool {
	return len(dropFlag(args, short, long)) != len(args)
}

// dropFlag removes every -short/--long flag, with its value, from args:
// "-b X", "-bX", "--bind X" and "--bind=X". Arguments after "--" are left.
func dropFlag(args []string, short, long string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case a == "-"+short || a == "--"+long:
			i++ // and its value
		case strings.HasPrefix(a, "--"+long+"="), strings.HasPrefix(a, "-"+short) && !strings.HasPrefix(a, "--"):
		default:
			out = append(out, a)
		}
	}
	return out
}
