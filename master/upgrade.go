package master

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// USR2 upgrades gorn in place, as gunicorn's does: the master starts a new
// master from the executable on disk, with the same command line,
// environment and start directory, and hands it its listening sockets as
// inherited descriptors. Both masters then serve on the same sockets, each
// with its own workers; the operator stops the old one (TERM, or WINCH
// first), and the new one, finding its parent gone, is promoted. No
// connection is refused meanwhile: the sockets never close.
//
// While the new master's parent lives, the new one writes its pid file as
// FILE.2 and refuses USR2 ("Parent exists"); the old one refuses a second
// USR2 until its new master has exited ("Child exists"), and logs that
// exit. Neither removes a unix socket file the other still serves on.

// UpgradeEnv is the environment variable that carries the handover from
// the old master to the new one; the new master removes it from its
// environment before anything else sees it.
const UpgradeEnv = "GORN_UPGRADE"

// handover is what an upgrading master tells the master it starts.
type handover struct {
	// Parent is the old master's pid.
	Parent int `json:"parent"`
	// Sockets maps each --bind and --metrics-bind value to the descriptor
	// the socket bound for it was inherited as.
	Sockets map[string]int `json:"sockets"`
}

// takeHandover reads and removes UpgradeEnv: nil when this master was not
// started by another one's USR2.
func takeHandover() (*handover, error) {
	text, ok := os.LookupEnv(UpgradeEnv)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(UpgradeEnv)
	var ho handover
	if err := json.Unmarshal([]byte(text), &ho); err != nil {
		return nil, fmt.Errorf("reading %s from the previous master: %w", UpgradeEnv, err)
	}
	for spec, fd := range ho.Sockets {
		if fd < 3 {
			delete(ho.Sockets, spec) // never stdin, stdout or stderr
		}
	}
	return &ho, nil
}

// take returns the inherited descriptor for spec and forgets it; -1 when
// there is none.
func (ho *handover) take(spec string) int {
	if ho == nil {
		return -1
	}
	fd, ok := ho.Sockets[spec]
	if !ok {
		return -1
	}
	delete(ho.Sockets, spec)
	return fd
}

// closeRest closes the inherited sockets no address took: they are not
// close-on-exec, and workers must not inherit them.
func (ho *handover) closeRest() {
	if ho == nil {
		return
	}
	for spec, fd := range ho.Sockets {
		unix.Close(fd)
		delete(ho.Sockets, spec)
	}
}

// upgradePath is the executable USR2 starts: argv0 as gorn was started
// (a relative path from dir, the start directory; a bare name looked up in
// PATH), so a binary replaced on disk is the one that runs; "" when it
// cannot be found.
func upgradePath(argv0, dir string) string {
	if argv0 == "" {
		return ""
	}
	if !strings.Contains(argv0, "/") {
		p, err := exec.LookPath(argv0)
		if err != nil {
			return ""
		}
		argv0 = p
	}
	if !filepath.IsAbs(argv0) {
		argv0 = filepath.Join(dir, argv0)
	}
	return argv0
}

// upgrade starts a new master for USR2.
func (m *Master) upgrade() {
	switch {
	case m.child != 0:
		m.log.Warn("USR2 signal ignored. Child exists.")
		return
	case m.parent != 0:
		m.log.Warn("USR2 signal ignored. Parent exists.")
		return
	case m.opts.Activated:
		m.log.Warn("USR2 signal ignored: the sockets came from systemd (LISTEN_FDS); restart the service to upgrade gorn")
		return
	}
	m.hook("pre_exec", nil, true)
	pid, err := m.startMaster()
	if err != nil {
		m.log.Error("Upgrade failed: cannot start a new master; this master keeps serving", "err", err)
		return
	}
	m.child = pid
	m.log.Info(fmt.Sprintf("Upgrading: started a new master (pid: %d) from %s", pid, m.upgradeExe))
}

// startMaster starts the executable at m.upgradeExe with gorn's command
// line, environment and start directory, handing it every listening
// socket, and returns its pid. It is not a worker: it outlives this
// master, which reaps it only if it exits first (reapStrays).
func (m *Master) startMaster() (int, error) {
	exe := m.upgradeExe
	if exe == "" {
		return 0, fmt.Errorf("the gorn executable %q was not found", m.opts.Argv[0])
	}
	if _, err := os.Stat(exe); err != nil {
		return 0, fmt.Errorf("the gorn executable: %w", err)
	}
	ho := handover{Parent: os.Getpid(), Sockets: map[string]int{}}
	files := []uintptr{0, 1, 2}
	var dups []int
	defer func() {
		for _, fd := range dups {
			unix.Close(fd)
		}
	}()
	all := m.listeners
	if m.mx.ln != nil {
		all = append(all[:len(all):len(all)], m.mx.ln)
	}
	for _, l := range all {
		fd, err := l.dup()
		if err != nil {
			return 0, fmt.Errorf("handing over %s: %w", l.spec, err)
		}
		dups = append(dups, fd)
		ho.Sockets[l.spec] = len(files)
		files = append(files, uintptr(fd))
	}
	js, err := json.Marshal(ho)
	if err != nil {
		return 0, err
	}
	env := append(os.Environ(), UpgradeEnv+"="+string(js))
	return syscall.ForkExec(exe, m.opts.Argv, &syscall.ProcAttr{Dir: m.opts.Dir, Env: env, Files: files})
}

// dup duplicates the listener's socket (close-on-exec), for handing over.
func (l *listener) dup() (int, error) {
	if l.file == nil {
		return dupSocket(l.ln.(syscall.Conn)) // bindServed checked it is one
	}
	return dupSocket(l.file)
}

// childExited handles the exit of the master USR2 started, reaped while
// this one still runs: the upgrade did not take over (it failed to boot,
// or was stopped to roll back), and this master keeps serving.
func (m *Master) childExited(pid int, ws unix.WaitStatus) {
	m.child = 0
	msg := fmt.Sprintf("The new master (pid: %d) exited (%s); this master keeps serving", pid, describeWait(ws))
	if ws.Exited() && ws.ExitStatus() == 0 {
		m.log.Info(msg)
	} else {
		m.log.Error(msg)
	}
}

// checkPromoted promotes a master started by USR2 once its parent, the old
// master, is gone: its pid file takes the configured name, and USR2 works
// again.
func (m *Master) checkPromoted() {
	if m.parent == 0 || unix.Getppid() == m.parent {
		return
	}
	m.parent = 0
	m.log.Info("Master has been promoted.")
	if err := m.pidFile.rename(m.cfg().PidFile); err != nil {
		m.log.Error("Cannot rename the pid file", "err", err)
	}
}

// keepSharedSockets leaves the unix socket files alone at exit while
// another master serves on the same sockets.
func (m *Master) keepSharedSockets() {
	if m.child == 0 && m.parent == 0 {
		return
	}
	for _, l := range m.allListeners() {
		l.unlink = ""
	}
	if m.mx.ln != nil {
		m.mx.ln.unlink = ""
	}
}
