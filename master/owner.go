package master

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/gorn-project/gorn/config"
)

// --user, --group and --umask (config.Config's UID, GID, Groups, Umask):
// the master stays who it was started as, so that it can bind privileged
// ports and read what only root may; workers and their runtimes run as
// the user. As gunicorn does, the master hands the user the files workers
// open again themselves (the log files, on USR1) and the unix sockets it
// binds.

// checkOwner fails early when the workers cannot be switched to the user:
// only root may.
func checkOwner(cfg *config.Config) error {
	if cfg.UID < 0 || os.Geteuid() == 0 {
		return nil
	}
	if cfg.UID != os.Getuid() || cfg.GID != os.Getgid() {
		return errors.New("--user and --group need gorn to be started as root (it switches only its workers to them)")
	}
	return nil
}

// credential is what a worker runs as: nil for the master's own user.
func credential(cfg *config.Config) *syscall.Credential {
	if cfg.UID < 0 {
		return nil
	}
	c := &syscall.Credential{Uid: uint32(cfg.UID), Gid: uint32(cfg.GID)}
	for _, g := range cfg.Groups {
		c.Groups = append(c.Groups, uint32(g))
	}
	// Only root may set the supplementary groups, even to none; anyone
	// else is switching to itself (checkOwner) and keeps its own.
	c.NoSetGroups = os.Geteuid() != 0
	return c
}

// ownFiles gives the unix socket files the mode --umask leaves (as
// gunicorn binds them under it) and, with --user, hands them and the log
// files to the workers' user, creating the access log so that a worker
// may open it.
func (m *Master) ownFiles(cfg *config.Config) error {
	for _, l := range m.listeners {
		if err := ownSocket(l, cfg); err != nil {
			return err
		}
	}
	return ownLogs(cfg)
}

// ownSocket gives the file of a unix socket gorn bound the mode --umask
// leaves and, with --user, hands it to the workers' user.
func ownSocket(l *listener, cfg *config.Config) error {
	if l.unlink == "" {
		return nil
	}
	if err := os.Chmod(l.unlink, 0o777&^os.FileMode(cfg.Umask)); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", l.unlink, err)
	}
	if cfg.UID >= 0 {
		if err := os.Chown(l.unlink, cfg.UID, cfg.GID); err != nil {
			return fmt.Errorf("handing %s to --user: %w", l.unlink, err)
		}
	}
	return nil
}

// ownLogs hands the log files to --user, if set, creating them; a HUP
// that names other log files calls it too.
func ownLogs(cfg *config.Config) error {
	if cfg.UID < 0 {
		return nil
	}
	for _, path := range []string{cfg.ErrorLog, cfg.AccessLog} {
		if path == "" || path == "-" {
			continue
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("opening the log file %s: %w", path, err)
		}
		err = f.Chown(cfg.UID, cfg.GID)
		f.Close()
		if err != nil && !errors.Is(err, syscall.EINVAL) { // /dev/null and the like
			return fmt.Errorf("handing the log file %s to --user: %w", path, err)
		}
	}
	return nil
}
