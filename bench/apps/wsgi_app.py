"""The benchmark's plain WSGI app, served by every server under test.

Routes:
  GET  /        "Hello, World!" (13 bytes, Content-Length)
  GET  /stream  1 MiB streamed as 16 chunks of 64 KiB from a generator
  POST /echo    the request body streamed back, 64 KiB at a time
  GET  /sleep   sleeps 100 ms, then "Hello, World!" (the mixed workload's slow request)
"""

import time

HELLO = b"Hello, World!"
CHUNK = b"x" * 65536
STREAM_CHUNKS = 16  # 16 x 64 KiB = 1 MiB


def _stream():
    for _ in range(STREAM_CHUNKS):
        yield CHUNK


def _echo(body, length):
    while length > 0:
        data = body.read(min(length, 65536))
        if not data:
            return
        length -= len(data)
        yield data


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [HELLO]
    if path == "/stream":
        size = str(len(CHUNK) * STREAM_CHUNKS)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", size)])
        return _stream()
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(length))])
        return _echo(environ["wsgi.input"], length)
    if path == "/sleep":
        time.sleep(0.1)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [HELLO]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"Not Found"]
