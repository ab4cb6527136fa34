package sdnotify

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen opens a datagram socket at addr, as systemd's, and returns a
// function that reads the next datagram.
func listen(t *testing.T, addr string) func() string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func() string {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 4096)
		n, err := c.Read(b)
		if err != nil {
			t.Fatalf("reading the notification: %v", err)
		}
		return string(b[:n])
	}
}

func TestNotify(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, addr string
	}{
		{"a path", filepath.Join(dir, "notify")},
		{"the abstract namespace", "@gorn-sdnotify-test-" + filepath.Base(dir)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := listen(t, tt.addr)
			env := map[string]string{Env: tt.addr, "OTHER": "x"}
			n := Take(func(k string) string { return env[k] }, func(k string) error { delete(env, k); return nil })
			if n == nil {
				t.Fatal("no Notifier for a set $NOTIFY_SOCKET")
			}
			if _, ok := env[Env]; ok || env["OTHER"] != "x" {
				t.Errorf("the environment after Take: %v, want only %s gone", env, Env)
			}
			for _, state := range []string{"READY=1\nSTATUS=gorn: 2 workers ready", "STOPPING=1"} {
				if err := n.Notify(state); err != nil {
					t.Fatal(err)
				}
				if got := next(); got != state {
					t.Errorf("systemd got %q, want %q", got, state)
				}
			}
		})
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	env := map[string]string{}
	n := Take(func(k string) string { return env[k] }, func(string) error { return errors.New("unexpected unset") })
	if n != nil {
		t.Fatalf("Take without $NOTIFY_SOCKET = %+v, want nil", n)
	}
	if err := n.Notify("READY=1"); err != nil {
		t.Errorf("the nil Notifier: %v", err)
	}
	gone := &Notifier{addr: filepath.Join(t.TempDir(), "nobody-listens")}
	if err := gone.Notify("READY=1"); err == nil || !strings.Contains(err.Error(), "notifying systemd at ") {
		t.Errorf("a socket nobody listens on: %v, want an error naming it", err)
	}
}
