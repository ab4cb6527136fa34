package main

import (
	"os/exec"
	"path/filepath"
	"strconv"
)

// env is what the servers' command lines are built from.
type env struct {
	python string // the interpreter for gorn, gunicorn (and uWSGI's plugin is Debian's libpython)
	gorn   string // the gorn binary built for this run
	self   string // this program, re-executed as the Go server and the load generator
	appDir string // the apps/ directory, written out from the embedded files
}

// server is one server under test.
type server struct {
	name string
	// missing returns why the server cannot run workload w here, or "".
	missing func(e *env, w *workload) string
	// argv is the server's command line (without the taskset prefix).
	argv func(e *env, w *workload, addr string) []string
	// rssRoot: the memory that counts is the root process itself (the Go
	// server has no master); otherwise it is the root's descendants (the
	// workers and, for gorn, their runtimes), without the master.
	rssRoot bool
}

// servers lists the servers in the order of the tables. Every one runs the
// workload's number of workers with one request in Python at a time per
// worker (gorn's default --threads 1).
var servers = []server{
	{
		name:    "gorn",
		missing: pythonMissing(),
		argv: func(e *env, w *workload, addr string) []string {
			return []string{e.gorn, "-w", strconv.Itoa(w.workers), "-b", addr,
				"--python", e.python, "--chdir", e.appDir, w.module}
		},
	},
	{
		name:    "gunicorn-sync",
		missing: pythonMissing("gunicorn"),
		argv: func(e *env, w *workload, addr string) []string {
			return []string{e.python, "-m", "gunicorn", "-k", "sync", "-w", strconv.Itoa(w.workers), "-b", addr,
				"--chdir", e.appDir, w.module}
		},
	},
	{
		name:    "gunicorn-gthread",
		missing: pythonMissing("gunicorn"),
		argv: func(e *env, w *workload, addr string) []string {
			return []string{e.python, "-m", "gunicorn", "-k", "gthread", "--threads", "1", "-w", strconv.Itoa(w.workers),
				"-b", addr, "--chdir", e.appDir, w.module}
		},
	},
	{
		name: "uwsgi",
		missing: func(e *env, w *workload) string {
			if _, err := exec.LookPath("uwsgi"); err != nil {
				return "uwsgi not installed (apt-get install uwsgi uwsgi-plugin-python3)"
			}
			if m, _ := filepath.Glob("/usr/lib/uwsgi/plugins/python3*_plugin.so"); len(m) == 0 {
				return "uWSGI python3 plugin not installed (apt-get install uwsgi-plugin-python3)"
			}
			if w.needsFlask {
				return pythonMissing("flask")(e, w)
			}
			return ""
		},
		argv: func(e *env, w *workload, addr string) []string {
			module, callable := w.moduleFile()
			return []string{"uwsgi", "--http-socket", addr, "--plugin", "python3",
				"--chdir", e.appDir, "--wsgi-file", module, "--callable", callable,
				"--processes", strconv.Itoa(w.workers), "--master", "--need-app", "--die-on-term",
				"--disable-logging", "--add-header", "Connection: close"}
		},
	},
	{
		name:    "go-nethttp",
		missing: func(*env, *workload) string { return "" },
		argv: func(e *env, w *workload, addr string) []string {
			return []string{e.self}
		},
		rssRoot: true,
	},
}

// pythonMissing checks that the interpreter imports modules (and Flask when
// the workload needs it).
func pythonMissing(modules ...string) func(e *env, w *workload) string {
	return func(e *env, w *workload) string {
		mods := append([]string(nil), modules...)
		if w.needsFlask {
			mods = append(mods, "flask")
		}
		if len(mods) == 0 {
			if _, err := exec.LookPath(e.python); err != nil {
				return e.python + " not found"
			}
			return ""
		}
		code := "import " + joinComma(mods)
		if err := exec.Command(e.python, "-c", code).Run(); err != nil {
			return e.python + " cannot " + code
		}
		return ""
	}
}

func joinComma(s []string) string {
	out := ""
	for i, m := range s {
		if i > 0 {
			out += ", "
		}
		out += m
	}
	return out
}
