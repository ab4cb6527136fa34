"""Lifecycle and command-line test app for gorn's e2e tests.

Routes:
  /work?n=N&t=SECS  counts itself as active, waits (up to SECS) until N
                    requests are active at once, and records the largest
                    number of concurrent requests seen.
  /max              {"max": largest concurrency seen, "pid": runtime pid}
  /hold?t=SECS&f=PATH  creates PATH (so the test knows the request is in
                    the app), then sleeps SECS.
  /pid              {"pid": runtime pid, "ppid": its parent (the worker)}
  /spawn?t=SECS     starts `sleep SECS` and leaves it running:
                    {"pid": its pid}
  /fork?t=SECS      forks a copy of the runtime (holding every descriptor
                    the runtime has) that sleeps SECS: {"pid": its pid}
  /osenv            the runtime's os.environ
  /cwd              {"cwd": os.getcwd()}
  /exe              {"executable": sys.executable}
  /print?m=TEXT     prints TEXT on standard output: {"pid": runtime pid}
  /log?m=TEXT       logs TEXT as a warning of the Python logger "lc"
  /glog?m=TEXT      logs TEXT as info through "lc.gunicorn", which has the
                    handlers and level of "gunicorn.error" (Flask's
                    documented pattern for running under gunicorn)
  /raise?m=TEXT     raises RuntimeError(TEXT)
"""
import json
import logging
import os
import subprocess
import sys
import threading
import time

# As Flask's docs have it: log through gunicorn's error log.
_glog = logging.getLogger("lc.gunicorn")
_glog.handlers = logging.getLogger("gunicorn.error").handlers
_glog.setLevel(logging.getLogger("gunicorn.error").level)
_glog.propagate = False

_cond = threading.Condition()
_active = 0
_max = 0


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _query(environ):
    return dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)


def _work(n, limit):
    global _active, _max
    with _cond:
        _active += 1
        _max = max(_max, _active)
        _cond.notify_all()
        deadline = time.monotonic() + limit
        while _active < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _cond.wait(left)
        # Stay a little so peers that reached n see each other too.
        _cond.notify_all()
    time.sleep(0.05)
    with _cond:
        _active -= 1
        _cond.notify_all()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    if path == "/work":
        _work(int(q.get("n", "1")), float(q.get("t", "5")))
        return _json(start_response, {"pid": os.getpid()})
    if path == "/max":
        with _cond:
            return _json(start_response, {"max": _max, "pid": os.getpid()})
    if path == "/hold":
        f = q.get("f")
        if f:
            with open(f, "w") as fh:
                fh.write(str(os.getpid()))
        time.sleep(float(q.get("t", "1")))
        return _json(start_response, {"pid": os.getpid()})
    if path == "/pid":
        return _json(start_response, {"pid": os.getpid(), "ppid": os.getppid()})
    if path == "/spawn":
        child = subprocess.Popen(["sleep", q.get("t", "1")])
        return _json(start_response, {"pid": child.pid})
    if path == "/fork":
        pid = os.fork()
        if pid == 0:
            time.sleep(float(q.get("t", "1")))
            os._exit(0)
        return _json(start_response, {"pid": pid})
    if path == "/log":
        logging.getLogger("lc").warning(q.get("m", ""))
        return _json(start_response, {"pid": os.getpid()})
    if path == "/glog":
        _glog.info(q.get("m", ""))
        return _json(start_response, {"pid": os.getpid()})
    if path == "/raise":
        raise RuntimeError(q.get("m", ""))
    if path == "/print":
        print(q.get("m", ""), flush=True)
        return _json(start_response, {"pid": os.getpid()})
    if path == "/osenv":
        return _json(start_response, dict(os.environ))
    if path == "/cwd":
        return _json(start_response, {"cwd": os.getcwd()})
    if path == "/exe":
        return _json(start_response, {"executable": sys.executable})
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
