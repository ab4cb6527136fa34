"""Test apps for gorn's end-to-end tests: one WSGI app routing on PATH_INFO."""
import hashlib
import json
import os
import sys
import time


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/environ":
        env = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int, tuple))}
        return _json(start_response, env)
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/slowdigest":
        # Reads the upload 64 KiB at a time, pausing after each block
        # (?pause=SECONDS), and answers its SHA-256.
        pause = float(environ["QUERY_STRING"].partition("=")[2] or "0")
        digest = hashlib.sha256()
        inp = environ["wsgi.input"]
        while True:
            block = inp.read(65536)
            if not block:
                break
            digest.update(block)
            time.sleep(pause)
        body = digest.hexdigest().encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/count":
        # Streams the upload through, counting bytes, holding one block.
        n = 0
        inp = environ["wsgi.input"]
        while True:
            block = inp.read(65536)
            if not block:
                break
            n += len(block)
        return _json(start_response, {"bytes": n})
    if path == "/stream":
        # /stream?n=COUNT&size=BYTES yields COUNT chunks of BYTES bytes.
        q = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
        n, size = int(q.get("n", "10")), int(q.get("size", "10"))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        chunk = b"x" * size
        return (chunk for _ in range(n))
    if path == "/chunks":
        # /chunks?n=COUNT&size=BYTES yields COUNT chunks, chunk i being
        # BYTES+i copies of byte i % 251; X-Sha256 is the body's digest.
        q = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
        n, size = int(q.get("n", "10")), int(q.get("size", "10"))
        chunks = [bytes([i % 251]) * (size + i) for i in range(n)]
        digest = hashlib.sha256()
        for c in chunks:
            digest.update(c)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("X-Sha256", digest.hexdigest())])
        return iter(chunks)
    if path == "/ticks":
        # /ticks?n=COUNT&f=PATH[&size=BYTES&every=SECS]: a slow stream
        # (server-sent events), a short chunk (or one of BYTES) every 0.1 s
        # (or SECS); when it ends, however it ends, PATH gets the number of
        # chunks yielded.
        q = dict(p.split("=", 1) for p in environ["QUERY_STRING"].split("&") if "=" in p)
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        size, every = int(q.get("size", "0")), float(q.get("every", "0.1"))

        def ticks():
            i = 0
            try:
                for i in range(int(q.get("n", "10"))):
                    yield b"x" * size if size else b"data: %d\n\n" % i
                    if every:
                        time.sleep(every)
            finally:
                with open(q["f"], "w") as f:
                    f.write(str(i))
        return ticks()
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"] or "1"))
        return _json(start_response, {"slept": environ["QUERY_STRING"], "pid": os.getpid()})
    if path == "/pid":
        return _json(start_response, {"pid": os.getpid()})
    if path == "/crash":
        sys.stderr.flush()
        os._exit(1)
    if path == "/raise":
        raise RuntimeError("boom from the app")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
