package main

import "strings"

// workload is one line of traffic, run against every server.
type workload struct {
	name       string
	title      string
	module     string // the WSGI app, module:callable in apps/
	path       string // what the load requests
	readyPath  string // what is polled until the server answers 200
	script     string // the wrk Lua script in lua/ ("" for the mixed load generator)
	workers    int
	mixed      bool
	needsFlask bool
}

// moduleFile splits module into the app's file name and callable, for uWSGI's
// --wsgi-file and --callable.
func (w *workload) moduleFile() (file, callable string) {
	mod, callable, _ := strings.Cut(w.module, ":")
	return mod + ".py", callable
}

var workloads = []workload{
	{name: "hello", title: "hello world, keep-alive", module: "wsgi_app:app", path: "/", readyPath: "/", script: "get.lua", workers: 1},
	{name: "hello-close", title: "hello world, Connection: close", module: "wsgi_app:app", path: "/", readyPath: "/", script: "close.lua", workers: 1},
	{name: "flask", title: "Flask JSON endpoint, keep-alive", module: "flask_app:app", path: "/json", readyPath: "/json", script: "get.lua", workers: 1, needsFlask: true},
	{name: "stream", title: "1 MiB streamed response (16 × 64 KiB from a generator)", module: "wsgi_app:app", path: "/stream", readyPath: "/", script: "get.lua", workers: 1},
	{name: "upload", title: "256 KiB POST echoed back", module: "wsgi_app:app", path: "/echo", readyPath: "/", script: "post.lua", workers: 1},
	{name: "mixed", title: "2 workers, 10% of requests sleep 100 ms; latencies of the fast requests", module: "wsgi_app:app", path: "/", readyPath: "/", workers: 2, mixed: true},
}
