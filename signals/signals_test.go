package signals

import (
	"os"
	"syscall"
	"testing"
)

func TestForMaster(t *testing.T) {
	tests := []struct {
		sig  os.Signal
		want Action
	}{
		{syscall.SIGTERM, GracefulStop},
		{syscall.SIGINT, QuickStop},
		{os.Interrupt, QuickStop},
		{syscall.SIGQUIT, QuickStop},
		{syscall.SIGHUP, Reload},
		{syscall.SIGTTIN, AddWorker},
		{syscall.SIGTTOU, RemoveWorker},
		{syscall.SIGUSR1, ReopenLogs},
		{syscall.SIGUSR2, Upgrade},
		{syscall.SIGWINCH, StopWorkers},
		{syscall.SIGCHLD, None},
		{syscall.SIGPIPE, None},
		{syscall.SIGKILL, None},
		{otherSignal{}, None},
	}
	for _, tt := range tests {
		if got := ForMaster(tt.sig); got != tt.want {
			t.Errorf("ForMaster(%v) = %v, want %v", tt.sig, got, tt.want)
		}
	}
}

// TestMasterList checks that Master holds exactly the signals with an
// action, each once, and that every action has a signal.
func TestMasterList(t *testing.T) {
	seen := map[os.Signal]bool{}
	actions := map[Action]bool{}
	for _, s := range Master {
		if seen[s] {
			t.Errorf("%v listed twice", s)
		}
		seen[s] = true
		a := ForMaster(s)
		if a == None {
			t.Errorf("%v is in Master but has no action", s)
		}
		actions[a] = true
	}
	if len(seen) != len(forMaster) {
		t.Errorf("Master has %d signals, %d have actions", len(seen), len(forMaster))
	}
	for a := GracefulStop; a <= StopWorkers; a++ {
		if !actions[a] {
			t.Errorf("no signal for action %d", a)
		}
	}
}

type otherSignal struct{}

func (otherSignal) String() string { return "other" }
func (otherSignal) Signal()        {}

func TestName(t *testing.T) {
	tests := []struct {
		sig  os.Signal
		want string
	}{
		{syscall.SIGTERM, "term"},
		{syscall.SIGINT, "int"},
		{os.Interrupt, "int"},
		{syscall.SIGQUIT, "quit"},
		{syscall.SIGHUP, "hup"},
		{syscall.SIGTTIN, "ttin"},
		{syscall.SIGTTOU, "ttou"},
		{syscall.SIGUSR1, "usr1"},
		{syscall.SIGUSR2, "usr2"},
		{syscall.SIGWINCH, "winch"},
		{syscall.SIGKILL, "kill"},
		{syscall.SIGSEGV, "segv"},
		{syscall.SIGABRT, "abrt"},
		{syscall.SIGPIPE, "pipe"},
		{syscall.SIGCHLD, "chld"},
		{syscall.Signal(200), "signal 200"},
		{otherSignal{}, "other"},
	}
	for _, tt := range tests {
		if got := Name(tt.sig); got != tt.want {
			t.Errorf("Name(%#v) = %q, want %q", tt.sig, got, tt.want)
		}
	}
}
