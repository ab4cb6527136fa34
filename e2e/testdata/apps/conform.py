"""WSGI conformance apps for gorn's end-to-end tests.

`validated` is an app wrapped in wsgiref.validate.validator, run as with
`python -W error`: every warning raised anywhere in the runtime is an
exception, and anything the validator or the warnings machinery raises is
logged as STRICT-FAILURE (the test fails on that line) and fails the
response.

`app` routes on PATH_INFO to behaviours the tests check: environ dumps,
the runtime's open descriptors, streaming, bodies read every way, status codes without bodies, hop-by-hop
headers, errors before and after the headers, start_response exc_info, and
close() recorded in a file named by the `rec` query parameter.
"""
import hashlib
import json
import os
import sys
import time
import traceback
import warnings
from urllib.parse import parse_qs
from wsgiref.validate import validator

warnings.simplefilter("error")  # -W error, for the whole runtime


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _fail(environ, where):
    sys.stderr.write("STRICT-FAILURE in %s of %s\n%s" % (
        where, environ.get("RAW_URI"), traceback.format_exc()))
    sys.stderr.flush()


# ----------------------------------------------------------------- validated

def _inner(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    text = [("Content-Type", "text/plain")]
    if path == "/hello":
        body = b"hello, validated world\n"
        start_response("200 OK", text + [("Content-Length", str(len(body)))])
        return [body]
    if path == "/echo" and method == "POST":
        n = int(environ.get("CONTENT_LENGTH") or "0")
        body = environ["wsgi.input"].read(n)
        rest = environ["wsgi.input"].read(1)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body) + len(rest)))])
        return [body, rest]
    if path == "/lines" and method == "POST":
        inp = environ["wsgi.input"]
        first = inp.readline()
        second = inp.readline(4)
        rest = inp.readlines()
        out = json.dumps({"first": first.decode("latin-1"), "second": second.decode("latin-1"),
                          "rest": [r.decode("latin-1") for r in rest]}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [out]
    if path == "/query":
        body = environ.get("QUERY_STRING", "").encode("latin-1")
        start_response("200 OK", text)
        return [body]
    if path == "/stream":
        n = int(_query(environ).get("n", "5"))
        start_response("200 OK", text)
        return (("chunk %d\n" % i).encode() for i in range(n))
    if path == "/write":
        write = start_response("200 OK", text)
        write(b"written 1\n")
        write(b"written 2\n")
        return [b"returned 3\n"]
    if path == "/errors":
        environ["wsgi.errors"].write("validated app wrote to wsgi.errors\n")
        environ["wsgi.errors"].writelines(["line two of wsgi.errors\n"])
        environ["wsgi.errors"].flush()
        start_response("200 OK", text)
        return [b"ok"]
    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", text)
        return environ["wsgi.file_wrapper"](f, 4096)
    start_response("404 Not Found", text)
    return [b"not found\n"]


class _StrictIter:
    def __init__(self, result, environ):
        self.result = result
        self.it = iter(result)
        self.environ = environ

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self.it)
        except StopIteration:
            raise
        except BaseException:
            _fail(self.environ, "iteration")
            raise

    def close(self):
        try:
            self.result.close()
        except BaseException:
            _fail(self.environ, "close")
            raise


def _strict(app):
    checked = validator(app)

    def strict_app(environ, start_response):
        try:
            result = checked(environ, start_response)
        except BaseException:
            _fail(environ, "call")
            raise
        return _StrictIter(result, environ)

    return strict_app


validated = _strict(_inner)


# ----------------------------------------------------------------- plain app

def _record(environ, event):
    rec = _query(environ).get("rec")
    if rec:
        with open(rec, "a") as f:
            f.write(event + "\n")


class Recorded:
    """A response iterable that records iteration end and close()."""

    def __init__(self, environ, chunks):
        self.environ = environ
        self.chunks = iter(chunks)

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self.chunks)
        except StopIteration:
            _record(self.environ, "exhausted")
            raise
        except BaseException as e:
            _record(self.environ, "raised %s" % type(e).__name__)
            raise

    def close(self):
        _record(self.environ, "close")


def _json(start_response, obj, status="200 OK", extra=()):
    body = json.dumps(obj, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))] + list(extra))
    return [body]


def _read_body(environ, mode):
    inp = environ["wsgi.input"]
    lines = 0
    if mode == "read":
        data = inp.read()
        lines = data.count(b"\n")
    elif mode == "readsize":
        parts = []
        while True:
            b = inp.read(1000)
            if not b:
                break
            parts.append(b)
        data = b"".join(parts)
        lines = data.count(b"\n")
    elif mode == "readline":
        parts = []
        while True:
            line = inp.readline()
            if not line:
                break
            lines += 1
            parts.append(line)
        data = b"".join(parts)
    elif mode == "iter":
        parts = []
        for line in inp:
            lines += 1
            parts.append(line)
        data = b"".join(parts)
    else:
        raise ValueError("unknown mode %r" % mode)
    return data, lines


def _wait_for(path, limit=20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    text = [("Content-Type", "text/plain")]

    if path.startswith("/env"):
        env = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int, tuple))}
        env["has_file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
        env["has_input"] = hasattr(environ.get("wsgi.input"), "read")
        env["has_errors"] = hasattr(environ.get("wsgi.errors"), "write")
        env["body_len"] = len(environ["wsgi.input"].read())
        env["keys"] = list(environ)  # the order of the environ's variables
        return _json(start_response, env)

    if path == "/fds":
        # The runtime's descriptors above stderr: every one, and those a
        # child the app starts (exec) would inherit.
        fds = {}
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2:
                try:
                    fds[fd] = (os.readlink("/proc/self/fd/%d" % fd), os.get_inheritable(fd))
                except OSError:  # listdir's own descriptor, closed by now
                    pass
        return _json(start_response, {
            "open": sorted(target for target, _ in fds.values()),
            "inheritable": sorted(target for target, inh in fds.values() if inh),
        })

    if path == "/path":
        body = environ["RAW_URI"].encode("latin-1")
        start_response("200 OK", text + [("Content-Length", str(len(body)))])
        return [body]

    if path == "/head":
        body = b"hello from a HEAD-able route\n"
        start_response("200 OK", text + [("Content-Length", str(len(body)))])
        return [body]

    if path == "/head-stream":
        start_response("200 OK", text)
        return (b"streamed %d\n" % i for i in range(3))

    if path == "/status":
        code = q.get("code", "204")
        start_response("%s Whatever" % code, [("X-Status", code)])
        return [b"this body must never reach the client"]

    if path == "/server-date":
        start_response("200 OK", [("Server", "app/1.0"), ("Date", "Thu, 01 Jan 1970 00:00:00 GMT"),
                                  ("ETag", '"v1"'), ("WWW-Authenticate", "Basic"), ("content-length", "2")])
        return [b"ok"]

    if path == "/reason":
        start_response(q.get("status", "200 OK"), [("Content-Length", "2")])
        return [b"ok"]

    if path == "/untyped":
        body = b"<html><body>no Content-Type</body></html>"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    if path == "/hop":
        body = b"hop-by-hop headers dropped\n"
        start_response("200 OK", text + [
            ("Content-Length", str(len(body))),
            ("Keep-Alive", "timeout=99, max=1000"),
            ("Transfer-Encoding", "gzip"),
            ("Upgrade", "websocket"),
            ("X-Kept", "yes"),
        ])
        return [body]

    if path == "/close":
        body = b"the app asked to close\n"
        start_response("200 OK", text + [("Content-Length", str(len(body))),
                                         ("Connection", "close")])
        return [body]

    if path == "/crlf":
        start_response("200 OK", text + [("X-Split", "a\r\nX-Injected: evil")])
        return [b"must not be sent\n"]

    if path == "/badhead":
        kind = q["kind"]
        status, headers = "200 OK", list(text)
        if kind == "status-crlf":
            status = "200 OK\r\nX-Injected: evil"
        elif kind == "name-space":
            headers.append(("X Injected", "evil"))
        elif kind == "value-lf":
            headers.append(("X-Split", "a\nX-Injected: evil"))
        elif kind == "value-nul":
            headers.append(("X-Split", "a\0b"))
        elif kind == "not-latin1":
            headers.append(("X-Split", "\u20ac"))
        elif kind == "content-length":
            headers.append(("Content-Length", "12abc"))
        start_response(status, headers)
        return [b"must not be sent\n"]

    if path == "/raise-before":
        raise RuntimeError("raised before start_response: marker-before")

    if path == "/raise-mid":
        start_response("200 OK", text)

        def gen():
            yield b"first chunk before the error\n"
            raise RuntimeError("raised mid-stream: marker-mid")

        return Recorded(environ, gen())

    if path == "/excinfo-before":
        start_response("200 OK", text)
        try:
            raise ValueError("replaced before the headers went out")
        except ValueError:
            start_response("503 Service Unavailable", text + [("X-Replaced", "yes")],
                           sys.exc_info())
        return [b"recovered with exc_info\n"]

    if path == "/excinfo-after":
        start_response("200 OK", text)

        def gen():
            yield b"headers are out\n"
            try:
                raise ValueError("exc_info after headers: marker-excinfo")
            except ValueError:
                start_response("500 Internal Server Error", text, sys.exc_info())
            yield b"never reached\n"

        return Recorded(environ, gen())

    if path == "/twice":
        start_response("200 OK", text)
        start_response("201 Created", text)
        return [b"never\n"]

    if path == "/sse":
        start_response("200 OK", [("Content-Type", "text/event-stream"),
                                  ("Cache-Control", "no-cache")])

        def events():
            yield b"data: first\n\n"
            if _wait_for(q["flag"]):
                yield b"data: second\n\n"
            else:
                yield b"data: timeout\n\n"
            yield b"data: last\n\n"

        return Recorded(environ, events())

    if path == "/cl":
        size = int(q.get("size", "100000"))
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        if q.get("dup"):  # the same length twice, as some frameworks send it
            headers.append(("content-length", str(size)))
        start_response("200 OK", headers)
        third = size // 3
        return Recorded(environ, [b"a" * third, b"b" * third, b"c" * (size - 2 * third)])

    if path == "/body":
        data, lines = _read_body(environ, q.get("mode", "read"))
        return _json(start_response, {"bytes": len(data), "lines": lines,
                                      "sha256": hashlib.sha256(data).hexdigest()})

    if path == "/record":
        mode = q.get("mode", "ok")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        _record(environ, "called")

        def gen():
            if mode == "ok":
                for i in range(3):
                    yield b"part %d\n" % i
            elif mode == "raise":
                yield b"part 0\n"
                raise RuntimeError("iteration raised: marker-record")
            elif mode == "forever":
                block = b"z" * 65536
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    yield block

        return Recorded(environ, gen())

    start_response("404 Not Found", text)
    return [b"not found\n"]
