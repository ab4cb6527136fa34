"""Test app for the TLS and HTTP/2 end-to-end tests: basic.py's routes plus
/barrier (returns once 4 requests are in the app at once), /hop (a
response with connection-specific headers) and /closing (a streamed
response whose close() writes a marker file)."""
import threading

from basic import app as basic_app

_barrier = threading.Barrier(4, timeout=20)


class _Closing:
    def __init__(self, marker, n):
        self.marker, self.n = marker, n

    def __iter__(self):
        for _ in range(self.n):
            yield b"y" * 1000

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/barrier":
        try:
            _barrier.wait()
        except threading.BrokenBarrierError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"barrier broken\n"]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "keep-alive")])
        return [environ["SERVER_PROTOCOL"].encode()]
    if path == "/hop":
        # Connection-specific fields, which HTTP/2 forbids in a response.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "keep-alive"),
                                  ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "keep-alive")])
        return [b"ok"]
    if path == "/closing":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _Closing(environ["QUERY_STRING"], 20)
    return basic_app(environ, start_response)
