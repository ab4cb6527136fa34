"""gorn's app runtime: imports a WSGI application and serves the requests a
gorn worker sends it over a pipe, answering over another.

Standard library only, Python >= 3.9. The wire format is specified in
docs/protocol.md; the worker starts this file as

    python -c <loader> '<json config>'

reading frames from the pipe on fd 3 and writing frames to the pipe on
fd 5. The runtime never touches the network: the worker speaks HTTP, the
runtime builds PEP 3333 environs, calls the app and streams what it
returns back as frames.
"""

import importlib
import io
import json
import logging
import marshal
import mmap
import os
import queue
import select
import signal
import struct
import sys
import threading
import time
import traceback

PROTOCOL_VERSION = 1

HEADER = struct.Struct("<IBBI")
HEADER_SIZE = HEADER.size
U32 = struct.Struct("<I")
START_HEADER = struct.Struct("<IBBII")  # a Start frame's header and its head's length
SHARED = struct.Struct("<II")  # a Shared frame's payload: slot, length
MAX_PAYLOAD = 16 << 20

# worker -> runtime
T_REQUEST = 0x01
T_BODY = 0x02
T_WINDOW = 0x03
T_CANCEL = 0x04
T_SHUTDOWN = 0x05
T_STACKS = 0x06
T_REOPEN = 0x07

# With one thread, how often a streamed response looks for frames waiting
# from the worker between its chunks (a Cancel when the client has gone):
# at most once per this many seconds, so a stream of many tiny chunks does
# not make a poll(2) for each.
POLL_INTERVAL = 0.001

# The signal on which the runtime writes every thread's stack to the error
# log (and runs worker_abort): the worker sends it when a request outlives
# --timeout. Not USR1, which logrotate may send every process to reopen
# the logs.
DUMP_SIGNAL = signal.SIGUSR2
T_SHARED_BODY = 0x08
# runtime -> worker
T_READY = 0x10
T_BOOT_ERROR = 0x11
T_START = 0x12
T_DATA = 0x13
T_READ = 0x14
T_ERROR = 0x15
T_SHARED = 0x16

F_END = 0x01

# The environ keys with a place of their own in a Request's environ, in
# order (docs/protocol.md §2; EnvironKeys in Go's protocol package). The
# worker sends their values in a tuple, not a dict: pairing them with these
# keys costs far less than decoding a key string per entry.
ENVIRON_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_NAME",
    "SERVER_PORT",
    "HTTP_HOST",
    "wsgi.url_scheme",
)
ENVIRON_ITEMS = len(ENVIRON_KEYS) + 2  # the values, the other entries, the mask

INITIAL_WINDOW = 512 << 10
READ_CHUNK = 64 << 10
MAX_DATA = 256 << 10
RECV_BUFFER = 256 << 10
# Data frames with at least this many bytes go out with sendmsg, header
# and payload as two buffers, rather than joined (a copy) first.
SCATTER_MIN = 16 << 10

# start_response remembers up to HEAD_CACHE_SIZE heads it has checked, by
# status and headers: most apps send a few heads over and over, and a head
# seen before needs neither the checks nor the join again. Once the cache
# fills with fewer hits than entries since it last did, the app's heads
# rarely repeat (a session cookie or an ETag in each), and the cache is
# dropped for good (head_cache becomes None). Heads longer than
# HEAD_CACHE_MAX bytes are not kept, so the cache stays under about a
# megabyte.
HEAD_CACHE_SIZE = 256
HEAD_CACHE_MAX = 2048
head_cache = {}
head_cache_hits = 0

WORKER_BOOT_ERROR = 3
APP_LOAD_ERROR = 4

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

# gunicorn's default --access-logformat.
DEFAULT_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'


class ProtocolError(Exception):
    """The worker sent something this runtime cannot decode."""


class ClientDisconnected(IOError):
    """The client went away; raised from the app's write to stop it."""


class AppImportError(Exception):
    """The module imported but holds no usable app (exit code 4)."""


# ----------------------------------------------------------------- codec

def pack_frame(ftype, flags, sid, payload=b""):
    """Returns one frame as bytes."""
    return HEADER.pack(len(payload), ftype, flags, sid) + payload


def unpack_frames(buf, start=0, end=None):
    """Decodes the complete frames in buf[start:end] (end: len(buf)).

    Returns (frames, offset): a list of (type, flags, id, payload) and the
    offset of the first byte not consumed.
    """
    frames = []
    n = len(buf) if end is None else end
    off = start
    with memoryview(buf) as view:  # one copy per payload, not two
        while n - off >= HEADER_SIZE:
            size, ftype, flags, sid = HEADER.unpack_from(buf, off)
            if size > MAX_PAYLOAD:
                raise ProtocolError("frame payload of %d bytes exceeds 16 MiB" % size)
            stop = off + HEADER_SIZE + size
            if stop > n:
                break
            frames.append((ftype, flags, sid, bytes(view[off + HEADER_SIZE:stop])))
            off = stop
    return frames, off


def environ_template(defaults=None):
    """The dict each request's environ starts as a copy of: a placeholder
    for every key of ENVIRON_KEYS, then the defaults (the server's wsgi.*
    entries). Copying it is a single C call, and filling the placeholders
    in grows nothing."""
    template = dict.fromkeys(ENVIRON_KEYS)
    if defaults:
        template.update(defaults)
    return template


BARE_TEMPLATE = environ_template()


def decode_environ(data, template=BARE_TEMPLATE):
    """Decodes a Request's environ (docs/protocol.md §2): a marshal tuple of
    the values of ENVIRON_KEYS, a dict of the other entries and the bit
    mask of the keys the worker did not send. Returns a new dict: template
    with the values filled in. A key not sent gets the template's value if
    it has one (the server's default wsgi.url_scheme), else is left out."""
    values = marshal.loads(data)
    if type(values) is not tuple or len(values) != ENVIRON_ITEMS:
        raise ProtocolError("request environ is not a tuple of %d items" % ENVIRON_ITEMS)
    environ = template.copy()
    environ.update(zip(ENVIRON_KEYS, values))
    absent = values[-1]
    if absent:
        if type(absent) is not int:
            raise ProtocolError("request environ's mask is not an int")
        for i, key in enumerate(ENVIRON_KEYS):
            if absent >> i & 1:
                default = template.get(key)
                if default is None:
                    del environ[key]
                else:
                    environ[key] = default
    other = values[-2]
    if type(other) is not dict:
        raise ProtocolError("request environ's other entries are not a dict")
    if other:
        environ.update(other)
    return environ


def decode_request(buf, start=0, stop=None, template=BARE_TEMPLATE):
    """Decodes the Request payload in buf[start:stop] (stop: len(buf)) into
    (environ dict, first body bytes); see decode_environ for template."""
    if stop is None:
        stop = len(buf)
    if stop - start < 4:
        raise ProtocolError("request frame too short")
    (n,) = U32.unpack_from(buf, start)
    start += 4
    if n > stop - start:
        raise ProtocolError("request environ truncated")
    environ = decode_environ(buf[start:start + n], template)
    start += n
    return environ, bytes(buf[start:stop]) if start < stop else b""


def encode_start(sid, flags, status, headers, body=b""):
    """Returns a Start frame: status and headers (latin-1, NUL-separated),
    then the first body bytes."""
    parts = [status]
    for name, value in headers:
        parts.append(name)
        parts.append(value)
    head = "\0".join(parts).encode("latin-1")
    payload = U32.pack(len(head)) + head + body
    return HEADER.pack(len(payload), T_START, flags, sid) + payload


def check_head(status, headers):
    """Raises the precise error for a status and headers start_response
    cannot send."""
    if type(status) is not str:
        raise TypeError("status must be a str, not %s" % type(status).__name__)
    # "200" alone passes, as under gunicorn: the worker adds the reason.
    if (len(status) < 3 or not status[:3].isdigit() or not status[:3].isascii()
            or (len(status) > 3 and status[3] != " ")
            or "\r" in status or "\n" in status or "\0" in status):
        raise ValueError("invalid status %r: want a 3-digit code, then a space and a reason" % status)
    if type(headers) is not list:
        raise TypeError("headers must be a list, not %s" % type(headers).__name__)
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            raise TypeError("each header must be a (name, value) tuple, not %r" % (item,))
        name, value = item
        if type(name) is not str or type(value) is not str:
            raise TypeError("header names and values must be str: %r" % (item,))
        if "\r" in name or "\n" in name or "\0" in name or ":" in name or not name:
            raise ValueError("invalid header name %r" % name)
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError("invalid value for header %r: %r" % (name, value))


# ----------------------------------------------------------------- logging

class Log:
    """The runtime's error log: Python's "gunicorn.error" logger, set up as
    gunicorn sets it up in a worker. Its level is --log-level, it does not
    propagate, and it writes gunicorn's error-log lines to standard error
    (the error log), stamped with the worker's pid as gorn's own lines are;
    with --log-syslog it sends them to syslog too. Apps that hand this
    logger's handlers to their own loggers (Flask's documented pattern) log
    there; --log-config and friends may reconfigure it, as in gunicorn."""

    def __init__(self, level, pid, syslog=None):
        self.logger = logger = logging.getLogger("gunicorn.error")
        logger.propagate = False
        logger.setLevel(LEVELS.get(level, 20))
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%%(asctime)s [%d] [%%(levelname)s] %%(message)s" % pid, "[%Y-%m-%d %H:%M:%S %z]"))
        logger.addHandler(handler)
        if syslog:
            try:
                logger.addHandler(syslog_handler(syslog, pid))
            except (OSError, ValueError) as e:
                self.warning("Cannot send the runtime's log to syslog at %s: %s" % (syslog.get("address"), e))

    def log(self, level, msg, exc=False):
        # msg is final text: no arguments, so logging leaves its % alone.
        self.logger.log(LEVELS[level], msg, exc_info=exc)

    def debug(self, msg):
        self.log("debug", msg)

    def info(self, msg):
        self.log("info", msg)

    def warning(self, msg):
        self.log("warning", msg)

    def error(self, msg, exc=False):
        self.log("error", msg, exc)


def syslog_handler(syslog, pid):
    """A logging handler for --log-syslog, sending what gorn's own syslog
    lines look like (gunicorn's): "<PRI>TAG: [PID] message" and a NUL.
    syslog holds the address gorn parsed: network ("udp", "tcp",
    "unixgram", "unix", or "unix*" for either), address ("HOST:PORT" or a
    path), facility (a number) and tag."""
    import logging.handlers
    import socket

    class Handler(logging.handlers.SysLogHandler):
        # logging.config closes every handler it finds before it installs a
        # configuration; on Python < 3.11 a closed SysLogHandler cannot send
        # again. This one keeps its socket for the runtime's life.
        def close(self):
            logging.Handler.close(self)

    network, address = syslog["network"], syslog["address"]
    if network in ("udp", "tcp"):
        host, _, port = address.rpartition(":")
        address = (host.strip("[]"), int(port))
    socktype = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM,
                "unixgram": socket.SOCK_DGRAM, "unix": socket.SOCK_STREAM}.get(network)
    h = Handler(address=address, facility=int(syslog["facility"]), socktype=socktype)
    h.setFormatter(logging.Formatter("%s: [%d] %%(message)s" % (syslog["tag"], pid)))
    return h


# ----------------------------------------------------------------- app loading

def load_app(spec):
    """Imports `module`, `module:attr` or `module:factory(literal args)`.

    Raises whatever importing the module raises (a boot error, exit code 3)
    and AppImportError when the module holds no callable app (exit code 4),
    with gunicorn's messages.
    """
    import ast

    module, _, obj = spec.partition(":")
    if not obj:
        obj = "application"
    try:
        expression = ast.parse(obj, mode="eval").body
    except SyntaxError:
        raise AppImportError(
            "Failed to parse %r as an attribute name or function call." % obj)
    if isinstance(expression, ast.Name):
        name, args, kwargs = expression.id, None, None
    elif isinstance(expression, ast.Call) and isinstance(expression.func, ast.Name):
        name = expression.func.id
        try:
            args = [ast.literal_eval(a) for a in expression.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in expression.keywords}
        except ValueError:
            raise AppImportError(
                "Function arguments must be literal values: %r" % obj)
    else:
        raise AppImportError(
            "Failed to parse %r as an attribute name or function call." % obj)

    try:
        mod = importlib.import_module(module)
    except ImportError:
        if module.endswith(".py") and os.path.exists(module):
            raise ImportError("Failed to find application, did you mean '%s:%s'?"
                              % (module.rsplit(".", 1)[0], obj))
        raise
    try:
        app = getattr(mod, name)
    except AttributeError:
        raise AppImportError("Failed to find attribute %r in %r." % (name, module))
    if args is not None:
        try:
            app = app(*args, **kwargs)
        except TypeError as e:
            if sys.exc_info()[2].tb_next is None:
                raise AppImportError("Error while loading app %r: %s" % (obj, e))
            raise
    if app is None:
        raise AppImportError("Failed to find application object: %r" % obj)
    if not callable(app):
        raise AppImportError("Application object must be callable.")
    return app


# ----------------------------------------------------------------- WSGI objects

class FileWrapper:
    """wsgi.file_wrapper: iterates a file-like object in blocks."""

    def __init__(self, filelike, blksize=65536):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class ErrorStream:
    """wsgi.errors: text written here goes to gorn's error log."""

    def flush(self):
        sys.stderr.flush()

    def write(self, s):
        sys.stderr.write(s)

    def writelines(self, seq):
        for s in seq:
            sys.stderr.write(s)


class Input:
    """wsgi.input: the request body, pulled from the worker on demand.

    The runtime asks for at most READ_CHUNK bytes at a time with a Read
    frame, so neither side buffers more than that for one request.
    """

    def __init__(self, req):
        self._req = req
        self._buf = bytearray()

    def _more(self):
        """Moves the next arrived chunk into the buffer; False at the end."""
        req = self._req
        if not req.body and not req.body_done:
            if not req.read_pending:
                req.read_pending = True
                req.conn.send(HEADER.pack(4, T_READ, 0, req.sid) + U32.pack(READ_CHUNK))
            req.conn.wait(req.has_body)
        if req.cancelled and not req.body:
            raise ClientDisconnected("client disconnected while sending the body")
        if req.body:
            with req.conn.lock:
                chunks, req.body = req.body, []
            for c in chunks:
                self._buf += c
            return True
        return False

    def read(self, size=-1):
        if size is None or size < 0:
            while self._more():
                pass
            data = bytes(self._buf)
            self._buf.clear()
            return data
        while len(self._buf) < size and self._more():
            pass
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def readline(self, size=-1):
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0:
                n = i + 1
                break
            if size is not None and 0 <= size <= len(self._buf):
                n = size
                break
            start = len(self._buf)
            if not self._more():
                n = len(self._buf)
                break
        if size is not None and 0 <= size < n:
            n = size
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class EmptyInput:
    """wsgi.input of a request without a body: there is nothing to read.
    It holds no state, so one (EMPTY_INPUT) serves every such request."""

    __slots__ = ()

    def read(self, size=-1):
        return b""

    def readline(self, size=-1):
        return b""

    def readlines(self, hint=-1):
        return []

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration


EMPTY_INPUT = EmptyInput()


# ----------------------------------------------------------------- requests

class Request:
    """The state of one request, shared by the frame reader and the thread
    running the app."""

    __slots__ = ("conn", "sid", "environ", "body", "body_done", "read_pending",
                 "credit", "cancelled")

    def __init__(self, conn, sid, environ, body, done):
        self.conn = conn
        self.sid = sid
        self.environ = environ
        self.body = [body] if body else []
        self.body_done = done
        self.read_pending = False
        self.credit = INITIAL_WINDOW
        self.cancelled = False

    def has_body(self):
        return bool(self.body) or self.body_done or self.cancelled

    def has_credit(self):
        return self.credit > 0 or self.cancelled


class Responder:
    """Runs the app for one request and streams its response."""

    __slots__ = ("server", "req", "status", "headers", "head", "headers_sent", "length",
                 "sent", "ended", "excess", "slotless", "raised", "__weakref__")

    def __init__(self, server, req):
        self.server = server
        self.req = req
        self.status = None
        self.headers = None
        self.head = None  # status and headers, NUL-separated, for the Start frame
        self.headers_sent = False
        # The app's Content-Length, when it declares a valid one: the
        # frame that completes the body ends the stream at once (PEP 3333:
        # a server sends no more than Content-Length), so a one-chunk
        # response from an iterator is one frame, not two.
        self.length = None
        self.sent = 0
        self.ended = False  # the stream's last frame is out
        self.excess = 0  # bytes the app wrote past its Content-Length
        self.slotless = False  # a chunk found no free shared slot (logged once)
        self.raised = False  # the app raised before its head: the worker answers 500

    def start_response(self, status, headers, exc_info=None):
        global head_cache, head_cache_hits
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        # A head checked before (see HEAD_CACHE_SIZE).
        cache = head_cache
        key = None
        if cache is not None and type(status) is str and type(headers) is list:
            try:
                key = (status, *headers)
                hit = cache.get(key)
            except TypeError:  # an unhashable item: the checks say what is wrong
                key = hit = None
            if hit is not None:
                head_cache_hits += 1
                self.status = status
                self.headers = headers
                self.head, self.length = hit
                return self.write
        # The common case in one pass: the head the Start frame carries,
        # checked as a whole; anything odd goes through check_head for a
        # precise error.
        head = None
        length = None
        try:
            if type(status) is str and type(headers) is list:
                flat = [status]
                for item in headers:
                    if type(item) is not tuple or len(item) != 2 or not item[0] or ":" in item[0]:
                        break
                    flat += item
                    if len(item[0]) == 14 and item[0].lower() == "content-length":
                        length = item[1] if length is None else ""  # two: not trusted
                else:
                    head = "\0".join(flat)
                    if (head.count("\0") != 2 * len(headers) or "\r" in head or "\n" in head
                            or len(status) < 4 or not status[:3].isdigit() or status[3] != " "
                            or not status[:3].isascii()):
                        head = None
        except TypeError:
            head = None
        if head is None:
            check_head(status, headers)
            head = "\0".join([status] + [x for item in headers for x in item])
            lengths = [v for k, v in headers if k.lower() == "content-length"]
            length = lengths[0] if len(lengths) == 1 else None
        self.status = status
        self.headers = headers
        self.head = head
        self.length = int(length) if length and length.isdigit() and length.isascii() else None
        if key is not None and len(head) <= HEAD_CACHE_MAX:
            if len(cache) >= HEAD_CACHE_SIZE:
                if head_cache_hits < HEAD_CACHE_SIZE:
                    head_cache = None
                    return self.write
                cache.clear()
                head_cache_hits = 0
            cache[key] = (head, self.length)
        return self.write

    def _head_frame(self, flags, body):
        try:
            head = self.head.encode("latin-1")
        except UnicodeEncodeError as e:
            raise ValueError("response status and headers must be latin-1: %s" % e)
        return (START_HEADER.pack(4 + len(head) + len(body), T_START, flags, self.req.sid, len(head))
                + head + body)

    def write(self, data):
        """The write() callable, and how every body chunk is sent."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            else:
                raise TypeError("response body must be bytes, not %s" % type(data).__name__)
        if self.ended:  # past the Content-Length: dropped
            self.excess += len(data)
            return
        req = self.req
        conn = req.conn
        if self.headers_sent and not conn.threaded:
            conn.poll_frames()  # a Cancel between two chunks
        if req.cancelled:
            raise ClientDisconnected("client disconnected")
        total = len(data)
        last = 0  # F_END once this write completes the declared body
        if self.length is not None and total >= self.length - self.sent:
            room = self.length - self.sent
            if total > room:
                self.excess += total - room
                data = data[:room]
                total = room
            last = F_END
        self.sent += total
        # The frames of one write go out in one send: the head and every
        # shared slot of a large chunk reach the worker together, which
        # wakes once and writes slots that lie end to end to the client at
        # once. They go out before any wait for credit (the worker returns
        # credit only for what it has) and before a large Data frame
        # (sent apart, without a copy), so their order holds.
        out = []
        try:
            off = 0
            if not self.headers_sent:
                # The first bytes ride in the Start frame, unless they are
                # large and shared memory is there for them.
                inline = total < SCATTER_MIN or conn.shared is None
                with conn.lock:
                    n = max(min(req.credit, MAX_DATA, total), 0) if inline else 0
                    req.credit -= n
                out.append(self._head_frame(last if n == total else 0, data if n == total else data[:n]))
                self.headers_sent = True
                self.ended = bool(last) and n == total
                off = n
            while off < total:
                if req.credit <= 0:
                    if out:
                        pending, out = out, []
                        conn.send(b"".join(pending))
                    conn.wait(req.has_credit)
                    if req.cancelled:
                        raise ClientDisconnected("client disconnected")
                slot = -1
                with conn.lock:
                    n = min(req.credit, MAX_DATA, total - off)
                    shareable = n >= SCATTER_MIN and conn.shared is not None
                    if shareable:
                        slot = conn.take_slot()
                        if slot >= 0:
                            n = min(n, conn.slot_size)
                    req.credit -= n
                if shareable and slot < 0 and not self.slotless:
                    self.slotless = True
                    self.server.log.debug("No free shared memory slot for the response of %s; sending it through the pipe"
                                          % req.environ.get("RAW_URI", ""))
                flags = last if off + n == total else 0
                self.ended = bool(flags)
                chunk = data if n == total else memoryview(data)[off:off + n]
                if slot >= 0:
                    out.append(conn.fill_shared(slot, chunk, flags, req.sid))
                elif n >= SCATTER_MIN:
                    if out:
                        pending, out = out, []
                        conn.send(b"".join(pending))
                    conn.send_frame(HEADER.pack(n, T_DATA, flags, req.sid), chunk)
                else:
                    out.append(HEADER.pack(n, T_DATA, flags, req.sid) + chunk)
                off += n
        finally:
            # Also on the way out of an error: a slot taken here is freed
            # only by the worker, once it has seen the frame naming it.
            if out:
                conn.send(b"".join(out))

    def run(self, app):
        req = self.req
        environ = req.environ
        server = self.server
        environ["wsgi.input"] = Input(req) if req.body or not req.body_done else EMPTY_INPUT
        result = None
        try:
            result = app(environ, self.start_response)
            if type(result) is list and len(result) == 1 and not self.headers_sent:
                # One write for the whole response: the common case.
                body = result[0]
                if type(body) is not bytes:
                    raise TypeError("response body must be bytes, not %s" % type(body).__name__)
                if self.status is None:
                    raise AssertionError("the app returned without calling start_response()")
                size = len(body)
                length = self.length
                if length is not None and size > length:
                    self.excess = size - length
                    body = body[:length]
                    size = length
                if size <= req.credit and size <= MAX_DATA and (
                        size < SCATTER_MIN or req.conn.shared is None):
                    frame = self._head_frame(F_END, body)
                    self.headers_sent = self.ended = True
                    self.sent = size
                    if self.excess:
                        self._log_excess()
                    result = None  # a list: nothing to close
                    req.conn.send(frame)
                    return
            for chunk in result:
                if chunk:
                    self.write(chunk)
                elif type(chunk) is not bytes:
                    raise TypeError("response body must be bytes, not %s" % type(chunk).__name__)
            if self.ended:  # the body was complete at its Content-Length
                self._close(result)
                result = None
                self._log_excess()
                return
            if self.status is None:
                raise AssertionError("the app returned without calling start_response()")
            if self.headers_sent:
                end = HEADER.pack(0, T_DATA, F_END, req.sid)
            else:
                end = self._head_frame(F_END, b"")
                self.headers_sent = True
            self._close(result)
            result = None
            req.conn.send(end)
        except ClientDisconnected:
            server.log.debug("Ignoring EPIPE: client went away during %s"
                             % environ.get("RAW_URI", ""))
            self._close(result)
            if not self.ended:
                req.conn.send(pack_frame(T_ERROR, 0, req.sid, b"client disconnected"))
        except Exception as e:
            server.log.error("Error handling request %s" % environ.get("RAW_URI", ""), exc=True)
            self.raised = not self.headers_sent
            self._close(result)
            if not self.ended:  # else the client already has the whole response
                msg = ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace")
                req.conn.send(pack_frame(T_ERROR, 0, req.sid, msg))

    def _log_excess(self):
        if self.excess:
            self.server.log.debug("Dropped %d bytes the app sent past its Content-Length of %d for %s"
                                  % (self.excess, self.length, self.req.environ.get("RAW_URI", "")))

    def _close(self, result):
        if result is not None and hasattr(result, "close"):
            try:
                result.close()
            except Exception:
                self.server.log.error("Error closing the response of %s"
                                      % self.req.environ.get("RAW_URI", ""), exc=True)


# ----------------------------------------------------------------- connection

def write_all(fd, data):
    """Writes all of data to the blocking pipe fd. A pipe write returns
    short only when a signal interrupts it after some bytes went."""
    n = os.write(fd, data)
    if n < len(data):
        view = memoryview(data)
        while n < len(view):
            n += os.write(fd, view[n:])


class Connection:
    """The two pipes to the worker: frames come in on rfd and go out on
    wfd; frame reading and dispatch.

    With one thread the app runs on the thread that reads frames, which
    reads on demand (conn.wait); with several, a reader thread dispatches
    frames and app threads wait on a condition.
    """

    def __init__(self, rfd, wfd, threaded):
        self.rfd = rfd
        self.wfd = wfd
        self.threaded = threaded
        self.wlock = threading.Lock()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        # Frames are read into one reused buffer (recv_into): a fresh
        # bytes object per recv would cost an mmap and munmap each time.
        self.rbuf = bytearray(RECV_BUFFER)
        self.rview = memoryview(self.rbuf)
        self.roff = 0  # first byte not yet decoded
        self.rend = 0  # end of the bytes received
        self.requests = {}
        # What a request's environ starts from (environ_template); the
        # server puts its wsgi.* entries in.
        self.environ_template = BARE_TEMPLATE
        self.pending = []  # requests not yet started, single-thread mode
        # Single-thread mode: poll_frames looks at rfd with this (made on
        # first use) between the chunks of a streamed response.
        self.poller = None
        self.polled = 0.0
        self.on_request = None
        self.closed = False
        self.shutdown = False
        self.error_log = None
        self.capture_output = False
        # USR1 (a Reopen frame): reopens the loggers' files; a
        # --logger-class instance's reopen_files when there is one.
        self.reopen_logs = reopen_log_files
        # Memory shared with the worker for large response chunks (see
        # attach_shared); None when the worker gave none.
        self.shared = None
        self.states = None
        self.slot_base = self.slot_size = 0
        self.body_base = self.body_slots = 0

    def attach_shared(self, fd, header, slots, slot_size, body_slots=0):
        """Maps the worker's shared body memory (descriptor fd, closed
        here): header bytes of slot states, one u32 per response slot (0
        free, 1 filled and not yet written out by the worker), then slots
        response slots and body_slots request body slots, all of slot_size
        bytes. This side only ever turns a free response slot into a filled
        one; the worker frees it once the client has the bytes. Body slots
        are the worker's: it fills them, this side copies them out."""
        size = header + (slots + body_slots) * slot_size
        try:
            try:  # Python 3.13+: no duplicate descriptor kept open for the app to see
                mm = mmap.mmap(fd, size, trackfd=False)
            except TypeError:
                mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.shared = memoryview(mm)
        self.states = self.shared[:4 * slots].cast("I")
        self.slot_base, self.slot_size = header, slot_size
        self.body_base, self.body_slots = header + slots * slot_size, body_slots

    def body_bytes(self, payload):
        """The request body bytes a SharedBody frame names, copied out."""
        slot, n = SHARED.unpack(payload)
        if self.shared is None or slot >= self.body_slots or n > self.slot_size:
            raise ProtocolError("bad shared body slot %d (%d bytes)" % (slot, n))
        off = self.body_base + slot * self.slot_size
        return bytes(self.shared[off:off + n])

    def take_slot(self):
        """Marks the lowest free slot filled and returns it; -1 if none is
        free (the caller sends its bytes in a Data frame). Call with
        self.lock held: threads share the slots."""
        try:
            i = self.states.tolist().index(0)
        except ValueError:
            return -1
        self.states[i] = 1
        return i

    def fill_shared(self, slot, chunk, flags, sid):
        """Copies chunk (at most slot_size bytes) into a slot taken with
        take_slot and returns the Shared frame naming it, for the caller to
        send."""
        off = self.slot_base + slot * self.slot_size
        self.shared[off:off + len(chunk)] = chunk
        return pack_frame(T_SHARED, flags, sid, SHARED.pack(slot, len(chunk)))

    def send(self, data):
        if not self.threaded:  # one thread sends: no lock to take
            write_all(self.wfd, data)
            return
        with self.wlock:
            write_all(self.wfd, data)

    def send_frame(self, head, body):
        """Sends a frame given as its header and a large payload without
        joining them (no copy of the payload)."""
        total = len(head) + len(body)
        with self.wlock:
            n = os.writev(self.wfd, (head, body))
            if n < total:  # a partial write: the rest, in order
                if n < len(head):
                    write_all(self.wfd, head[n:])
                    n = len(head)
                write_all(self.wfd, memoryview(body)[n - len(head):])

    def read_once(self):
        """Reads what the pipe has and dispatches every complete frame."""
        if self.rend == len(self.rbuf):
            self._make_room()
        try:
            n = os.readv(self.rfd, (self.rview[self.rend:],))
        except InterruptedError:
            return
        if not n:
            self.closed = True
            if self.threaded:
                with self.cond:
                    self.cond.notify_all()
            return
        self.rend += n
        if self.threaded:
            with self.cond:
                self._dispatch_buffered()
                self.cond.notify_all()
        else:
            self._dispatch_buffered()

    def _dispatch_buffered(self):
        """Dispatches every complete frame in the buffer: a Request frame
        straight from it (no copy of its payload, no tuple for it), the
        others through dispatch."""
        buf = self.rbuf
        off = self.roff
        end = self.rend
        while end - off >= HEADER_SIZE:
            size, ftype, flags, sid = HEADER.unpack_from(buf, off)
            if size > MAX_PAYLOAD:
                raise ProtocolError("frame payload of %d bytes exceeds 16 MiB" % size)
            start = off + HEADER_SIZE
            stop = start + size
            if stop > end:
                break
            off = stop
            if ftype == T_REQUEST:
                self.add_request(sid, flags, buf, start, stop)
            else:
                self.dispatch([(ftype, flags, sid, bytes(buf[start:stop]))])
        if off == end:
            self.roff = self.rend = 0
        else:
            self.roff = off

    def _make_room(self):
        """The buffer is full of an incomplete frame: moves it to the front,
        or grows the buffer when the frame is larger than it."""
        self.rview.release()
        if self.roff > 0:
            pending = self.rend - self.roff
            self.rbuf[:pending] = self.rbuf[self.roff:self.rend]
            self.roff, self.rend = 0, pending
        else:
            self.rbuf.extend(bytes(len(self.rbuf)))
        self.rview = memoryview(self.rbuf)

    def add_request(self, sid, flags, buf, start, stop):
        """Registers the request of the Request frame whose payload is
        buf[start:stop] and hands it to on_request."""
        environ, body = decode_request(buf, start, stop, self.environ_template)
        req = Request(self, sid, environ, body, (flags & F_END) != 0)
        self.requests[sid] = req
        self.on_request(req)

    def dispatch(self, frames):
        """Applies decoded frames (type, flags, id, payload)."""
        requests = self.requests
        for ftype, flags, sid, payload in frames:
            if ftype == T_REQUEST:
                self.add_request(sid, flags, payload, 0, len(payload))
                continue
            req = requests.get(sid)
            if ftype == T_BODY or ftype == T_SHARED_BODY:
                if req is not None:
                    if ftype == T_SHARED_BODY:
                        # Copied out now: the worker reuses the slot once
                        # this stream asks for more or ends.
                        payload = self.body_bytes(payload)
                    req.read_pending = False
                    if payload:
                        req.body.append(payload)
                    if flags & F_END:
                        req.body_done = True
            elif ftype == T_WINDOW:
                if req is not None:
                    req.credit += U32.unpack(payload)[0]
            elif ftype == T_CANCEL:
                if req is not None:
                    req.cancelled = True
            elif ftype == T_SHUTDOWN:
                self.shutdown = True
            elif ftype == T_STACKS:
                dump_stacks()
            elif ftype == T_REOPEN:
                reopen_error_log(self.error_log, self.capture_output)
                self.reopen_logs()
            else:
                raise ProtocolError("unexpected frame type 0x%02x" % ftype)

    def poll_frames(self):
        """Single-thread mode, between the chunks of a streamed response:
        reads and applies the frames already waiting, without blocking.
        Frames are otherwise read only when the app waits (for credit, for
        its body), which a slow stream of small chunks never does: the
        Cancel of a client that left would wait behind the whole stream
        (an endless one would hold the worker's only thread forever). At
        most once per POLL_INTERVAL."""
        now = time.monotonic()
        if now - self.polled < POLL_INTERVAL:
            return
        self.polled = now
        if self.readable():
            self.read_once()

    def readable(self):
        """Whether frames wait in the pipe from the worker: one poll(2)
        that does not wait."""
        if self.poller is None:
            self.poller = select.poll()
            self.poller.register(self.rfd, select.POLLIN)
        return bool(self.poller.poll(0))

    def wait(self, predicate):
        """Returns once predicate() is true, reading frames as needed."""
        if self.threaded:
            with self.cond:
                while not predicate():
                    if self.closed:
                        worker_gone()
                    self.cond.wait()
            return
        while not predicate():
            if self.closed:
                worker_gone()
            self.read_once()

    def finish(self, req):
        # The request's wsgi.input refers to the request, and the request
        # to the environ that holds the wsgi.input: a reference cycle that
        # only Python's cycle collector would free. Left in place, every
        # request fed it a few objects, and it ran a collection every 230
        # or so requests: about a tenth of the runtime's time per hello
        # request (docs/performance.md, entry 22). Dropped here, where the
        # request is over, the environ and everything in it go as soon as
        # the app lets go of them.
        req.environ = None
        if self.threaded:
            with self.lock:
                self.requests.pop(req.sid, None)
        else:
            self.requests.pop(req.sid, None)


def worker_gone():
    """The worker closed its end of the pipe: it is gone, and so is every
    client."""
    os._exit(0)


def reopen_error_log(path, capture_output=False):
    """Points standard error (and with --capture-output standard output) at
    a fresh open of the error log file (USR1, after logrotate moved it)."""
    if not path or path == "-":
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        sys.stderr.write("cannot reopen the error log %s: %s\n" % (path, e))
        return
    sys.stderr.flush()
    os.dup2(fd, 2)
    if capture_output:
        sys.stdout.flush()
        os.dup2(fd, 1)
    os.close(fd)


def reopen_log_files():
    """Reopens the files the gunicorn.error and gunicorn.access loggers'
    handlers write to (a logging configuration's, --access-logfile's), as
    gunicorn does on USR1."""
    for name in ("gunicorn.error", "gunicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.FileHandler) and handler.stream is not None:
                handler.acquire()
                try:
                    handler.stream.close()
                    handler.stream = handler._open()
                except OSError as e:
                    sys.stderr.write("cannot reopen the log file %s: %s\n" % (handler.baseFilename, e))
                finally:
                    handler.release()


def spew():
    """--spew: from now on every line of Python this process runs, in every
    thread, is printed to standard output as "module:line: source", as
    gunicorn's --spew prints it."""
    import linecache

    def trace(frame, event, arg):
        if event == "line":
            g = frame.f_globals
            name, lineno = g.get("__name__", "[unknown]"), frame.f_lineno
            line = linecache.getline(g.get("__file__") or frame.f_code.co_filename, lineno)
            print("%s:%s: %s" % (name, lineno, line.rstrip()))
        return trace

    threading.settrace(trace)
    sys.settrace(trace)


def dump_stacks():
    import faulthandler
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


# ----------------------------------------------------------------- server hooks

# The server hooks of a gunicorn configuration file that run in the app's
# process, where gunicorn runs them in its worker.
RUNTIME_HOOKS = ("post_fork", "post_worker_init", "pre_request", "post_request", "worker_exit",
                 "worker_int", "worker_abort")
# Those gunicorn runs in its master: gorn's master runs them in a Python
# process of their own (master_hooks_main).
MASTER_HOOKS = ("on_starting", "when_ready", "on_reload", "pre_fork", "child_exit",
                "nworkers_changed", "pre_exec", "on_exit")


class HookLog(logging.LoggerAdapter):
    """server.log and worker.log in a hook: gunicorn's Logger methods
    (debug ... critical, exception, and log with a level's name or number)
    on the gunicorn.error logger, which is error_log, as in gunicorn's."""

    def __init__(self, logger):
        super().__init__(logger, None)
        self.error_log = logger

    def log(self, lvl, msg, *args, **kwargs):
        if isinstance(lvl, str):
            lvl = LEVELS.get(lvl.lower(), 20)
        super().log(lvl, msg, *args, **kwargs)


# gunicorn's settings gorn does not have, with gunicorn's defaults, so that
# server.cfg reads them as under gunicorn.
GUNICORN_ONLY_SETTINGS = {
    "casefold_http_method": False, "check_config": False, "daemon": False,
    "do_handshake_on_connect": False, "enable_stdio_inheritance": False, "initgroups": False,
    "logger_class": "gunicorn.glogging.Logger", "permit_unconventional_http_method": False,
    "permit_unconventional_http_version": False, "preload_app": False, "print_config": False,
    "reload_engine": "auto", "sendfile": None, "ssl_version": 2,
    "strip_header_spaces": False, "suppress_ragged_eofs": True, "tmp_upload_dir": None,
    "tolerate_dangerous_framing": False, "worker_tmp_dir": None,
}


class HookSetting:
    """One of server.cfg.settings, as gunicorn's Setting: name, value and
    get()."""

    def __init__(self, name, value):
        self.name = name
        self.value = value

    def get(self):
        return self.value

    def __repr__(self):
        return "<HookSetting %s=%r>" % (self.name, self.value)


class HookConfig:
    """server.cfg and worker.cfg in a hook: gunicorn's Config, read-only.
    Each setting is an attribute by gunicorn's name (cfg.workers,
    cfg.bind, ...), holding what gorn runs with, in gunicorn's types;
    settings gorn does not have hold gunicorn's defaults. settings maps the
    names to HookSettings, and address, uid, gid, proc_name, env, is_ssl,
    ssl_options, worker_class_str and sendfile are gunicorn's properties.
    worker_class is the worker class's name, not a class. set() changes
    nothing in gorn and says so in the log.

    literals are the settings as gorn's Config.Settings gives them: Python
    literals by name."""

    def __init__(self, literals, log, config_path=None):
        import ast
        values = dict(GUNICORN_ONLY_SETTINGS)
        values["config"] = config_path
        for name, literal in literals.items():
            try:
                values[name] = ast.literal_eval(literal)
            except (ValueError, SyntaxError):
                values[name] = literal
        # gunicorn sets it to the APP argument.
        values["default_proc_name"] = values.get("wsgi_app") or "gunicorn"
        object.__setattr__(self, "settings", {name: HookSetting(name, v) for name, v in values.items()})
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name):
        try:
            return self.settings[name].get()
        except KeyError:
            raise AttributeError("No configuration setting for: %s" % name) from None

    def __setattr__(self, name, value):
        raise AttributeError("Invalid access!")

    def set(self, name, value):
        if name not in self.settings:
            raise AttributeError("No configuration setting for: %s" % name)
        self._log.warning("cfg.set(%r, ...) in a server hook changes nothing in gorn: "
                          "set %s in the configuration file or on the command line", name, name)

    def __str__(self):
        return "\n".join("%s = %r" % (name, self.settings[name].get()) for name in sorted(self.settings))

    @property
    def address(self):
        return [parse_address(bind) for bind in self.bind]

    @property
    def uid(self):
        return self.user

    @property
    def gid(self):
        return self.group

    @property
    def proc_name(self):
        name = self.settings["proc_name"].get()
        return name if name is not None else self.default_proc_name

    @property
    def worker_class_str(self):
        uri = self.settings["worker_class"].get()
        return "threads" if uri == "sync" and self.threads > 1 else uri

    @property
    def worker_class(self):
        return self.settings["worker_class"].get()

    @property
    def is_ssl(self):
        return self.certfile or self.keyfile

    @property
    def ssl_options(self):
        return {name: self.settings[name].get() for name in (
            "keyfile", "certfile", "ssl_version", "cert_reqs", "ca_certs", "suppress_ragged_eofs",
            "do_handshake_on_connect", "ciphers") if name in self.settings}

    @property
    def env(self):
        return dict(kv.split("=", 1) for kv in self.raw_env if "=" in kv)

    @property
    def sendfile(self):
        return True


def parse_address(bind):
    """A --bind address as gunicorn's cfg.address holds it: a unix
    socket's path, an fd:// number, or (host, port)."""
    if bind.startswith("unix:"):
        path = bind[len("unix:"):]
        return path[2:] if path.startswith("//") else path
    if bind.startswith("fd://"):
        return int(bind[len("fd://"):])
    if bind.startswith("tcp://"):
        bind = bind[len("tcp://"):]
    host, port = bind, "8000"
    if bind.startswith("[") and "]" in bind:
        host, _, rest = bind[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif ":" in bind:
        host, port = bind.rsplit(":", 1)
    elif bind == "":
        host = "0.0.0.0"
    return host.lower(), int(port)


class HookServer:
    """The server argument of post_fork and worker_exit: what of gunicorn's
    Arbiter a hook can use here. pid is the master's; cfg the settings."""

    def __init__(self, log, pid, workers, cfg):
        self.log = log
        self.pid = pid
        self.num_workers = workers
        self.cfg = cfg


class HookWorker:
    """The worker argument of the hooks: pid is the process the app runs in
    (gorn's worker is its parent, ppid), age the worker's spawn number, nr
    the requests it has handled, wsgi the app once it is loaded, cfg the
    settings."""

    def __init__(self, log, ppid, age, cfg):
        self.cfg = cfg
        self.log = log
        self.pid = os.getpid()
        self.ppid = ppid
        self.age = age
        self.nr = 0
        self.alive = True
        self.booted = False
        self.wsgi = None


class HookRequest:
    """req in pre_request and post_request: the attributes of gunicorn's
    Request, read from the environ. headers are (NAME, value) pairs with
    upper-case names, as gunicorn's, in the environ's order: as the fields
    came (sorted over TLS), a repeated name once, its values joined."""

    def __init__(self, environ):
        from urllib.parse import urlsplit
        self.method = environ.get("REQUEST_METHOD", "")
        self.uri = environ.get("RAW_URI", "")
        parts = urlsplit(self.uri)
        self.scheme = environ.get("wsgi.url_scheme", "http")
        self.path = parts.path
        self.query = parts.query
        self.fragment = parts.fragment
        proto = environ.get("SERVER_PROTOCOL", "HTTP/1.1")
        try:
            major, minor = proto[5:].split(".")
            self.version = (int(major), int(minor))
        except ValueError:
            self.version = (1, 1)
        headers = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                headers.append((key[5:].replace("_", "-"), value))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
                headers.append((key.replace("_", "-"), value))
        self.headers = headers
        self.remote_addr = environ.get("REMOTE_ADDR", "")


class HookResponse:
    """resp in post_request: the status and headers the app gave, and the
    body bytes sent."""

    def __init__(self, responder):
        status = responder.status or ""
        self.status = status
        try:
            self.status_code = int(status.split(None, 1)[0])
        except (ValueError, IndexError):
            self.status_code = None
        self.headers = list(responder.headers or ())
        self.sent = responder.sent
        self.response_length = None
        if responder.length is not None and responder.length != "":
            try:
                self.response_length = int(responder.length)
            except ValueError:
                pass


class Hooks:
    """The server hooks a gunicorn configuration file defines, run in this
    process at gunicorn's moments: post_fork before the app is imported,
    post_worker_init after, pre_request and post_request around each
    request, worker_exit when the runtime stops serving."""

    def __init__(self, namespace, settings, logger, cfg, glog=None):
        """namespace is the configuration file's (config_namespace),
        settings the hooks' cfg (a HookConfig), logger gunicorn.error, glog
        the --logger-class instance, if any, which is then the hooks' log."""
        self.funcs = hook_functions(namespace, RUNTIME_HOOKS)
        log = glog if glog is not None else HookLog(logger)
        self.server = HookServer(log, int(cfg.get("master_pid") or os.getppid()), int(cfg.get("workers") or 1), settings)
        self.worker = HookWorker(log, int(cfg.get("log_pid") or os.getppid()), int(cfg.get("worker_age") or 0), settings)
        self.log = logger

    def has(self, name):
        return name in self.funcs

    def call(self, name, *args):
        """Runs a hook; its exception propagates."""
        fn = self.funcs.get(name)
        if fn is not None:
            fn(*args)

    def call_logged(self, name, *args):
        """Runs a hook; its exception is logged, as gunicorn logs the
        post_request and worker_exit hooks' exceptions."""
        try:
            self.call(name, *args)
        except Exception:
            self.log.exception("Exception in %s hook" % name)

    def install_signal_hooks(self):
        """worker_int and worker_abort, and worker_exit after either, when
        the file defines them: the worker sends SIGINT on a quick stop (INT
        or QUIT) and DUMP_SIGNAL on --timeout, and waits a moment before it
        kills the runtime. As gunicorn's worker, the runtime then runs the
        hook and exits, which runs worker_exit. On DUMP_SIGNAL faulthandler
        still writes every thread's stack first."""
        ends = self.has("worker_exit")
        if ends or self.has("worker_int"):
            signal.signal(signal.SIGINT, lambda *_: self._end("worker_int", 0))
        if ends or self.has("worker_abort"):
            import faulthandler
            faulthandler.unregister(DUMP_SIGNAL)
            signal.signal(DUMP_SIGNAL, lambda *_: self._end("worker_abort", 1))
            faulthandler.register(DUMP_SIGNAL, file=sys.stderr, all_threads=True, chain=True)

    def _end(self, name, code):
        self.worker.alive = False
        self.call_logged(name, self.worker)
        self.call_logged("worker_exit", self.server, self.worker)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def load_hooks(path, names, import_path=None):
    """The server hooks of names the configuration file at path defines,
    by name (config_namespace)."""
    return hook_functions(config_namespace(path, import_path), names)


def hook_functions(namespace, names):
    """The server hooks of names a configuration file's namespace defines."""
    return {name: namespace[name] for name in names if callable(namespace.get(name))}


def config_namespace(path, import_path=None):
    """Runs the configuration file as gunicorn does (as __config__), or
    imports the module of a python:MODULE path (found in import_path, if
    the directory is given, or else on sys.path; reloaded if imported
    already), and returns its namespace."""
    if path.startswith("python:"):
        if import_path and import_path not in sys.path:
            sys.path.append(import_path)
        name = path[len("python:"):]
        module = sys.modules.get(name)
        module = importlib.reload(module) if module is not None else importlib.import_module(name)
        return vars(module)
    else:
        namespace = {"__builtins__": __builtins__, "__name__": "__config__", "__file__": path,
                     "__doc__": None, "__package__": None}
        with open(path, "rb") as f:
            code = compile(f.read(), path, "exec")
        exec(code, namespace)
    return namespace


class HookArgs:
    """The server or worker argument of a master hook: a stand-in for
    gunicorn's Arbiter or Worker, with the attributes gorn's master sent,
    log and cfg (a HookConfig)."""

    def __init__(self, log, attrs, cfg):
        self.__dict__.update(attrs)
        self.log = log
        self.cfg = cfg


def master_hooks_main(cfg):
    """Runs the master's server hooks for gorn's master, one at a time, in
    the order they come: each call is a JSON line on standard input
    ({"id", "hook", "server", "worker", "extra", "reload"}) and is answered
    with a JSON line ({"id", "ok"}) on the standard output gorn reads. What
    the hooks print goes to standard error, the error log. Ends when gorn's
    master closes standard input."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    # USR1 from the master: the error log was rotated.
    signal.signal(signal.SIGUSR1, lambda *_: reopen_error_log(cfg.get("error_log"), True))
    log = Log(cfg.get("log_level", "info"), int(cfg.get("log_pid") or os.getpid()), cfg.get("syslog"))
    hook_log = HookLog(log.logger)
    app_path(cfg)
    path = cfg["hooks_file"]
    settings = HookConfig(cfg.get("settings") or {}, hook_log, path)
    try:
        configure_logging(cfg)
        funcs = load_hooks(path, MASTER_HOOKS, cfg.get("hooks_path"))
    except Exception:
        log.error("Cannot run %s for the master's server hooks" % path, exc=True)
        funcs = {}
    for line in sys.stdin:
        call = json.loads(line)
        name = call["hook"]
        if call.get("settings"):  # HUP: the settings as they are now
            settings = HookConfig(call["settings"], hook_log, path)
        if call.get("reload"):  # HUP: the file as it is now
            try:
                funcs = load_hooks(path, MASTER_HOOKS, cfg.get("hooks_path"))
            except Exception:
                log.error("Cannot run %s again; the master's server hooks are as they were" % path, exc=True)
        ok = True
        fn = funcs.get(name)
        if fn is not None:
            args = [HookArgs(hook_log, call.get("server") or {}, settings)]
            if "worker" in call:
                args.append(HookArgs(hook_log, call["worker"], settings))
            args += call.get("extra") or []
            try:
                fn(*args)
            except Exception:
                log.error("Exception in %s hook" % name, exc=True)
                ok = False
        try:
            replies.write(json.dumps({"id": call["id"], "ok": ok}) + "\n")
        except OSError:  # gorn's master is gone
            break
    sys.stderr.flush()
    os._exit(0)


# ----------------------------------------------------------------- server

class SafeAtoms(dict):
    """gunicorn's access log atoms, as --access-logformat's %-formatting
    reads them: an atom that is not there is "-", double quotes in text
    values are escaped, and {name}i, {name}o and {name}e atoms (a request
    header, a response header, an environ variable, name in any case) are
    looked up in the request's environ and response headers when a format
    asks for them, which spares building them for every request."""

    __slots__ = ("environ", "headers")

    def __init__(self, atoms, environ=None, headers=()):
        dict.__init__(self, atoms)
        self.environ = environ if environ is not None else {}
        self.headers = headers

    def __getitem__(self, key):
        try:
            value = dict.__getitem__(self, key)
        except KeyError:
            value = self._braced(key) if key[:1] == "{" else None
        if value is None:
            return "-"
        if type(value) is str and '"' in value:
            value = value.replace('"', '\\"')
        return value

    def _braced(self, key):
        name, kind = key[1:-2].lower(), key[-2:]
        if kind == "}i":
            var = name.upper().replace("-", "_")
            return self.environ.get(var if var in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + var)
        if kind == "}o":
            value = None
            for k, v in self.headers or ():
                if k.lower() == name:
                    value = v  # the last one, as gunicorn's dict of them
            return value
        if kind == "}e":
            for k, v in self.environ.items():
                if k.lower() == name:
                    return v
        return None


def basic_user(environ):
    """The user name of an HTTP Basic Authorization header; None if there
    is none, or it is empty or cannot be decoded."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    import base64
    import binascii
    try:
        return base64.b64decode(credentials.strip()).split(b":", 1)[0].decode("utf-8") or None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


class AccessLog:
    """gunicorn's access log, for a runtime whose logging configuration
    gives the gunicorn.access logger somewhere to write: each request the
    app answered becomes an INFO record whose message is the
    --access-logformat and whose argument is gunicorn's atoms (SafeAtoms),
    as gunicorn logs it, so formatters see both (the {name} atoms only by
    lookup)."""

    def __init__(self, logger, fmt):
        self.logger = logger
        self.fmt = fmt

    def atoms(self, environ, responder, seconds):
        us = int(seconds * 1000000)
        sec, frac = divmod(us, 1000000)
        method = environ.get("REQUEST_METHOD", "")
        proto = environ.get("SERVER_PROTOCOL", "")
        return SafeAtoms({
            "h": environ.get("REMOTE_ADDR") or "-",
            "l": "-",
            "u": basic_user(environ) or "-",
            "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
            "r": "%s %s %s" % (method, environ.get("RAW_URI", ""), proto),
            "s": (responder.status or "").split(None, 1)[0],
            "m": method,
            "U": environ.get("PATH_INFO", ""),
            "q": environ.get("QUERY_STRING", ""),
            "H": proto,
            "b": str(responder.sent),
            "B": responder.sent,
            "f": environ.get("HTTP_REFERER", "-"),
            "a": environ.get("HTTP_USER_AGENT", "-"),
            "T": sec,
            "D": us,
            "M": us // 1000,
            "L": "%d.%06d" % (sec, frac),
            "p": "<%d>" % os.getpid(),
        }, environ, responder.headers)

    def log(self, environ, responder, seconds):
        self.logger.info(self.fmt, self.atoms(environ, responder, seconds))


def setup_access_logger(cfg, pid):
    """Sets up the gunicorn.access logger as gunicorn does before it applies
    a logging configuration: INFO, not propagating, writing bare lines to
    --access-logfile and, with --log-syslog, to syslog. The configuration
    may then keep or replace these handlers."""
    logger = logging.getLogger("gunicorn.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    path = cfg.get("access_log")
    if path:
        handler = logging.StreamHandler(sys.stdout) if path == "-" else logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    if cfg.get("access_syslog"):
        try:
            logger.addHandler(syslog_handler(cfg["access_syslog"], pid))
        except (OSError, ValueError) as e:
            logging.getLogger("gunicorn.error").warning(
                "Cannot send the access log to syslog at %s: %s" % (cfg["access_syslog"].get("address"), e))
    return logger


class ClassAccessLog:
    """The access log of a --logger-class: each request the app answered
    goes to the instance's access(resp, req, environ, request_time), with
    stand-ins for gunicorn's Response and Request, as gunicorn's workers
    call it. The class decides what to log, and where."""

    def __init__(self, glog):
        import datetime
        self.glog = glog
        self.timedelta = datetime.timedelta

    def log(self, environ, responder, seconds):
        self.glog.access(HookResponse(responder), HookRequest(environ), environ,
                         self.timedelta(seconds=seconds))


def logger_class(path, namespace):
    """The class --logger-class names: module.Class, imported as the app
    is; __config__.NAME is NAME in the configuration file's namespace."""
    module, _, name = path.rpartition(".")
    if module == "__config__":
        if namespace is None or name not in namespace:
            raise RuntimeError("--logger-class %s: the configuration file defines no %s" % (path, name))
        return namespace[name]
    if not module:
        raise RuntimeError("--logger-class %s: not a module.Class path" % path)
    try:
        return getattr(importlib.import_module(module), name)
    except AttributeError:
        raise RuntimeError("--logger-class %s: module %s has no %s" % (path, module, name))


def setup_logger_class(cfg, log, settings, namespace):
    """Instantiates --logger-class with the settings (a HookConfig), as
    gunicorn's arbiter does: its setup(cfg) takes over the gunicorn.error
    and gunicorn.access loggers (gorn's handlers on gunicorn.error are
    removed first, as gunicorn's own setup replaces its handler) and
    applies a logging configuration. Returns the instance."""
    cls = logger_class(cfg["logger_class"], namespace)
    for handler in list(log.logger.handlers):
        log.logger.removeHandler(handler)
    settings.settings["logger_class"] = HookSetting("logger_class", cls)  # as gunicorn's cfg.logger_class
    return cls(settings)


def access_log(cfg, logger):
    """The AccessLog that logs each request through logger, when it would
    write records somewhere; else None, and the worker logs requests."""
    if logger is None or not logger.isEnabledFor(logging.INFO) or not logger.hasHandlers():  # False when disabled
        return None
    return AccessLog(logger, cfg.get("access_log_format") or DEFAULT_ACCESS_FORMAT)


class WorkerAnswer:
    """A response the worker writes for the runtime, as the access log
    sees it (status, headers, sent and length, as a Responder's)."""

    def __init__(self, status, page_bytes):
        self.status = status
        self.headers = [("Content-Type", "text/html"), ("Content-Length", str(page_bytes))]
        self.sent = page_bytes
        self.length = str(page_bytes)


# The worker's 500 for an app that raised before its response began: its
# error page is this many bytes (worker/handler.go's errorPage; a Go test
# holds the two together).
ERROR_PAGE_500_BYTES = 136
WORKER_500 = WorkerAnswer("500 Internal Server Error", ERROR_PAGE_500_BYTES)


class Server:
    def __init__(self, conn, app, cfg, log, hooks=None, access=None):
        self.conn = conn
        self.app = app
        self.log = log
        self.hooks = hooks
        if hooks is not None and (hooks.has("pre_request") or hooks.has("post_request")):
            self.handle = self.handle_hooked
        self.access = access
        if access is not None:
            self.respond = self.handle
            self.handle = self.handle_logged
        self.threads = max(1, int(cfg.get("threads", 1)))
        wsgi_vars = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": cfg.get("url_scheme", "http"),
            "wsgi.errors": ErrorStream(),
            "wsgi.multithread": self.threads > 1,
            "wsgi.multiprocess": bool(cfg.get("multiprocess", False)),
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        # Every request's environ starts with these; the worker's
        # wsgi.url_scheme (TLS, a trusted proxy's X-Forwarded-Proto)
        # replaces the default.
        conn.environ_template = environ_template(wsgi_vars)

    def handle(self, req):
        """Runs the app for req; returns its Responder, None if the app did
        not run."""
        try:
            if req.cancelled:  # the client left before the app started
                self.conn.send(pack_frame(T_ERROR, 0, req.sid, b"client disconnected"))
                return None
            responder = Responder(self, req)
            responder.run(self.app)
            return responder
        finally:
            self.conn.finish(req)

    def handle_logged(self, req):
        """handle (or handle_hooked), then the request's access log record,
        when the app's response went out (else the worker logs what it
        answered)."""
        start = time.monotonic()
        environ = req.environ
        responder = self.respond(req)
        if responder is not None and (responder.headers_sent or responder.raised):
            if not responder.headers_sent:
                responder = WORKER_500  # what the worker answers for it
            try:
                self.access.log(environ, responder, time.monotonic() - start)
            except Exception:
                self.log.error("Cannot log the access of %s" % environ.get("RAW_URI", ""), exc=True)

    def handle_hooked(self, req):
        """handle, with the pre_request and post_request hooks around the
        app, as gunicorn runs them: an exception in pre_request fails the
        request with a 500 and post_request then gets an empty environ and
        no response; an exception in post_request is logged."""
        hooks = self.hooks
        try:
            if req.cancelled:
                self.conn.send(pack_frame(T_ERROR, 0, req.sid, b"client disconnected"))
                return None
            worker = hooks.worker
            environ = req.environ
            hreq = HookRequest(environ)
            try:
                hooks.call("pre_request", worker, hreq)
            except Exception as e:
                self.log.error("Error handling request %s" % environ.get("RAW_URI", ""), exc=True)
                msg = ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace")
                self.conn.send(pack_frame(T_ERROR, 0, req.sid, msg))
                hooks.call_logged("post_request", worker, hreq, {}, None)
                refused = Responder(self, req)
                refused.raised = True  # the worker answers 500: handle_logged logs it
                return refused
            worker.nr += 1
            responder = Responder(self, req)
            try:
                responder.run(self.app)
            finally:
                hooks.call_logged("post_request", worker, hreq, environ, HookResponse(responder))
            return responder
        finally:
            self.conn.finish(req)

    def serve(self):
        conn = self.conn
        if self.threads == 1:
            conn.on_request = conn.pending.append
            pending = conn.pending
            while True:
                while pending:
                    self.handle(pending.pop(0))
                if conn.shutdown:
                    return
                if conn.closed:
                    worker_gone()
                conn.read_once()
        work = queue.SimpleQueue()
        conn.on_request = work.put

        def run():
            while True:
                req = work.get()
                if req is None:
                    return
                self.handle(req)

        pool = [threading.Thread(target=run, name="gorn-app-%d" % i, daemon=True)
                for i in range(self.threads)]
        for t in pool:
            t.start()
        while not conn.closed and not conn.shutdown:
            conn.read_once()
        if conn.closed:
            worker_gone()
        for _ in pool:
            work.put(None)
        for t in pool:
            t.join()


def main(argv):
    cfg = json.loads(argv[1])
    sys.argv = cfg.get("argv") or ["gorn"]
    if cfg.get("check"):
        check_app(cfg)
    if cfg.get("master_hooks"):
        master_hooks_main(cfg)
    log = Log(cfg.get("log_level", "info"), int(cfg.get("log_pid") or os.getpid()), cfg.get("syslog"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when we stop
    # USR1 reopens the logs: the worker tells us (a ReopenLogs frame), so one
    # sent to every process of the tree (systemctl kill -s USR1) changes
    # nothing here, where its default action would kill us.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    # On --timeout the worker sends DUMP_SIGNAL before it kills us: every
    # thread's Python stack goes to the error log, even while the app holds
    # the interpreter in a long C call.
    import faulthandler
    faulthandler.register(DUMP_SIGNAL, file=sys.stderr, all_threads=True)
    rfd, wfd = int(cfg["in_fd"]), int(cfg["out_fd"])
    # Ours alone: an app's exec'd children do not inherit them.
    os.set_inheritable(rfd, False)
    os.set_inheritable(wfd, False)
    app_path(cfg)

    if cfg.get("spew"):
        spew()
    hooks = None
    access_logger = None
    glog = None
    try:
        # The configuration file, for its server hooks or its logger class.
        conf_path = cfg.get("hooks_file") or cfg.get("config_file")
        namespace = config_namespace(conf_path, cfg.get("hooks_path")) if conf_path else None
        settings = None
        if conf_path or cfg.get("logger_class"):
            settings = HookConfig(cfg.get("settings") or {}, HookLog(log.logger), conf_path)
        if cfg.get("logger_class"):
            glog = setup_logger_class(cfg, log, settings, namespace)
        else:
            if cfg.get("log_config_dict") is not None or cfg.get("log_config_json") or cfg.get("log_config"):
                # As gunicorn: with a logging configuration, requests are
                # logged through the gunicorn.access logger.
                access_logger = setup_access_logger(cfg, int(cfg.get("log_pid") or os.getpid()))
            configure_logging(cfg)
        if cfg.get("hooks_file"):
            hooks = Hooks(namespace, settings, log.logger, cfg, glog)
            hooks.call("post_fork", hooks.server, hooks.worker)
        app = load(cfg)
        # An app whose logging configuration disables the loggers it does
        # not name (Django's LOGGING with disable_existing_loggers) would
        # silence the runtime's own lines, request tracebacks included.
        log.logger.disabled = False
        if hooks is not None:
            hooks.worker.wsgi = app
            hooks.worker.booted = True
            hooks.call("post_worker_init", hooks.worker)
            hooks.install_signal_hooks()
    except AppImportError as e:
        boot_error(wfd, APP_LOAD_ERROR, str(e))
    except BaseException as e:
        boot_error(wfd, WORKER_BOOT_ERROR, app_traceback(e))

    threads = max(1, int(cfg.get("threads", 1)))
    conn = Connection(rfd, wfd, threads > 1)
    conn.error_log = cfg.get("error_log")
    conn.capture_output = bool(cfg.get("capture_output"))
    if cfg.get("shared_fd"):
        try:
            conn.attach_shared(int(cfg["shared_fd"]), int(cfg["shared_header"]),
                               int(cfg["shared_slots"]), int(cfg["shared_slot_size"]),
                               int(cfg.get("shared_body_slots", 0)))
        except (OSError, ValueError) as e:
            log.warning("Bodies go through the pipes only: %s" % e)
    if glog is not None:
        access = ClassAccessLog(glog)
        conn.reopen_logs = getattr(glog, "reopen_files", reopen_log_files)
    else:
        access = access_log(cfg, access_logger)
    server = Server(conn, app, cfg, log, hooks, access)
    info = {
        "protocol": PROTOCOL_VERSION,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "pid": os.getpid(),
        "access": access is not None,
    }
    conn.send(pack_frame(T_READY, 0, 0, json.dumps(info).encode()))
    try:
        server.serve()
    except ProtocolError as e:
        log.error("gorn runtime protocol error: %s" % e)
        os._exit(1)
    if hooks is not None:
        hooks.worker.alive = False
        hooks.call_logged("worker_exit", hooks.server, hooks.worker)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# gunicorn's logging defaults, which logconfig_dict and --log-config-json
# are laid over (key by key, at the top level only) before dictConfig.
LOGGING_DEFAULTS = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": True,
                           "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": True,
                            "qualname": "gunicorn.access"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "generic",
                    "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "generic",
                          "stream": "ext://sys.stderr"},
    },
    "formatters": {
        "generic": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
                    "datefmt": "[%Y-%m-%d %H:%M:%S %z]", "class": "logging.Formatter"},
    },
}


def configure_logging(cfg):
    """The configuration file's logconfig_dict, else --log-config-json (a
    JSON dict), each laid over gunicorn's defaults and given to
    logging.config.dictConfig; else --log-config (an ini file,
    logging.config.fileConfig). One of them, in that order, as gunicorn
    picks; applied before the app is imported, as gunicorn applies them in
    the process the app runs in. Loggers that exist already are left
    enabled, as gunicorn leaves them."""
    import logging.config
    config = cfg.get("log_config_dict")
    if config is None and cfg.get("log_config_json"):
        with open(cfg["log_config_json"]) as f:
            config = json.load(f)
    if config is not None:
        merged = dict(LOGGING_DEFAULTS)
        merged.update(config)
        logging.config.dictConfig(merged)
        return
    path = cfg.get("log_config")
    if path:
        defaults = {"__file__": path, "here": os.path.dirname(path)}
        logging.config.fileConfig(path, defaults=defaults, disable_existing_loggers=False)


def load_paste(uri, global_conf):
    """--paste: loads the app from a PasteDeploy ini file ("FILE" or
    "FILE#name"), as gunicorn does."""
    try:
        from paste.deploy import loadapp
    except ImportError as e:
        raise AppImportError("--paste needs PasteDeploy in the app's Python: %s" % e)
    path, _, name = uri.partition("#")
    app = loadapp("config:" + path, name=name or None, relative_to=os.getcwd(),
                  global_conf=dict(global_conf or {}))
    if not callable(app):
        raise AppImportError("Application object must be callable.")
    return app


def load(cfg):
    """The app: from --paste's file, else from the APP argument."""
    if cfg.get("paste"):
        return load_paste(cfg["paste"], cfg.get("paste_global"))
    return load_app(cfg["app"])


def app_path(cfg):
    """Puts --pythonpath, then the current directory (--chdir), first on
    sys.path, as the app is imported from there."""
    for path in reversed(cfg.get("pythonpath") or []):
        sys.path.insert(0, path)
    if "" in sys.path:
        sys.path.remove("")
    sys.path.insert(0, os.getcwd())


def check_app(cfg):
    """--check-config: imports the app as main does, then exits 0; or
    writes why it does not load to standard error and exits 4 (not a
    callable app) or 3 (importing raised)."""
    app_path(cfg)
    try:
        configure_logging(cfg)
        load(cfg)
    except AppImportError as e:
        sys.stderr.write(str(e) + "\n")
        code = APP_LOAD_ERROR
    except BaseException as e:
        sys.stderr.write(app_traceback(e))
        code = WORKER_BOOT_ERROR
    else:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def app_traceback(exc):
    """Formats exc without the runtime's and importlib's own frames, so the
    traceback starts in the app's code."""
    tb = exc.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename in ("gorn_runtime.py", "<string>")
                              or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")
                              or tb.tb_frame.f_globals.get("__name__") == "importlib"):
        tb = tb.tb_next
    if tb is None:
        tb = exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb))


def boot_error(wfd, code, text):
    """Reports a failed app load to the worker and exits with code."""
    payload = json.dumps({"code": code, "message": text}).encode()
    try:
        write_all(wfd, pack_frame(T_BOOT_ERROR, 0, 0, payload))
    except OSError:
        sys.stderr.write(text + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv)
