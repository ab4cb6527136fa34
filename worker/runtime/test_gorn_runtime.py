"""Unit tests of gorn_runtime.py's codec and WSGI objects.

Standard library only; run with `python3 -m unittest -v test_gorn_runtime`
from this directory (worker/runtime/runtime_test.go does, with every
interpreter it finds). The shared vectors are protocol/testdata/vectors.json,
which the Go codec checks too.
"""

import gc
import importlib.util
import io
import json
import marshal
import os
import random
import shutil
import struct
import sys
import tempfile
import threading
import time
import unittest
import uuid
import weakref

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.environ.get("GORN_VECTORS") or os.path.join(
    HERE, "..", "..", "protocol", "testdata", "vectors.json")


def _load_runtime():
    spec = importlib.util.spec_from_file_location(
        "gorn_runtime_under_test", os.path.join(HERE, "gorn_runtime.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rt = _load_runtime()

with open(VECTORS, encoding="utf-8") as _f:
    V = json.load(_f)


def latin1(v):
    """A vectors.json byte string: latin-1 text or {"hex": ...}."""
    if isinstance(v, dict):
        return bytes.fromhex(v["hex"])
    return v.encode("latin-1")


def text(v):
    """The native string (PEP 3333) a vectors.json byte string becomes."""
    return latin1(v).decode("latin-1")


def encode_environ(env):
    """A Request's environ (docs/protocol.md §2) for the entries of env, as
    the worker sends it: the values of rt.ENVIRON_KEYS (None for a key not
    in env), the other entries, the mask of the keys not in env. Python's
    marshal writes it differently from Go, and decodes both the same."""
    values = tuple(env.get(k) for k in rt.ENVIRON_KEYS)
    other = {k: v for k, v in env.items() if k not in rt.ENVIRON_KEYS}
    absent = sum(1 << i for i, k in enumerate(rt.ENVIRON_KEYS) if k not in env)
    return marshal.dumps(values + (other, absent))


def request_payload(env, body=b""):
    """A Request frame's payload: the environ of env, then body."""
    raw = encode_environ(env)
    return struct.pack("<I", len(raw)) + raw + body


# ----------------------------------------------------------------- vectors

class VectorTests(unittest.TestCase):
    def test_sections_present(self):
        for key in ("frames", "environs", "requests", "starts"):
            self.assertTrue(V[key], key)
        for key in ("frames", "environs", "starts"):
            self.assertTrue(V["invalid"][key], key)

    def test_constants_match_vectors(self):
        types = {c["name"]: c["type"] for c in V["frames"]}
        self.assertEqual(types["body chunk"], rt.T_BODY)
        self.assertEqual(types["window"], rt.T_WINDOW)
        self.assertEqual(types["cancel"], rt.T_CANCEL)
        self.assertEqual(types["shutdown"], rt.T_SHUTDOWN)
        self.assertEqual(types["stacks"], rt.T_STACKS)
        self.assertEqual(types["reopen logs"], rt.T_REOPEN)
        self.assertEqual(types["ready"], rt.T_READY)
        self.assertEqual(types["boot error"], rt.T_BOOT_ERROR)
        self.assertEqual(types["data"], rt.T_DATA)
        self.assertEqual(types["read"], rt.T_READ)
        self.assertEqual(types["error"], rt.T_ERROR)
        self.assertEqual(rt.HEADER_SIZE, 10)
        self.assertEqual(rt.MAX_PAYLOAD, 16 << 20)
        self.assertEqual(rt.INITIAL_WINDOW, 512 << 10)
        self.assertEqual(rt.READ_CHUNK, 64 << 10)

    def test_frames(self):
        stream = b""
        for c in V["frames"]:
            with self.subTest(c["name"]):
                payload = bytes.fromhex(c["payload"])
                enc = bytes.fromhex(c["encoded"])
                self.assertEqual(rt.pack_frame(c["type"], c["flags"], c["id"], payload), enc)
                frames, off = rt.unpack_frames(enc)
                self.assertEqual(frames, [(c["type"], c["flags"], c["id"], payload)])
                self.assertEqual(off, len(enc))
                stream += enc
        # The whole stream, fed a byte at a time as read_once does.
        buf = bytearray()
        off = 0
        got = []
        for i in range(len(stream)):
            buf += stream[i:i + 1]
            frames, off = rt.unpack_frames(buf, off)
            got.extend(frames)
        self.assertEqual(off, len(stream))
        self.assertEqual([f[3] for f in got], [bytes.fromhex(c["payload"]) for c in V["frames"]])
        self.assertEqual([f[:3] for f in got], [(c["type"], c["flags"], c["id"]) for c in V["frames"]])

    def test_environ_keys_match_vectors(self):
        self.assertEqual(list(rt.ENVIRON_KEYS), V["environ_keys"])

    def test_environs(self):
        for c in V["environs"]:
            with self.subTest(c["name"]):
                want = {text(k): text(v) for k, v in c["pairs"]}
                got = rt.decode_environ(bytes.fromhex(c["marshal"]))
                self.assertIs(type(got), dict)
                self.assertEqual(got, want)
                for k, v in got.items():
                    self.assertIs(type(k), str)
                    self.assertIs(type(v), str)
                    # Native strings: every code point is one byte.
                    k.encode("latin-1")
                    v.encode("latin-1")

    def test_requests(self):
        for c in V["requests"]:
            with self.subTest(c["name"]):
                frames, off = rt.unpack_frames(bytes.fromhex(c["encoded"]))
                self.assertEqual(len(frames), 1)
                ftype, flags, sid, payload = frames[0]
                self.assertEqual((ftype, flags, sid), (rt.T_REQUEST, c["flags"], c["id"]))
                environ, body = rt.decode_request(payload)
                self.assertEqual(environ, {text(k): text(v) for k, v in c["pairs"]})
                self.assertEqual(body, bytes.fromhex(c["body"]))

    def test_small_and_large_environs(self):
        # Under 4 KiB decode_request copies the environ; above, it reads it
        # through a view: the same dict either way.
        for size in (10, 4090, 5000, 300000):
            with self.subTest(size=size):
                env = {"PATH_INFO": "/", "HTTP_X_BIG": "v" * size}
                environ, body = rt.decode_request(request_payload(env, b"body"))
                self.assertEqual((environ, body), (env, b"body"))

    def test_environ_from_template(self):
        """A request's environ is a fresh copy of the template with the
        values filled in; a key the worker did not send is left out, or
        keeps the template's value when it has one (the server's default
        wsgi.url_scheme); the other entries join it."""
        template = rt.environ_template({"wsgi.url_scheme": "http", "wsgi.version": (1, 0)})
        sent = {"REQUEST_METHOD": "GET", "PATH_INFO": "/a", "HTTP_X": "1", "CONTENT_TYPE": "t"}
        environ, _ = rt.decode_request(request_payload(sent), template=template)
        self.assertEqual(environ, dict(sent, **{"wsgi.url_scheme": "http", "wsgi.version": (1, 0)}))
        self.assertNotIn("HTTP_HOST", environ)
        self.assertNotIn("REMOTE_PORT", environ)
        environ["HTTP_Y"] = "2"
        again, _ = rt.decode_request(request_payload(dict(sent, **{"wsgi.url_scheme": "https"})), template=template)
        self.assertEqual(again["wsgi.url_scheme"], "https")
        self.assertNotIn("HTTP_Y", again)
        self.assertEqual(template, rt.environ_template({"wsgi.url_scheme": "http", "wsgi.version": (1, 0)}))
        every = {k: "v%d" % i for i, k in enumerate(rt.ENVIRON_KEYS)}
        environ, _ = rt.decode_request(request_payload(every), template=template)
        self.assertEqual(environ, dict(every, **{"wsgi.version": (1, 0)}))
        for v in environ.values():
            self.assertIsNotNone(v)

    def test_starts(self):
        for c in V["starts"]:
            with self.subTest(c["name"]):
                headers = [(k, v) for k, v in c["headers"]]
                body = bytes.fromhex(c["body"])
                enc = rt.encode_start(c["id"], c["flags"], c["status"], headers, body)
                self.assertEqual(enc, bytes.fromhex(c["encoded"]))
                r = rt.Responder(None, None)
                err = c.get("start_response_error")
                if err:
                    with self.assertRaises({"ValueError": ValueError, "TypeError": TypeError}[err]):
                        r.start_response(c["status"], headers)
                else:
                    self.assertEqual(r.start_response(c["status"], headers), r.write)

    def test_invalid_frames(self):
        for c in V["invalid"]["frames"]:
            with self.subTest(c["name"]):
                data = bytes.fromhex(c["data"])
                if c["python"] == "protocol_error":
                    with self.assertRaises(rt.ProtocolError):
                        rt.unpack_frames(data)
                    continue
                self.assertEqual(c["python"], "incomplete")
                frames, off = rt.unpack_frames(data)
                self.assertEqual(b"".join(rt.pack_frame(*f) for f in frames), data[:off])
                rest = data[off:]
                if len(rest) >= rt.HEADER_SIZE:
                    (n,) = struct.unpack_from("<I", rest)
                    self.assertLess(len(rest), rt.HEADER_SIZE + n)

    def test_invalid_environs(self):
        for c in V["invalid"]["environs"]:
            with self.subTest(c["name"]):
                m = bytes.fromhex(c["marshal"])
                payload = struct.pack("<I", len(m)) + m
                if c["python"] == "error":
                    with self.assertRaises((rt.ProtocolError, ValueError, EOFError, TypeError)):
                        rt.decode_request(payload)
                else:
                    # marshal is laxer than Go's DecodeEnviron; the worker
                    # never sends these.
                    self.assertEqual(c["python"], "accept")
                    self.assertIs(type(rt.decode_request(payload)[0]), dict)
        self.assertGreater(sum(c["python"] == "error" for c in V["invalid"]["environs"]), 5)

    def test_invalid_starts_refused_by_start_response(self):
        n = 0
        for c in V["invalid"]["starts"]:
            err = c.get("start_response_error")
            if not err:
                continue  # only Go's ParseStart refuses it: the worker answers 500
            n += 1
            with self.subTest(c["name"]):
                with self.assertRaises(ValueError):
                    rt.Responder(None, None).start_response(
                        c["status"], [(k, v) for k, v in c["headers"]])
        self.assertGreater(n, 5)

    def test_decode_request_errors(self):
        env = encode_environ({"A": "b"})
        values = tuple(None for _ in rt.ENVIRON_KEYS)
        full = (1 << len(rt.ENVIRON_KEYS)) - 1

        def sized(m):
            return struct.pack("<I", len(m)) + m
        for payload in (b"", b"\x01\x00\x00", struct.pack("<I", len(env) + 1) + env,
                        struct.pack("<I", 3) + marshal.dumps("str")[:3],
                        request_payload({})[:-1],
                        struct.pack("<I", 2) + marshal.dumps({}),
                        struct.pack("<I", 5) + marshal.dumps(values),
                        sized(marshal.dumps(values + ([], full))),
                        sized(marshal.dumps(values + ({}, "x")))):
            with self.subTest(payload=payload):
                with self.assertRaises((rt.ProtocolError, ValueError, EOFError)):
                    rt.decode_request(payload)


# ----------------------------------------------------------------- fake worker

def one_body(body):
    """An app that returns body as one bytes object, with its Content-Length."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    return app


class FakeConnection(rt.Connection):
    """The real Connection (wait, dispatch, locks) without pipes: sent
    frames are recorded, and each time the runtime would block reading from
    the worker, step() decides which frames the worker sends."""

    def __init__(self, step=None):
        rt.Connection.__init__(self, -1, -1, False)
        self.sent = []
        self.sends = []  # frames per send() call
        self.step = step
        self.on_request = lambda req: None

    def send(self, data):
        frames, off = rt.unpack_frames(data)
        assert off == len(data), "send() of a partial frame"
        self.sent.extend(frames)
        self.sends.append(len(frames))

    def send_frame(self, head, body):
        self.send(head + bytes(body))

    def read_once(self):
        frames = self.step(self) if self.step else None
        if not frames:
            raise AssertionError("the runtime would wait forever: the worker has nothing to send")
        self.dispatch(frames)

    # Frames the worker has already sent, which poll_frames reads between
    # a streamed response's chunks without waiting (a test sets them).
    waiting = ()

    def readable(self):
        if self.waiting:
            self.step = lambda c, frames=list(self.waiting): frames
            self.waiting = ()
            return True
        return False

    def sent_of(self, ftype):
        return [f for f in self.sent if f[0] == ftype]


class BodyWorker:
    """Answers Read frames the way the worker does: one Body frame of at
    most the asked size per Read, FlagEnd on the last."""

    def __init__(self, sid, chunks, separate_end=False):
        self.sid = sid
        self.chunks = list(chunks)
        self.separate_end = separate_end
        self.answered = 0

    def __call__(self, conn):
        reads = conn.sent_of(rt.T_READ)
        assert len(reads) == self.answered + 1, "%d Reads sent, %d answered" % (len(reads), self.answered)
        _, flags, sid, payload = reads[-1]
        assert (flags, sid) == (0, self.sid)
        (n,) = struct.unpack("<I", payload)
        assert n == rt.READ_CHUNK, n
        self.answered += 1
        if not self.chunks:
            return [(rt.T_BODY, rt.F_END, self.sid, b"")]
        chunk = self.chunks.pop(0)
        assert len(chunk) <= n
        end = not self.chunks and not self.separate_end
        return [(rt.T_BODY, rt.F_END if end else 0, self.sid, chunk)]


def split(data, sizes):
    out = []
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i:i + n])
        i += n
        k += 1
    return out


def real_pipes(test, threaded=False):
    """A Connection over two real pipes, as the worker makes them, and the
    worker's ends: (conn, fd the worker writes frames to, fd it reads the
    runtime's frames from). Every descriptor is closed at the test's end;
    the worker's write end can be closed earlier with close_fd."""
    to_rt = os.pipe()
    from_rt = os.pipe()
    fds = set(to_rt + from_rt)

    def close_fd(fd):
        if fd in fds:
            fds.discard(fd)
            os.close(fd)
    test.close_fd = close_fd
    test.addCleanup(lambda: [close_fd(fd) for fd in list(fds)])
    return rt.Connection(to_rt[0], from_rt[1], threaded), to_rt[1], from_rt[0]


def make_input(data, first=0, sizes=(7,), separate_end=False):
    """An Input over data: `first` bytes came with the Request frame, the
    rest arrives in chunks of the given sizes."""
    worker = BodyWorker(1, split(data[first:], list(sizes)), separate_end)
    conn = FakeConnection(worker)
    done = first >= len(data) and not separate_end
    req = rt.Request(conn, 1, {}, data[:first], done)
    conn.requests[1] = req
    return rt.Input(req), conn, worker


# ----------------------------------------------------------------- wsgi.input

LINES = b"first line\n\nthird\r\n" + b"x" * 100 + b"\n" + b"a\nb\nc\n" + b"no newline at the end"


class InputTests(unittest.TestCase):
    layouts = [
        dict(first=0, sizes=(1,)),
        dict(first=0, sizes=(7,)),
        dict(first=5, sizes=(3, 11, 1)),
        dict(first=0, sizes=(1000,)),
        dict(first=len(LINES), sizes=(1,)),
        dict(first=3, sizes=(2,), separate_end=True),
    ]

    def each(self):
        for layout in self.layouts:
            with self.subTest(**layout):
                yield make_input(LINES, **layout)

    def test_read_all(self):
        for inp, conn, _ in self.each():
            self.assertEqual(inp.read(), LINES)
            self.assertEqual(inp.read(), b"")
            self.assertEqual(inp.read(10), b"")
            self.assertEqual(inp.readline(), b"")

    def test_read_none(self):
        for inp, _, _ in self.each():
            self.assertEqual(inp.read(None), LINES)

    def test_read_n(self):
        for n in (1, 2, 5, 64, 1000):
            for inp, _, _ in self.each():
                parts = []
                while True:
                    p = inp.read(n)
                    if not p:
                        break
                    parts.append(p)
                self.assertEqual(b"".join(parts), LINES)
                self.assertTrue(all(len(p) == n for p in parts[:-1]))
                self.assertLessEqual(len(parts[-1]), n)

    def test_read_zero_sends_nothing(self):
        inp, conn, _ = make_input(LINES)
        self.assertEqual(inp.read(0), b"")
        self.assertEqual(conn.sent, [])

    def test_readline(self):
        want = io.BytesIO(LINES).readlines()
        for inp, _, _ in self.each():
            got = []
            while True:
                line = inp.readline()
                if not line:
                    break
                got.append(line)
            self.assertEqual(got, want)

    def test_readline_size(self):
        for size in (0, 1, 3, 10, 200):
            for inp, _, _ in self.each():
                ref = io.BytesIO(LINES)
                for _ in range(60):
                    self.assertEqual(inp.readline(size), ref.readline(size))
                self.assertEqual(inp.read(), ref.read())

    def test_readlines_hint(self):
        for hint in (-1, 0, 1, 12, 30, 10000):
            for inp, _, _ in self.each():
                ref = io.BytesIO(LINES)
                self.assertEqual(inp.readlines(hint), ref.readlines(hint))
                self.assertEqual(inp.read(), ref.read())

    def test_iteration(self):
        for inp, _, _ in self.each():
            self.assertEqual(list(inp), io.BytesIO(LINES).readlines())
            self.assertIs(iter(inp), inp)

    def test_random_operations_match_bytesio(self):
        rnd = random.Random(1234)
        for trial in range(60):
            data = bytes(rnd.choice(b"ab\n\r\x00\xff") for _ in range(rnd.randrange(0, 400)))
            sizes = [rnd.randrange(1, 40) for _ in range(5)]
            first = rnd.randrange(0, len(data) + 1)
            inp, _, _ = make_input(data, first, sizes, separate_end=rnd.random() < 0.3)
            ref = io.BytesIO(data)
            for _ in range(40):
                op = rnd.randrange(4)
                n = rnd.choice([-1, 0, 1, 2, 5, 17, 100])
                if op == 0:
                    a, b = inp.read(n), ref.read(n)
                elif op == 1:
                    a, b = inp.readline(n), ref.readline(n)
                elif op == 2:
                    a, b = inp.readlines(n), ref.readlines(n)
                else:
                    a, b = next(inp, None), next(ref, None)
                self.assertEqual(a, b, "trial %d op %d n %d" % (trial, op, n))

    def test_reads_on_demand(self):
        # Bytes that came with the Request frame need no Read.
        inp, conn, worker = make_input(LINES, first=20, sizes=(10,))
        self.assertEqual(inp.read(20), LINES[:20])
        self.assertEqual(conn.sent, [])
        # Then one Read per chunk, never two outstanding.
        self.assertEqual(inp.read(15), LINES[20:35])
        self.assertEqual(len(conn.sent_of(rt.T_READ)), 2)
        self.assertEqual(worker.answered, 2)
        inp.read()
        self.assertEqual(len(conn.sent), len(conn.sent_of(rt.T_READ)))
        # Nothing more is asked once the body has ended.
        n = len(conn.sent)
        self.assertEqual(inp.read(), b"")
        self.assertEqual(len(conn.sent), n)

    def test_complete_body_sends_no_read(self):
        for data in (b"", b"all of it"):
            inp, conn, _ = make_input(data, first=len(data))
            self.assertEqual(inp.read(), data)
            self.assertEqual(list(inp), [])
            self.assertEqual(conn.sent, [])

    def test_cancel_while_reading_the_body(self):
        conn = FakeConnection(lambda c: [(rt.T_CANCEL, 0, 1, b"")])
        req = rt.Request(conn, 1, {}, b"partial", False)
        conn.requests[1] = req
        inp = rt.Input(req)
        self.assertEqual(inp.read(7), b"partial")
        with self.assertRaises(rt.ClientDisconnected):
            inp.read()
        self.assertTrue(req.cancelled)
        self.assertEqual(len(conn.sent_of(rt.T_READ)), 1)

    def test_large_body_over_real_pipes(self):
        """The real Connection, reading on demand from a pipe, with a
        worker thread that answers each Read with one Body frame sent in
        small pieces."""
        for threaded in (False, True):
            with self.subTest(threaded=threaded):
                self._pipes_body(threaded)

    def test_send_frame_over_a_real_pipe(self):
        """send_frame delivers header and payload whole and in order, for
        payloads far larger than the pipe's buffer and for memoryviews."""
        conn, _, theirs = real_pipes(self)
        payload = bytes(random.getrandbits(8) for _ in range(4096)) * 700  # 2.8 MB
        received = bytearray()

        def reader():
            while len(received) < 2 * (rt.HEADER_SIZE + len(payload)):
                data = os.read(theirs, 1 << 20)
                if not data:
                    return
                received.extend(data)
        t = threading.Thread(target=reader)
        t.start()
        conn.send_frame(rt.HEADER.pack(len(payload), rt.T_DATA, 0, 7), payload)
        conn.send_frame(rt.HEADER.pack(len(payload), rt.T_DATA, rt.F_END, 7), memoryview(payload))
        t.join(10)
        self.assertFalse(t.is_alive())
        frames, off = rt.unpack_frames(received)
        self.assertEqual(off, len(received))
        self.assertEqual([(f[0], f[1], f[2]) for f in frames], [(rt.T_DATA, 0, 7), (rt.T_DATA, rt.F_END, 7)])
        self.assertTrue(frames[0][3] == payload and frames[1][3] == payload)

    def test_read_once_reassembles_frames_across_reads(self):
        """read_once's reused buffer: frames split across reads, many per
        read, and frames larger than the buffer all arrive intact, Request
        frames (decoded straight from the buffer) and others alike."""
        conn, theirs, _ = real_pipes(self)
        got = []
        conn.on_request = got.append
        sizes = [10, 3000, rt.RECV_BUFFER + 12345, 7, 200000, 3 * rt.RECV_BUFFER, 1]
        wire = bytearray()
        for sid, size in enumerate(sizes, 1):
            # Odd streams: the first body bytes in the Request, the rest
            # in a Body frame; every stream gets a Window frame.
            body = b"b%d" % sid if sid % 2 else b""
            payload = request_payload({"PATH_INFO": "/%d" % sid, "HTTP_X": "v" * size}, body)
            wire += rt.HEADER.pack(len(payload), rt.T_REQUEST, 0 if body else rt.F_END, sid) + payload
            if body:
                wire += rt.pack_frame(rt.T_BODY, rt.F_END, sid, b"rest" * size)
            wire += rt.pack_frame(rt.T_WINDOW, 0, sid, struct.pack("<I", sid))
        rng = random.Random(7)

        def writer():
            off = 0
            while off < len(wire):
                n = rng.choice([1, 9, 4096, 70000, 300000])
                rt.write_all(theirs, wire[off:off + n])
                off += n
        t = threading.Thread(target=writer)
        t.start()
        while len(got) < len(sizes) or got[-1].credit == rt.INITIAL_WINDOW:  # up to the last frame
            conn.read_once()
        t.join(10)
        self.assertEqual([r.sid for r in got], list(range(1, len(sizes) + 1)))
        for r, size in zip(got, sizes):
            self.assertEqual(r.environ["PATH_INFO"], "/%d" % r.sid)
            self.assertEqual(r.environ["HTTP_X"], "v" * size)
            self.assertEqual(r.credit, rt.INITIAL_WINDOW + r.sid)
            self.assertIs(r.body_done, True)
            if r.sid % 2:
                self.assertEqual(r.body, [b"b%d" % r.sid, b"rest" * size])
            else:
                self.assertEqual(r.body, [])
        self.assertEqual(conn.roff, conn.rend)

    def _pipes_body(self, threaded):
        data = random.Random(7).randbytes(300000)
        conn, to_rt, from_rt = real_pipes(self, threaded)
        conn.on_request = lambda req: None
        req = rt.Request(conn, 5, {}, data[:1000], False)
        conn.requests[5] = req
        errors = []

        def worker():
            try:
                buf = bytearray()
                off = 0
                pos = 1000
                while pos < len(data) or pos == len(data):
                    frames, off = rt.unpack_frames(buf, off)
                    if not frames:
                        chunk = os.read(from_rt, 4096)
                        if not chunk:
                            return
                        buf += chunk
                        continue
                    for ftype, flags, sid, payload in frames:
                        assert (ftype, sid) == (rt.T_READ, 5), (ftype, sid)
                        (n,) = struct.unpack("<I", payload)
                        piece = data[pos:pos + n]
                        pos += len(piece)
                        end = rt.F_END if pos == len(data) else 0
                        frame = rt.pack_frame(rt.T_BODY, end, 5, piece)
                        for i in range(0, len(frame), 3000):
                            rt.write_all(to_rt, frame[i:i + 3000])
                        if end:
                            return
            except Exception as e:  # reported by the main thread
                errors.append(e)
                self.close_fd(to_rt)  # the runtime's reads see EOF

        def reader():
            try:
                while not conn.closed:
                    conn.read_once()
            except OSError:
                pass

        wt = threading.Thread(target=worker, daemon=True)
        wt.start()
        rthread = None
        if threaded:
            rthread = threading.Thread(target=reader, daemon=True)
            rthread.start()
        try:
            inp = rt.Input(req)
            got = inp.read(12345) + inp.readline() + inp.read()
            self.assertEqual(got, data)
        finally:
            wt.join(10)
            self.close_fd(to_rt)  # the reader thread sees EOF
            if rthread:
                rthread.join(10)
                self.assertFalse(rthread.is_alive())
        self.assertFalse(wt.is_alive())
        self.assertEqual(errors, [])


# ----------------------------------------------------------------- start_response

class StartResponseTests(unittest.TestCase):
    def sr(self):
        return rt.Responder(None, None)

    def test_accepts(self):
        for status, headers in [
            ("200 OK", []),
            ("404 Not Found", [("Content-Type", "text/plain")]),
            ("500 \u00e9rror", [("X-A", "caf\u00e9"), ("X-Empty", ""), ("X-Tab", "a\tb")]),
            ("200", []),  # as gunicorn: the worker adds the reason
            ("299 Custom Thing", []),
            ("204 ", []),
        ]:
            with self.subTest(status=status):
                r = self.sr()
                self.assertEqual(r.start_response(status, headers), r.write)
                self.assertEqual((r.status, r.headers), (status, headers))

    def test_refuses(self):
        for status, headers, exc in [
            (b"200 OK", [], TypeError),
            (200, [], TypeError),
            ("20", [], ValueError),
            ("20 OK", [], ValueError),
            ("\uff12\uff10\uff10 OK", [], ValueError),  # fullwidth digits
            ("abc OK", [], ValueError),
            ("200OK", [], ValueError),
            ("200 OK", (), TypeError),
            ("200 OK", [["X", "y"]], TypeError),
            ("200 OK", [("X", "y", "z")], TypeError),
            ("200 OK", [("X", 1)], TypeError),
            ("200 OK", [(b"X", "y")], TypeError),
            ("200 OK", [("X", b"y")], TypeError),
            ("200 OK", [("X", "a\rb")], ValueError),
            ("200 OK", [("X", "a\nb")], ValueError),
            ("200 OK", [("X", "a\r\nSet-Cookie: x")], ValueError),
            ("200 OK", [("X", "a\0b")], ValueError),
            ("200 OK", [("X\r", "v")], ValueError),
            ("200 OK", [("X\nY", "v")], ValueError),
            ("200 OK", [("X:", "v")], ValueError),
            ("200 OK", [("", "v")], ValueError),
            ("200 OK\r\nSet-Cookie: x=1", [], ValueError),
            ("200 OK\n", [], ValueError),
            ("200 O\0K", [], ValueError),
        ]:
            with self.subTest(status=status, headers=headers):
                r = self.sr()
                with self.assertRaises(exc):
                    r.start_response(status, headers)
                self.assertIsNone(r.status)

    def test_second_call_without_exc_info(self):
        r = self.sr()
        r.start_response("200 OK", [])
        with self.assertRaises(AssertionError):
            r.start_response("500 Oops", [])
        self.assertEqual(r.status, "200 OK")

    def test_exc_info_before_headers_sent_replaces(self):
        r = self.sr()
        r.start_response("200 OK", [("X-A", "1")])
        try:
            raise KeyError("k")
        except KeyError:
            r.start_response("500 Internal Server Error", [("X-B", "2")], sys.exc_info())
        self.assertEqual(r.status, "500 Internal Server Error")
        self.assertEqual(r.headers, [("X-B", "2")])

    def test_exc_info_first_call(self):
        r = self.sr()
        try:
            raise KeyError("k")
        except KeyError:
            r.start_response("500 Internal Server Error", [], sys.exc_info())
        self.assertEqual(r.status, "500 Internal Server Error")

    def test_exc_info_after_headers_sent_reraises(self):
        r = self.sr()
        r.start_response("200 OK", [])
        r.headers_sent = True
        err = KeyError("k")
        try:
            raise err
        except KeyError:
            info = sys.exc_info()
        with self.assertRaises(KeyError) as cm:
            r.start_response("500 Internal Server Error", [], info)
        self.assertIs(cm.exception, err)
        self.assertEqual(r.status, "200 OK")

    def test_non_latin1_head_is_refused_when_sent(self):
        conn = FakeConnection()
        req = rt.Request(conn, 3, {}, b"", True)
        r = rt.Responder(None, req)
        r.start_response("200 OK", [("X", "\u20ac")])
        with self.assertRaises(ValueError):
            r.write(b"x")
        self.assertEqual(conn.sent, [])


class HeadCacheTests(unittest.TestCase):
    """start_response's cache of the heads it has checked."""

    def setUp(self):
        saved = rt.head_cache, rt.head_cache_hits
        rt.head_cache, rt.head_cache_hits = {}, 0

        def restore():
            rt.head_cache, rt.head_cache_hits = saved
        self.addCleanup(restore)

    def start(self, status, headers):
        r = rt.Responder(None, None)
        self.assertEqual(r.start_response(status, headers), r.write)
        self.assertEqual((r.status, r.headers), (status, headers))
        return r.head, r.length

    def test_a_repeated_head_is_the_one_checked(self):
        cases = [
            ("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")],
             "200 OK\x00Content-Type\x00text/plain\x00Content-Length\x0013", 13),
            ("404 Not Found", [], "404 Not Found", None),
            ("200 OK", [("Content-Length", "1"), ("content-length", "2")],  # two: not trusted
             "200 OK\x00Content-Length\x001\x00content-length\x002", None),
            ("200 OK", [("Content-Length", "x1")], "200 OK\x00Content-Length\x00x1", None),
        ]
        for status, headers, head, length in cases:
            with self.subTest(status=status, headers=headers):
                self.assertEqual(self.start(status, list(headers)), (head, length))
                self.assertEqual(self.start(status, list(headers)), (head, length))  # an equal list: from the cache
        self.assertEqual(rt.head_cache_hits, len(cases))

    def test_long_heads_are_not_kept(self):
        big = [("Content-Security-Policy", "x" * rt.HEAD_CACHE_MAX)]
        self.start("200 OK", big)
        self.start("200 OK", big)
        self.assertEqual((rt.head_cache, rt.head_cache_hits), ({}, 0))

    def test_refused_heads_are_refused_again(self):
        for headers, exc in [([("X", "a\rb")], ValueError), ([["X", "y"]], TypeError), ([("X", ["y"])], TypeError)]:
            with self.subTest(headers=headers):
                for _ in range(2):
                    with self.assertRaises(exc):
                        rt.Responder(None, None).start_response("200 OK", headers)
        self.assertEqual(rt.head_cache, {})

    def test_heads_that_rarely_repeat_turn_the_cache_off(self):
        for i in range(rt.HEAD_CACHE_SIZE + 1):
            self.start("200 OK", [("ETag", str(i))])
        self.assertIsNone(rt.head_cache)
        self.assertEqual(self.start("200 OK", [("ETag", "x")]), ("200 OK\x00ETag\x00x", None))

    def test_heads_that_repeat_keep_the_cache(self):
        for _ in range(rt.HEAD_CACHE_SIZE + 1):
            self.start("200 OK", [])
        for i in range(rt.HEAD_CACHE_SIZE + 1):  # fills it: cleared, not dropped
            self.start("200 OK", [("ETag", str(i))])
        self.assertIsNotNone(rt.head_cache)
        self.assertLessEqual(len(rt.head_cache), rt.HEAD_CACHE_SIZE)


# ----------------------------------------------------------------- responses

class Result:
    """A response iterable that records close()."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.closed = 0

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        self.closed += 1


class ResponderTests(unittest.TestCase):
    def run_app(self, app, step=None, body=b"", environ=None):
        conn = FakeConnection(step)
        log = rt.Log("critical", 1)
        server = rt.Server(conn, app, {"threads": 1}, log)
        environ = rt.decode_environ(encode_environ(environ or {"RAW_URI": "/t"}), conn.environ_template)
        req = rt.Request(conn, 9, environ, body, True)
        conn.requests[9] = req
        rt.Responder(server, req).run(app)
        return conn

    def start_of(self, frame):
        ftype, flags, sid, payload = frame
        self.assertEqual((ftype, sid), (rt.T_START, 9))
        (n,) = struct.unpack_from("<I", payload)
        head = payload[4:4 + n].decode("latin-1").split("\0")
        return flags, head, payload[4 + n:]

    def test_small_response_is_one_frame(self):
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"hello"]
        conn = self.run_app(app)
        self.assertEqual(len(conn.sent), 1)
        flags, head, body = self.start_of(conn.sent[0])
        self.assertEqual(flags, rt.F_END)
        self.assertEqual(head, ["200 OK", "Content-Type", "text/plain"])
        self.assertEqual(body, b"hello")

    def test_iterable_of_one(self):
        # Not a list: the runtime cannot know it is the last chunk.
        res = Result([b"hello"])

        def app(environ, start_response):
            start_response("200 OK", [])
            return res
        conn = self.run_app(app)
        self.assertEqual([f[:2] for f in conn.sent], [(rt.T_START, 0), (rt.T_DATA, rt.F_END)])
        self.assertEqual(self.start_of(conn.sent[0])[2], b"hello")
        self.assertEqual(conn.sent[1][3], b"")
        self.assertEqual(res.closed, 1)

    def test_content_length_ends_the_stream_at_its_last_byte(self):
        """With a Content-Length, the frame that completes the body ends
        the stream: an iterator of one chunk is one frame. The iterator
        still runs to its end and is closed, as under gunicorn; what it
        yields past the Content-Length is dropped; an error after the body
        is complete is logged, not sent (the client has its response)."""
        H = [("Content-Type", "text/plain"), ("content-length", "5")]
        tests = [
            # name, headers, chunks, raise after, frames (type, flags, body)
            ("one chunk", H, [b"hello"], False, [(rt.T_START, rt.F_END, b"hello")]),
            ("two chunks", H, [b"he", b"llo"], False,
             [(rt.T_START, 0, b"he"), (rt.T_DATA, rt.F_END, b"llo")]),
            ("too much", H, [b"hel", b"lo world", b"!!"], False,
             [(rt.T_START, 0, b"hel"), (rt.T_DATA, rt.F_END, b"lo")]),
            ("error after the body", H, [b"hello"], True, [(rt.T_START, rt.F_END, b"hello")]),
            ("error before the end", H, [b"hel"], True, [(rt.T_START, 0, b"hel"), (rt.T_ERROR, 0, None)]),
            ("short body", H, [b"hel"], False, [(rt.T_START, 0, b"hel"), (rt.T_DATA, rt.F_END, b"")]),
            ("no body (HEAD)", H, [], False, [(rt.T_START, rt.F_END, b"")]),
            ("zero length", [("Content-Length", "0")], [b""], False, [(rt.T_START, rt.F_END, b"")]),
            ("not a number", [("Content-Length", "+5")], [b"hello"], False,
             [(rt.T_START, 0, b"hello"), (rt.T_DATA, rt.F_END, b"")]),
            ("two lengths", [("Content-Length", "5"), ("Content-Length", "5")], [b"hello"], False,
             [(rt.T_START, 0, b"hello"), (rt.T_DATA, rt.F_END, b"")]),
            ("no length", [], [b"hello"], False, [(rt.T_START, 0, b"hello"), (rt.T_DATA, rt.F_END, b"")]),
        ]
        for name, headers, chunks, fail, want in tests:
            with self.subTest(name):
                ran_to_end = []
                res = Result([])

                def gen():
                    yield from chunks
                    if fail:
                        raise RuntimeError("after the body")
                    ran_to_end.append(True)
                res.chunks = gen()

                def app(environ, start_response):
                    start_response("200 OK", headers)
                    return res
                conn = self.run_app(app)
                got = []
                for f in conn.sent:
                    body = self.start_of(f)[2] if f[0] == rt.T_START else (f[3] if f[0] == rt.T_DATA else None)
                    got.append((f[0], f[1], body))
                self.assertEqual(got, want)
                self.assertEqual(res.closed, 1)
                self.assertEqual(bool(ran_to_end), not fail, "the iterator did not run to its end")

    def test_content_length_with_write_and_a_list(self):
        """write() and a one-item list stop at the Content-Length too."""
        def app(environ, start_response):
            write = start_response("200 OK", [("Content-Length", "4")])
            write(b"ab")
            write(b"cdef")
            write(b"gh")
            return []
        conn = self.run_app(app)
        self.assertEqual([(f[0], f[1]) for f in conn.sent], [(rt.T_START, 0), (rt.T_DATA, rt.F_END)])
        self.assertEqual(conn.sent[1][3], b"cd")

        def app2(environ, start_response):
            start_response("200 OK", [("Content-Length", "3")])
            return [b"abcdef"]
        conn = self.run_app(app2)
        self.assertEqual(len(conn.sent), 1)
        self.assertEqual(self.start_of(conn.sent[0])[0::2], (rt.F_END, b"abc"))

        # A chunk larger than the window: only its last frame ends the stream.
        big = bytes(range(256)) * 2500  # 640 000 bytes

        def step(conn):
            return [(rt.T_WINDOW, 0, 9, struct.pack("<I", 100000))]

        def app3(environ, start_response):
            start_response("200 OK", [("Content-Length", str(len(big)))])
            return iter([big])
        conn = self.run_app(app3, step)
        flags = [f[1] for f in conn.sent]
        self.assertEqual(flags[-1], rt.F_END)
        self.assertEqual(set(flags[:-1]), {0})
        body = self.start_of(conn.sent[0])[2] + b"".join(f[3] for f in conn.sent[1:])
        self.assertEqual(body, big)

    def test_list_of_one_is_one_frame(self):
        def app(environ, start_response):
            start_response("201 Created", [])
            return [b"x" * 1000]
        conn = self.run_app(app)
        self.assertEqual(len(conn.sent), 1)
        self.assertEqual(self.start_of(conn.sent[0])[0], rt.F_END)

    def test_empty_response(self):
        def app(environ, start_response):
            start_response("204 No Content", [])
            return []
        conn = self.run_app(app)
        self.assertEqual(len(conn.sent), 1)
        self.assertEqual(self.start_of(conn.sent[0]), (rt.F_END, ["204 No Content"], b""))

    def test_streaming(self):
        res = Result([b"a", b"", b"bb", b"ccc"])

        def app(environ, start_response):
            start_response("200 OK", [])
            return res
        conn = self.run_app(app)
        types = [(f[0], f[1]) for f in conn.sent]
        self.assertEqual(types, [(rt.T_START, 0), (rt.T_DATA, 0), (rt.T_DATA, 0), (rt.T_DATA, rt.F_END)])
        self.assertEqual(self.start_of(conn.sent[0])[2], b"a")
        self.assertEqual([f[3] for f in conn.sent[1:]], [b"bb", b"ccc", b""])
        self.assertEqual(res.closed, 1)

    def shared_conn(self, conn, slots=4, slot_size=64 << 10, header=4096):
        """Gives conn shared body memory, as the worker does (a memfd)."""
        fd = os.memfd_create("test-bodies")
        os.ftruncate(fd, header + slots * slot_size)
        conn.attach_shared(fd, header, slots, slot_size)
        self.addCleanup(conn.shared.release)
        self.addCleanup(conn.states.release)
        return conn

    def run_shared(self, app):
        """Runs app on a connection with 4 shared slots and credit to spare."""
        conn = self.shared_conn(FakeConnection(step=lambda c: [(rt.T_WINDOW, 0, 9, rt.U32.pack(1 << 20))]))
        server = rt.Server(conn, app, {"threads": 1}, rt.Log("critical", 1))
        req = rt.Request(conn, 9, {"RAW_URI": "/t"}, b"", True)
        conn.requests[9] = req
        rt.Responder(server, req).run(app)
        return conn

    def slot_bytes(self, conn, frame):
        ftype, flags, sid, payload = frame
        self.assertEqual((ftype, sid), (rt.T_SHARED, 9))
        slot, n = rt.SHARED.unpack(payload)
        self.assertEqual(conn.states[slot], 1, "a sent slot is marked filled")
        off = conn.slot_base + slot * conn.slot_size
        return slot, bytes(conn.shared[off:off + n])

    def test_large_chunks_go_through_shared_memory(self):
        chunks = [bytes([i]) * (64 << 10) for i in range(4)] + [b"x" * 100, b"y" * (100 << 10)]

        def app(environ, start_response):
            start_response("200 OK", [])
            return iter(chunks)
        conn = self.run_shared(app)
        got = [(f[0], f[1]) for f in conn.sent]
        S, D = rt.T_SHARED, rt.T_DATA
        # A large first chunk does not ride with the head; 64 KiB pieces
        # take the lowest free slots; a small chunk stays inline; once
        # the slots are used up (nothing frees them here) bytes go inline.
        self.assertEqual(got, [(rt.T_START, 0), (S, 0), (S, 0), (S, 0), (S, 0), (D, 0), (D, 0), (D, rt.F_END)])
        self.assertEqual(self.start_of(conn.sent[0])[2], b"")
        shared = [self.slot_bytes(conn, f) for f in conn.sent if f[0] == S]
        self.assertEqual([s for s, _ in shared], [0, 1, 2, 3])
        self.assertEqual([b for _, b in shared], chunks[:4])
        self.assertEqual([f[3] for f in conn.sent[5:]], [b"x" * 100, chunks[5], b""])

    def test_large_single_body_goes_through_shared_memory(self):
        body = b"q" * (100 << 10)
        conn = self.run_shared(one_body(body))
        self.assertEqual([(f[0], f[1]) for f in conn.sent], [(rt.T_START, 0), (rt.T_SHARED, 0), (rt.T_SHARED, rt.F_END)])
        self.assertEqual(self.start_of(conn.sent[0])[2], b"")
        self.assertEqual(b"".join(self.slot_bytes(conn, f)[1] for f in conn.sent[1:]), body)

    def test_one_write_is_one_send(self):
        # The head, three full slots and a small tail: five frames, one send.
        body = b"q" * (200 << 10)
        conn = self.run_shared(one_body(body))
        S = rt.T_SHARED
        self.assertEqual([(f[0], f[1]) for f in conn.sent],
                         [(rt.T_START, 0), (S, 0), (S, 0), (S, 0), (rt.T_DATA, rt.F_END)])
        self.assertEqual(conn.sends, [5])
        self.assertEqual(b"".join(self.slot_bytes(conn, f)[1] for f in conn.sent[1:4]) + conn.sent[4][3], body)

    def test_frames_go_out_before_waiting_for_credit(self):
        # 192 KiB with 128 KiB of credit: the head and the two slots the
        # credit covers must reach the worker before the runtime waits,
        # or the worker has nothing to write and no credit to return.
        body = b"w" * (192 << 10)
        waits = []

        def step(conn):
            waits.append([f[0] for f in conn.sent])
            return [(rt.T_WINDOW, 0, 9, rt.U32.pack(128 << 10))]
        conn = self.shared_conn(FakeConnection(step))
        server = rt.Server(conn, None, {"threads": 1}, rt.Log("critical", 1))
        req = rt.Request(conn, 9, {"RAW_URI": "/t"}, b"", True)
        req.credit = 128 << 10
        conn.requests[9] = req
        rt.Responder(server, req).run(one_body(body))
        S = rt.T_SHARED
        self.assertEqual(waits, [[rt.T_START, S, S]])
        self.assertEqual(conn.sends, [3, 1])
        self.assertEqual(conn.sent[-1][:2], (S, rt.F_END))

    def test_shared_request_body(self):
        conn = FakeConnection()
        fd = os.memfd_create("test-bodies")
        os.ftruncate(fd, 4096 + 4 * 1024)
        conn.attach_shared(fd, 4096, 2, 1024, body_slots=2)
        self.addCleanup(conn.shared.release)
        self.addCleanup(conn.states.release)
        base = 4096 + 2 * 1024
        conn.shared[base + 1024:base + 1024 + 5] = b"hello"  # body slot 1, as the worker fills it
        req = rt.Request(conn, 9, {}, b"", False)
        req.read_pending = True
        conn.requests[9] = req
        conn.dispatch([(rt.T_SHARED_BODY, rt.F_END, 9, rt.SHARED.pack(1, 5))])
        self.assertEqual(req.body, [b"hello"])
        self.assertTrue(req.body_done)
        self.assertFalse(req.read_pending)
        conn.shared[base + 1024:base + 1024 + 5] = b"XXXXX"  # the worker reuses the slot
        self.assertEqual(req.body, [b"hello"], "the bytes were copied out")
        for bad in (rt.SHARED.pack(2, 5), rt.SHARED.pack(0, 1025)):
            with self.assertRaises(rt.ProtocolError):
                conn.dispatch([(rt.T_SHARED_BODY, 0, 9, bad)])
        # A stream the runtime has forgotten: the frame is dropped, unread.
        conn.dispatch([(rt.T_SHARED_BODY, 0, 77, rt.SHARED.pack(9, 5))])

    def test_freed_slots_are_reused_lowest_first(self):
        conn = self.shared_conn(FakeConnection())
        for want in (0, 1, 2, 3, -1):
            self.assertEqual(conn.take_slot(), want)
        conn.states[2] = 0  # the worker wrote slot 2 out
        conn.states[0] = 0
        self.assertEqual([conn.take_slot() for _ in range(3)], [0, 2, -1])

    def test_content_length_end_on_a_shared_frame(self):
        body = b"z" * (128 << 10)

        def app(environ, start_response):
            start_response("200 OK", [("Content-Length", str(len(body)))])
            yield body[:1]
            yield body[1:]
            yield b"past the end"
        conn = self.run_shared(app)
        self.assertEqual([(f[0], f[1]) for f in conn.sent], [(rt.T_START, 0), (rt.T_SHARED, 0), (rt.T_SHARED, rt.F_END)])
        sent = self.start_of(conn.sent[0])[2] + b"".join(self.slot_bytes(conn, f)[1] for f in conn.sent[1:])
        self.assertEqual(sent, body)

    def test_write_callable(self):
        def app(environ, start_response):
            write = start_response("200 OK", [])
            write(b"one")
            write(bytearray(b"two"))
            return [b"three"]
        conn = self.run_app(app)
        self.assertEqual([f[0] for f in conn.sent], [rt.T_START, rt.T_DATA, rt.T_DATA, rt.T_DATA])
        self.assertEqual(self.start_of(conn.sent[0])[2] + b"".join(f[3] for f in conn.sent[1:]), b"onetwothree")
        self.assertEqual(conn.sent[-1][1], rt.F_END)

    def test_environ(self):
        seen = {}

        def app(environ, start_response):
            seen.update(environ)
            start_response("200 OK", [])
            return [environ["wsgi.input"].read()]
        conn = self.run_app(app, body=b"posted", environ={"REQUEST_METHOD": "POST"})
        self.assertEqual(seen["REQUEST_METHOD"], "POST")
        self.assertEqual(seen["wsgi.version"], (1, 0))
        self.assertEqual(seen["wsgi.url_scheme"], "http")
        self.assertFalse(seen["wsgi.multithread"])
        self.assertTrue(seen["wsgi.input_terminated"])
        self.assertIs(seen["wsgi.file_wrapper"], rt.FileWrapper)
        self.assertEqual(self.start_of(conn.sent[0])[2], b"posted")

    def test_input_of_a_bodiless_request(self):
        """A request the worker sent whole with no body bytes reads as empty
        from the shared EMPTY_INPUT; one with a body gets its own Input."""
        inputs = []

        def app(environ, start_response):
            inp = environ["wsgi.input"]
            inputs.append(inp)
            got = (inp.read(), inp.read(5), inp.readline(), inp.readlines(), list(inp))
            start_response("200 OK", [])
            return [repr(got).encode()]
        conn = self.run_app(app)
        self.assertIs(inputs[0], rt.EMPTY_INPUT)
        self.assertEqual(self.start_of(conn.sent[0])[2], repr((b"", b"", b"", [], [])).encode())
        conn = self.run_app(app, body=b"one\ntwo")
        self.assertIsInstance(inputs[1], rt.Input)
        self.assertEqual(self.start_of(conn.sent[0])[2], repr((b"one\ntwo", b"", b"", [], [])).encode())

    def test_credit(self):
        """The runtime never sends more body than the worker granted."""
        chunk = b"z" * 100000
        granted = [rt.INITIAL_WINDOW]
        grants = []

        def step(conn):
            grants.append(len(conn.sent))
            granted[0] += 50000
            return [(rt.T_WINDOW, 0, 9, struct.pack("<I", 50000))]

        count = rt.INITIAL_WINDOW // len(chunk) + 10  # beyond the first window

        def app(environ, start_response):
            start_response("200 OK", [])
            return (chunk for _ in range(count))
        conn = self.run_app(app, step)
        self.assertTrue(grants, "the response never ran out of credit")
        sent = 0
        for i, f in enumerate(conn.sent):
            body = self.start_of(f)[2] if f[0] == rt.T_START else f[3]
            self.assertLessEqual(len(body), rt.MAX_DATA)
            sent += len(body)
        self.assertEqual(sent, len(chunk) * count)
        self.assertLessEqual(sent, granted[0])
        self.assertEqual(conn.sent[-1][:2], (rt.T_DATA, rt.F_END))

    def test_large_single_body_respects_credit(self):
        """A body larger than the window goes out in frames of at most
        MAX_DATA; exactly the window's worth before the first grant."""
        body = bytes(range(256)) * ((rt.INITIAL_WINDOW + 10) // 256 + 1)
        before_grant = []

        def step(conn):
            if not before_grant:
                before_grant.append(len(conn.sent))
            return [(rt.T_WINDOW, 0, 9, struct.pack("<I", 1 << 20))]

        def app(environ, start_response):
            start_response("200 OK", [])
            return [body]
        conn = self.run_app(app, step)
        flags, _, first = self.start_of(conn.sent[0])
        self.assertEqual(flags, 0)
        self.assertEqual(len(first), min(rt.INITIAL_WINDOW, rt.MAX_DATA))
        bodies = [first] + [f[3] for f in conn.sent[1:]]
        self.assertTrue(all(len(b) <= rt.MAX_DATA for b in bodies))
        self.assertEqual(sum(len(b) for b in bodies[:before_grant[0]]), rt.INITIAL_WINDOW)
        self.assertEqual(b"".join(bodies), body)

    def test_cancel_stops_the_app(self):
        res = Result([b"y" * rt.INITIAL_WINDOW, b"never sent"])

        def step(conn):
            return [(rt.T_CANCEL, 0, 9, b"")]

        def app(environ, start_response):
            start_response("200 OK", [])
            return res
        conn = self.run_app(app, step)
        types = [f[0] for f in conn.sent]
        self.assertEqual(types, [rt.T_START] + [rt.T_DATA] * (len(types) - 2) + [rt.T_ERROR])
        self.assertTrue(all(f[1] == 0 for f in conn.sent[:-1]))
        self.assertEqual(len(self.start_of(conn.sent[0])[2]) + sum(len(f[3]) for f in conn.sent[1:-1]),
                         rt.INITIAL_WINDOW)  # the first chunk, not "never sent"
        self.assertEqual(conn.sent[-1][3], b"client disconnected")
        self.assertEqual(res.closed, 1)

    def test_cancel_between_small_chunks_stops_the_app(self):
        # One thread, a slow stream of small chunks that never runs out of
        # credit: the Cancel of a client that left is read between two
        # chunks, not after the whole (here endless) stream.
        conn_box = []
        chunks = []

        def app(environ, start_response):
            start_response("200 OK", [])

            def stream():
                try:
                    for i in range(1000):
                        if i == 2:  # the client leaves: the worker sends Cancel
                            conn_box[0].waiting = [(rt.T_CANCEL, 0, 9, b"")]
                        chunks.append(i)
                        yield b"data: %d\n\n" % i
                        time.sleep(2 * rt.POLL_INTERVAL)
                finally:
                    chunks.append("closed")
            return stream()

        conn = FakeConnection()
        conn_box.append(conn)
        log = rt.Log("critical", 1)
        server = rt.Server(conn, app, {"threads": 1}, log)
        environ = rt.decode_environ(encode_environ({"RAW_URI": "/sse"}), conn.environ_template)
        req = rt.Request(conn, 9, environ, b"", True)
        conn.requests[9] = req
        rt.Responder(server, req).run(app)
        self.assertEqual(chunks, [0, 1, 2, "closed"])
        self.assertEqual([f[0] for f in conn.sent], [rt.T_START, rt.T_DATA, rt.T_ERROR])
        self.assertEqual(conn.sent[-1][3], b"client disconnected")

    def test_errors_end_the_stream(self):
        def before_start(environ, start_response):
            raise RuntimeError("boom")

        def no_start(environ, start_response):
            return [b"x"]

        def not_bytes(environ, start_response):
            start_response("200 OK", [])
            return ["text"]

        def bad_header(environ, start_response):
            start_response("200 OK", [("X", "a\nb")])
            return [b""]

        def mid_stream(environ, start_response):
            start_response("200 OK", [])
            yield b"first"
            raise RuntimeError("later")

        for app, frames, msg in [
            (before_start, [rt.T_ERROR], b"RuntimeError: boom"),
            (no_start, [rt.T_ERROR], b"AssertionError"),
            (not_bytes, [rt.T_ERROR], b"TypeError"),
            (bad_header, [rt.T_ERROR], b"ValueError"),
            (mid_stream, [rt.T_START, rt.T_ERROR], b"RuntimeError: later"),
        ]:
            with self.subTest(app.__name__):
                old = sys.stderr
                sys.stderr = io.StringIO()  # the traceback the runtime logs
                try:
                    conn = self.run_app(app)
                finally:
                    sys.stderr = old
                self.assertEqual([f[0] for f in conn.sent], frames)
                self.assertTrue(conn.sent[-1][3].startswith(msg), conn.sent[-1][3])
                # Exactly one terminal frame.
                self.assertEqual(len(conn.sent_of(rt.T_ERROR)), 1)


class CycleTests(unittest.TestCase):
    """A finished request is freed by reference counting alone: the runtime
    leaves no reference cycle behind for Python's cycle collector, which
    would otherwise run every few hundred requests."""

    def test_finished_request_leaves_no_cycle(self):
        def read_body(environ, start_response):
            start_response("200 OK", [])
            return [environ["wsgi.input"].read()]

        def generator(environ, start_response):
            start_response("200 OK", [])
            yield b"a"
            yield b"b"

        def failing(environ, start_response):
            raise RuntimeError("the app failed")

        cases = [
            # name, app, first body bytes, threaded connection
            ("one body, no request body", one_body(b"hello"), b"", False),
            ("request body read", read_body, b"posted", False),
            ("request body left unread", one_body(b"x"), b"posted", False),
            ("generator", generator, b"", False),
            ("app error", failing, b"", False),
            ("threaded connection", one_body(b"hello"), b"", True),
        ]
        for name, app, body, threaded in cases:
            with self.subTest(name):
                refs = []

                def wrapped(environ, start_response):
                    # Freed with the environ, unless a cycle holds it.
                    environ["test.marker"] = marker = Marker()
                    refs.append(weakref.ref(marker))
                    return app(environ, start_response)

                conn = FakeConnection()
                conn.threaded = threaded
                server = rt.Server(conn, wrapped, {"threads": 1}, rt.Log("critical", 1))
                req = rt.Request(conn, 9, {"RAW_URI": "/t"}, body, True)
                conn.requests[9] = req
                enabled = gc.isenabled()
                gc.disable()
                try:
                    server.handle(req)
                    del req
                    self.assertEqual(len(refs), 1)
                    self.assertIsNone(refs[0](), "the request's environ outlived it")
                finally:
                    if enabled:
                        gc.enable()
                self.assertTrue(conn.sent, "no response was sent")


class Marker:
    """An object to hold a weak reference to."""


# ----------------------------------------------------------------- load_app

APP_MODULE = '''
def application(environ, start_response):
    return [b"default"]

def app(environ, start_response):
    return [b"app"]

def create_app(name, k=None):
    def made(environ, start_response):
        return [name.encode(), repr(k).encode()]
    made.args = (name, k)
    return made

def broken_factory():
    raise TypeError("inside the factory")

not_callable = 42
nothing = None
'''


class LoadAppTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="gorn-load-app-")
        sys.path.insert(0, self.dir)
        self.names = []
        self.cwd = os.getcwd()

    def tearDown(self):
        os.chdir(self.cwd)
        sys.path.remove(self.dir)
        for n in self.names:
            sys.modules.pop(n, None)
        shutil.rmtree(self.dir)

    def module(self, source):
        name = "gorn_test_app_%s" % uuid.uuid4().hex
        with open(os.path.join(self.dir, name + ".py"), "w") as f:
            f.write(source)
        importlib.invalidate_caches()
        self.names.append(name)
        return name

    def test_loads(self):
        m = self.module(APP_MODULE)
        self.assertEqual(rt.load_app(m)(None, None), [b"default"])
        self.assertEqual(rt.load_app(m + ":app")(None, None), [b"app"])
        made = rt.load_app(m + ":create_app('x', k=1)")
        self.assertEqual(made.args, ("x", 1))
        self.assertEqual(rt.load_app(m + ":create_app(name='y')").args, ("y", None))

    def test_dotted_module(self):
        pkg = "gorn_test_pkg_%s" % uuid.uuid4().hex
        os.mkdir(os.path.join(self.dir, pkg))
        with open(os.path.join(self.dir, pkg, "__init__.py"), "w"):
            pass
        with open(os.path.join(self.dir, pkg, "wsgi.py"), "w") as f:
            f.write(APP_MODULE)
        importlib.invalidate_caches()
        self.names += [pkg, pkg + ".wsgi"]
        self.assertEqual(rt.load_app(pkg + ".wsgi:app")(None, None), [b"app"])

    def test_app_errors(self):
        m = self.module(APP_MODULE)
        for spec, msg in [
            (m + ":missing", "Failed to find attribute 'missing'"),
            (m + ":not_callable", "must be callable"),
            (m + ":nothing", "Failed to find application object"),
            (m + ":create_app(x)", "literal values"),
            (m + ":create_app()", "Error while loading app"),
            (m + ":1 + 2", "Failed to parse"),
            (m + ":a.b", "Failed to parse"),
            (m + ":(", "Failed to parse"),
        ]:
            with self.subTest(spec=spec):
                with self.assertRaises(rt.AppImportError) as cm:
                    rt.load_app(spec)
                self.assertIn(msg, str(cm.exception))

    def test_missing_default_attribute(self):
        m = self.module("app = None\n")
        with self.assertRaises(rt.AppImportError) as cm:
            rt.load_app(m)
        self.assertIn("'application'", str(cm.exception))

    def test_import_errors_propagate(self):
        m = self.module("raise RuntimeError('import boom')\n")
        with self.assertRaises(RuntimeError) as cm:
            rt.load_app(m + ":app")
        self.assertEqual(str(cm.exception), "import boom")
        m = self.module("def (:\n")
        with self.assertRaises(SyntaxError):
            rt.load_app(m)
        with self.assertRaises(ImportError):
            rt.load_app("gorn_no_such_module_%s:app" % uuid.uuid4().hex)
        m = self.module(APP_MODULE)
        with self.assertRaises(TypeError) as cm:
            rt.load_app(m + ":broken_factory()")
        self.assertIn("inside the factory", str(cm.exception))

    def test_py_suffix_hint(self):
        m = self.module(APP_MODULE)
        os.chdir(self.dir)
        with self.assertRaises(ImportError) as cm:
            rt.load_app(m + ".py:app")
        self.assertIn("did you mean '%s:app'" % m, str(cm.exception))


class FileWrapperTests(unittest.TestCase):
    def test_blocks_and_close(self):
        f = io.BytesIO(b"abcdefg")
        w = rt.FileWrapper(f, 3)
        self.assertEqual(list(w), [b"abc", b"def", b"g"])
        w.close()
        self.assertTrue(f.closed)


class HookArgumentTests(unittest.TestCase):
    """The stand-ins for gunicorn's Request and Response in pre_request and
    post_request."""

    def test_request(self):
        cases = [
            # (environ, method, path, query, fragment, version, headers)
            ({"REQUEST_METHOD": "GET", "RAW_URI": "/a%20b?x=1&y=2", "SERVER_PROTOCOL": "HTTP/1.1",
              "HTTP_USER_AGENT": "curl", "HTTP_X_FORWARDED_FOR": "10.0.0.1"},
             "GET", "/a%20b", "x=1&y=2", "", (1, 1),
             [("USER-AGENT", "curl"), ("X-FORWARDED-FOR", "10.0.0.1")]),
            ({"REQUEST_METHOD": "POST", "RAW_URI": "http://example.com/p?q#f", "SERVER_PROTOCOL": "HTTP/1.0",
              "CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "3"},
             "POST", "/p", "q", "f", (1, 0), [("CONTENT-LENGTH", "3"), ("CONTENT-TYPE", "text/plain")]),
            ({"REQUEST_METHOD": "OPTIONS", "RAW_URI": "*", "SERVER_PROTOCOL": "bogus", "CONTENT_TYPE": ""},
             "OPTIONS", "*", "", "", (1, 1), []),
        ]
        for environ, method, path, query, fragment, version, headers in cases:
            with self.subTest(uri=environ["RAW_URI"]):
                req = rt.HookRequest(environ)
                self.assertEqual((req.method, req.uri, req.path, req.query, req.fragment, req.version),
                                 (method, environ["RAW_URI"], path, query, fragment, version))
                self.assertEqual(sorted(req.headers), headers)

    def test_response(self):
        class Responder:
            def __init__(self, status, headers, sent, length):
                self.status, self.headers, self.sent, self.length = status, headers, sent, length

        cases = [
            # (status, headers, sent, length) -> (status_code, response_length)
            (("200 OK", [("Content-Length", "2")], 2, "2"), (200, 2)),
            (("404 Not Found", [], 9, None), (404, None)),
            (("201 Created", [], 0, ""), (201, None)),  # two Content-Length headers: not trusted
            ((None, None, 0, None), (None, None)),  # the app never called start_response
        ]
        for (status, headers, sent, length), (code, response_length) in cases:
            with self.subTest(status=status):
                resp = rt.HookResponse(Responder(status, headers, sent, length))
                self.assertEqual((resp.status_code, resp.response_length, resp.sent), (code, response_length, sent))
                self.assertEqual(resp.headers, list(headers or ()))


class HookConfigTests(unittest.TestCase):
    """server.cfg and worker.cfg: gunicorn's Config, read from the settings
    gorn's Config.Settings gives as Python literals."""

    LITERALS = {
        "bind": "['127.0.0.1:8000', 'unix:/run/app.sock', '[::1]:9000', 'fd://3']",
        "workers": "4", "threads": "1", "timeout": "30", "keepalive": "2.5",
        "raw_env": "['A=1', 'B=x=y']", "wsgi_app": "'shop.wsgi:app'", "proc_name": "None",
        "worker_class": "'sync'", "user": "1000", "group": "1001",
        "certfile": "None", "keyfile": "None", "secure_scheme_headers": "{'X-FORWARDED-PROTO': 'https'}",
    }

    def config(self, **literals):
        logs = []

        class Log:
            def warning(self, msg, *args):
                logs.append(msg % args)

        cfg = rt.HookConfig(dict(self.LITERALS, **literals), Log(), "gunicorn.conf.py")
        return cfg, logs

    def test_settings(self):
        cfg, _ = self.config()
        cases = [
            # (attribute, value)
            ("workers", 4), ("timeout", 30), ("keepalive", 2.5), ("bind", ["127.0.0.1:8000", "unix:/run/app.sock", "[::1]:9000", "fd://3"]),
            ("secure_scheme_headers", {"X-FORWARDED-PROTO": "https"}),
            ("address", [("127.0.0.1", 8000), "/run/app.sock", ("::1", 9000), 3]),
            ("env", {"A": "1", "B": "x=y"}), ("uid", 1000), ("gid", 1001),
            ("proc_name", "shop.wsgi:app"), ("worker_class", "sync"), ("worker_class_str", "sync"),
            ("is_ssl", None), ("config", "gunicorn.conf.py"),
            ("preload_app", False), ("worker_tmp_dir", None), ("sendfile", True),  # gunicorn's, gorn has none
        ]
        for name, want in cases:
            with self.subTest(name=name):
                self.assertEqual(getattr(cfg, name), want)
        self.assertEqual(cfg.settings["workers"].value, 4)
        self.assertEqual(cfg.settings["workers"].get(), 4)
        self.assertEqual(cfg.ssl_options["certfile"], None)

    def test_derived(self):
        cases = [
            # (literals, attribute, value)
            ({"threads": "4"}, "worker_class_str", "threads"),
            ({"proc_name": "'billing'"}, "proc_name", "billing"),
            ({"wsgi_app": "None"}, "proc_name", "gunicorn"),
            ({"certfile": "'/etc/c.pem'"}, "is_ssl", "/etc/c.pem"),
            ({"bind": "['example.com', 'tcp://LocalHost:81', '']"}, "address", [("example.com", 8000), ("localhost", 81), ("0.0.0.0", 8000)]),
        ]
        for literals, name, want in cases:
            with self.subTest(literals=literals):
                cfg, _ = self.config(**literals)
                self.assertEqual(getattr(cfg, name), want)

    def test_read_only(self):
        cfg, logs = self.config()
        with self.assertRaisesRegex(AttributeError, "No configuration setting for: nope"):
            cfg.nope
        self.assertFalse(hasattr(cfg, "nope"))
        with self.assertRaisesRegex(AttributeError, "Invalid access"):
            cfg.workers = 8
        cfg.set("workers", 8)
        self.assertEqual(cfg.workers, 4)
        self.assertEqual(len(logs), 1)
        self.assertIn("changes nothing in gorn", logs[0])
        with self.assertRaisesRegex(AttributeError, "No configuration setting for: nope"):
            cfg.set("nope", 1)
        self.assertIn("workers = 4", str(cfg))


class LoggerClassTests(unittest.TestCase):
    """logger_class: where --logger-class's class comes from."""

    def test_found(self):
        class Mine:
            pass

        cases = [
            # (path, namespace, class)
            ("json.JSONDecoder", None, json.JSONDecoder),
            ("__config__.logger_class", {"logger_class": Mine}, Mine),
            ("__config__.Mine", {"Mine": Mine, "logger_class": None}, Mine),
        ]
        for path, namespace, want in cases:
            with self.subTest(path=path):
                self.assertIs(rt.logger_class(path, namespace), want)

    def test_not_found(self):
        cases = [
            # (path, namespace, error)
            ("json.Nope", None, (RuntimeError, "--logger-class json.Nope: module json has no Nope")),
            ("Nope", None, (RuntimeError, "not a module.Class path")),
            ("__config__.logger_class", {}, (RuntimeError, "the configuration file defines no logger_class")),
            ("__config__.logger_class", None, (RuntimeError, "the configuration file defines no logger_class")),
            ("no_such_module_here.Logger", None, (ImportError, "no_such_module_here")),
        ]
        for path, namespace, (exc, msg) in cases:
            with self.subTest(path=path):
                with self.assertRaisesRegex(exc, msg):
                    rt.logger_class(path, namespace)


class LoggingConfigTests(unittest.TestCase):
    """configure_logging: one configuration, the dict before the JSON file
    before the ini, the dicts laid over gunicorn's defaults."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        import logging
        root = logging.getLogger()
        saved = (root.level, root.handlers[:])
        self.addCleanup(lambda: (root.setLevel(saved[0]), root.handlers.__setitem__(slice(None), saved[1])))

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_precedence_and_defaults(self):
        import logging
        ini = self.write("log.ini", "[loggers]\nkeys=root\n[handlers]\nkeys=\n[formatters]\nkeys=\n"
                                    "[logger_root]\nlevel=ERROR\nhandlers=\n")
        js = self.write("log.json", json.dumps({"root": {"level": "WARNING", "handlers": []}}))
        cases = [
            ({"log_config": ini}, logging.ERROR),
            ({"log_config": ini, "log_config_json": js}, logging.WARNING),
            ({"log_config": ini, "log_config_json": js, "log_config_dict": {"root": {"level": "DEBUG", "handlers": []}}},
             logging.DEBUG),
            # gunicorn's defaults: the root logger at INFO.
            ({"log_config_dict": {"loggers": {}}}, logging.INFO),
        ]
        for cfg, level in cases:
            with self.subTest(cfg=sorted(cfg)):
                logging.getLogger().setLevel(logging.CRITICAL)
                rt.configure_logging(cfg)
                self.assertEqual(logging.getLogger().level, level)
        self.assertEqual(rt.LOGGING_DEFAULTS["root"], {"level": "INFO", "handlers": ["console"]})


class AccessLogTests(unittest.TestCase):
    """The gunicorn.access records: gunicorn's atoms, formatted as
    --access-logformat says."""

    class Responder:
        def __init__(self, status, headers, sent):
            self.status, self.headers, self.sent = status, headers, sent

    def test_atoms(self):
        environ = {"REQUEST_METHOD": "POST", "RAW_URI": "/a%20b?x=1", "PATH_INFO": "/a b", "QUERY_STRING": "x=1",
                   "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.1", "HTTP_USER_AGENT": 'say "hi"',
                   "HTTP_X_FORWARDED_FOR": "10.0.0.9", "CONTENT_TYPE": "text/plain",
                   "HTTP_AUTHORIZATION": "Basic Ym9iOnNlY3JldA=="}
        resp = self.Responder("201 Created", [("Content-Type", "text/html"), ("X-Id", "7"),
                                              ("Set-Cookie", "a=1"), ("Set-Cookie", 'b="2"')], 12)
        cases = [
            # (format, line)
            (rt.DEFAULT_ACCESS_FORMAT, None),  # checked below: it holds the time
            ('%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s"',
             '10.0.0.1 - bob "POST /a%20b?x=1 HTTP/1.1" 201 12 12 "-" "say \\"hi\\""'),
            ("%(m)s %(U)s %(q)s %(H)s %(T)s %(D)s %(M)s %(L)s", "POST /a b x=1 HTTP/1.1 1 1500000 1500 1.500000"),
            ("%({X-Forwarded-For}i)s %({content-type}i)s %({X-ID}o)s %({remote_addr}e)s %({nope}i)s %(nope)s",
             "10.0.0.9 text/plain 7 10.0.0.1 - -"),
            # The last of a repeated response header, as gunicorn's dict of
            # them keeps; quotes escaped there too.
            ("%({set-cookie}o)s %({Path_Info}e)s", 'b=\\"2\\" /a b'),
        ]
        for fmt, line in cases:
            with self.subTest(fmt=fmt):
                atoms = rt.AccessLog(None, fmt).atoms(environ, resp, 1.5)
                text = fmt % atoms
                if line is None:
                    self.assertRegex(text, r'^10\.0\.0\.1 - bob \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
                                           r'"POST /a%20b\?x=1 HTTP/1\.1" 201 12 "-" "say \\"hi\\""$')
                else:
                    self.assertEqual(text, line)
        self.assertEqual(rt.AccessLog(None, "").atoms(environ, resp, 0)["p"], "<%d>" % os.getpid())

    def test_basic_user(self):
        cases = [
            ("Basic Ym9iOnNlY3JldA==", "bob"),
            ("basic  Ym9i", "bob"),  # no password
            ("Bearer abc", None),
            ("Basic !!!", None),
            ("Basic", None),
            ("", None),
        ]
        for header, user in cases:
            with self.subTest(header=header):
                self.assertEqual(rt.basic_user({"HTTP_AUTHORIZATION": header}), user)

    def test_logged_record(self):
        import logging
        logger = logging.getLogger("gorn-test-access")
        logger.propagate = False
        records = []

        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record)

        logger.addHandler(Keep())
        logger.setLevel(logging.INFO)
        self.assertIsNotNone(rt.access_log({}, logger))
        logger.disabled = True
        self.assertIsNone(rt.access_log({}, logger))
        logger.disabled = False
        log = rt.access_log({"access_log_format": "%(s)s %(b)s"}, logger)
        log.log({"REQUEST_METHOD": "GET"}, self.Responder("404 Not Found", [], 3), 0.01)
        self.assertEqual(records[0].getMessage(), "404 3")
        self.assertEqual(records[0].args["s"], "404")  # the atoms, for formatters that read them


if __name__ == "__main__":
    unittest.main()
