"""Worker-pool test app for gorn's e2e tests (e2e/pool_test.go).

VALUE is rewritten on disk by the reload tests, to prove a HUP re-imports
the code; keep it on one line of its own.

Routes:
  /  (any method)    {"pid": runtime pid, "ppid": its worker, "value": VALUE,
                     "len": bytes of request body read}
  /sleep?SECS        sleeps SECS inside pool_sleeping_frame (the frame the
                     --timeout stack dump must name)
  /hold?t=SECS&f=PATH  creates PATH (the request is in the app), then sleeps
  /log?MARKER        writes MARKER as a line to the runtime's standard error
                     (the error log)
"""
import json
import os
import sys
import time

VALUE = "v1"


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def pool_sleeping_frame(secs):
    time.sleep(secs)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    if path == "/sleep":
        pool_sleeping_frame(float(query or "1"))
        return _json(start_response, {"pid": os.getpid(), "ppid": os.getppid()})
    if path == "/hold":
        q = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        with open(q["f"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(float(q.get("t", "5")))
        return _json(start_response, {"pid": os.getpid(), "ppid": os.getppid()})
    if path == "/log":
        sys.stderr.write(query + "\n")
        sys.stderr.flush()
        return _json(start_response, {"logged": query})
    body = environ["wsgi.input"].read()
    return _json(start_response, {"pid": os.getpid(), "ppid": os.getppid(),
                                  "value": VALUE, "len": len(body)})
