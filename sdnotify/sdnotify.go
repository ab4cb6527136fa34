// Package sdnotify tells systemd how the service is doing, as sd_notify(3)
// does, for units of Type=notify: one datagram of "KEY=VALUE" lines to the
// unix socket $NOTIFY_SOCKET names.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Env is the variable systemd sets to the socket's address: a path, or a
// name in the abstract namespace when it starts with "@".
const Env = "NOTIFY_SOCKET"

// Notifier sends state changes to systemd. The nil Notifier (no
// $NOTIFY_SOCKET: not run by systemd as Type=notify) sends nothing.
type Notifier struct {
	addr string
}

// Take returns the Notifier for getenv's $NOTIFY_SOCKET, nil when it is
// unset or empty, and unsets the variable with unsetenv, so that no child
// (a worker, the app) inherits it: systemd takes notifications from the
// main process only, and the app has nothing to tell it.
func Take(getenv func(string) string, unsetenv func(string) error) *Notifier {
	addr := getenv(Env)
	if addr == "" {
		return nil
	}
	unsetenv(Env)
	return &Notifier{addr: addr}
}

// TakeEnv is Take of the process environment.
func TakeEnv() *Notifier { return Take(os.Getenv, os.Unsetenv) }

// Notify sends state, newline-separated assignments such as
// "READY=1\nSTATUS=serving" (see sd_notify(3)), in one datagram. It does
// nothing on the nil Notifier.
func (n *Notifier) Notify(state string) error {
	if n == nil {
		return nil
	}
	// Go reads a leading "@" as the abstract namespace, as systemd means it.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notifying systemd at %s: %w", n.addr, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notifying systemd at %s: %w", n.addr, err)
	}
	return nil
}
