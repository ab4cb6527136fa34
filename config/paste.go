package config

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// finishPaste resolves --paste as gunicorn does: the file (before any
// #name) must exist; the path becomes absolute; App names it for the logs
// and --print-config; and an ini with a [loggers] section is also the
// logging configuration, unless --log-config names another.
func (c *Config) finishPaste() error {
	file, name, _ := strings.Cut(c.Paste, "#")
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("--paste: %w", err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return fmt.Errorf("--paste: %w", err)
	}
	defer f.Close()
	hasLoggers := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "[loggers]" {
			hasLoggers = true
			break
		}
	}
	c.Paste = abs
	if name != "" {
		c.Paste += "#" + name
	}
	if c.App == "" {
		c.App = "config:" + c.Paste
	}
	if hasLoggers && c.LogConfig == "" {
		c.LogConfig = abs
	}
	for _, kv := range c.PasteGlobal {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--paste-global wants KEY=VALUE, not %q", kv)
		}
	}
	return nil
}
