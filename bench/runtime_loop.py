"""Measures gorn's app runtime alone: its CPU time per request, with no
HTTP, no Go and no client in the way.

    /usr/bin/python3 bench/runtime_loop.py [--app wsgi_app:app] [--path /]
        [--requests 50000] [--depth 32] [--threads 1] [--body 0] [--no-shared]
        [--profile | --gc]

Starts worker/runtime/gorn_runtime.py with two pipes, as a gorn worker
does, and plays the worker on the other: it keeps --depth
requests in flight (gorn's pipeline), reads the responses, and prints the
runtime's CPU time (user + system, from /proc) per request and the
requests per second of runtime CPU. Large response chunks come back in
shared memory, as from a gorn worker (the geometry is the worker's);
--no-shared leaves it out, so every byte crosses the pipes. --profile
runs the runtime under cProfile and prints its top functions instead;
--gc prints, after the figures, what Python's cycle collector did in the
runtime, start-up and the app's import included. Used to measure changes to
the runtime's hot path (docs/performance.md); the load it applies stays
inside this process pair.
"""

import argparse
import importlib.util
import json
import marshal
import mmap
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIME = os.path.join(HERE, "..", "worker", "runtime", "gorn_runtime.py")


def _load_runtime():
    """The runtime's module, for its frame codec (nothing runs on import)."""
    spec = importlib.util.spec_from_file_location("gorn_runtime", RUNTIME)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rt = _load_runtime()

# The shared memory a gorn worker gives its runtime (worker/shared.go).
SHARED_HEADER, SHARED_SLOTS, SHARED_BODY_SLOTS, SLOT_SIZE = 4096, 32, 8, 64 << 10


# Runs the runtime with start run just before it, and report as it
# exits: the runtime ends with os._exit, which is where report prints.
WRAPPER = """
import os, runpy, sys
path = sys.argv[1]
sys.argv = sys.argv[1:]
real_exit = os._exit
def _exit(code):
{report}
    sys.stdout.flush()
    real_exit(code)
os._exit = _exit
{start}
runpy.run_path(path, run_name="__main__")
"""


def wrapper(start, report):
    """The WRAPPER program with its start and report code."""
    return WRAPPER.format(start=start, report=textwrap.indent(report, "    "))


# The runtime under cProfile, its top functions printed as it exits.
PROFILER = wrapper(start="""\
import cProfile, pstats
prof = cProfile.Profile()
prof.enable()""", report="""\
prof.disable()
pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)""")

# The runtime, with what Python's cycle collector did in it printed as it
# exits (docs/performance.md, entry 22).
GC_STATS = wrapper(start="import gc", report="""\
sys.stdout.write("cycle collector: " + "; ".join(
    "generation %d: %d collections, %d objects freed" % (i, s["collections"], s["collected"])
    for i, s in enumerate(gc.get_stats())) + "\\n")""")


def environ(path, body_len):
    """The environ a gorn worker sends for wrk's GET (or a POST of body_len)."""
    env = {
        "REQUEST_METHOD": "POST" if body_len else "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "gorn/bench",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.url_scheme": "http",
    }
    if body_len:
        env["CONTENT_LENGTH"] = str(body_len)
        env["CONTENT_TYPE"] = "application/octet-stream"
    # As the worker encodes it (docs/protocol.md §2): the values of the
    # runtime's ENVIRON_KEYS, the other entries, the mask of absent keys.
    values = tuple(env.get(k) for k in rt.ENVIRON_KEYS)
    other = {k: v for k, v in env.items() if k not in rt.ENVIRON_KEYS}
    absent = sum(1 << i for i, k in enumerate(rt.ENVIRON_KEYS) if k not in env)
    return marshal.dumps(values + (other, absent))


def request_frame(sid, env, body):
    return rt.pack_frame(rt.T_REQUEST, rt.F_END, sid, rt.U32.pack(len(env)) + env + body)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--app", default="wsgi_app:app")
    ap.add_argument("--chdir", default=os.path.join(HERE, "apps"))
    ap.add_argument("--path", default="/")
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--depth", type=int, default=32, help="requests in flight (gorn's pipeline)")
    ap.add_argument("--threads", type=int, default=1, help="the runtime's app threads (--threads)")
    ap.add_argument("--body", type=int, default=0, help="request body bytes (sent whole)")
    ap.add_argument("--no-shared", action="store_true", help="no shared memory: bodies through the pipes")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--profile", action="store_true", help="print the runtime's cProfile top 25 instead")
    how.add_argument("--gc", action="store_true", help="print what the cycle collector did")
    args = ap.parse_args()

    rt_in, to_rt = os.pipe()  # the runtime reads frames from rt_in
    from_rt, rt_out = os.pipe()  # and writes its frames to rt_out
    cfg = {"app": args.app, "threads": args.threads, "in_fd": rt_in, "out_fd": rt_out,
           "log_level": "warning"}
    fds = [rt_in, rt_out]
    args.states = None
    if not args.no_shared:
        size = SHARED_HEADER + (SHARED_SLOTS + SHARED_BODY_SLOTS) * SLOT_SIZE
        mfd = os.memfd_create("gorn-bodies", 0)
        os.ftruncate(mfd, size)
        args.states = memoryview(mmap.mmap(mfd, size))[:4 * SHARED_SLOTS].cast("I")
        cfg.update(shared_fd=mfd, shared_header=SHARED_HEADER, shared_slots=SHARED_SLOTS,
                   shared_body_slots=SHARED_BODY_SLOTS, shared_slot_size=SLOT_SIZE)
        fds.append(mfd)
    wrapper = PROFILER if args.profile else GC_STATS if args.gc else None
    if wrapper:
        cmd = [sys.executable, "-c", wrapper, RUNTIME, json.dumps(cfg)]
    else:
        cmd = [sys.executable, RUNTIME, json.dumps(cfg)]
    proc = subprocess.Popen(cmd, cwd=args.chdir, pass_fds=fds,
                            stdout=subprocess.PIPE if wrapper else None)
    for fd in fds:
        os.close(fd)
    try:
        run(to_rt, from_rt, proc, args)
    finally:
        os.close(to_rt)
        os.close(from_rt)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if wrapper and out:
            print("\n".join(out.decode().splitlines()[:40]))


def run(to_rt, from_rt, proc, args):
    def frames():
        """Yields the frames that arrive, reading as needed."""
        buf = bytearray()
        while True:
            data = os.read(from_rt, 1 << 20)
            if not data:
                raise SystemExit("the runtime closed its pipe")
            buf += data
            got, off = rt.unpack_frames(buf)
            del buf[:off]
            yield from got

    # Sends go through a thread, as in a gorn worker: a blocking write
    # here while the runtime blocks writing responses would deadlock.
    outbox = queue.SimpleQueue()

    def sender():
        while True:
            data = outbox.get()
            if data is None:
                return
            rt.write_all(to_rt, data)
    sending = threading.Thread(target=sender, daemon=True)
    sending.start()

    it = frames()
    ftype, _, _, payload = next(it)
    if ftype != rt.T_READY:
        raise SystemExit("the runtime did not start: %r" % payload[:2000])
    env = environ(args.path, args.body)
    body = b"x" * args.body
    sent = done = 0
    t0 = cpu_seconds(proc.pid)
    w0 = time.monotonic()
    while sent < min(args.depth, args.requests):
        sent += 1
        outbox.put(request_frame(sent, env, body))
    while done < args.requests:
        ftype, flags, sid, payload = next(it)
        if ftype == rt.T_ERROR:
            raise SystemExit("the app failed: %r" % payload)
        if ftype == rt.T_SHARED:  # written out at once: the slot is free again
            slot, n = rt.SHARED.unpack(payload)
            args.states[slot] = 0
            outbox.put(rt.pack_frame(rt.T_WINDOW, 0, sid, rt.U32.pack(n)))
        if ftype == rt.T_DATA or ftype == rt.T_START or ftype == rt.T_SHARED:
            if len(payload) and ftype == rt.T_DATA:
                outbox.put(rt.pack_frame(rt.T_WINDOW, 0, sid, rt.U32.pack(len(payload))))
            if flags & rt.F_END:
                done += 1
                out = []
                while sent < args.requests and sent - done < args.depth:
                    sent += 1
                    out.append(request_frame(sent, env, body))
                if out:
                    outbox.put(b"".join(out))
    cpu = cpu_seconds(proc.pid) - t0
    wall = time.monotonic() - w0
    outbox.put(rt.pack_frame(rt.T_SHUTDOWN, 0, 0))
    outbox.put(None)
    sending.join(10)  # before the caller closes the pipe under it
    if not args.profile:
        print("%d requests, depth %d: runtime CPU %.2f us/request (%.0f req/s of runtime CPU), wall %.0f req/s"
              % (args.requests, args.depth, 1e6 * cpu / args.requests, args.requests / cpu if cpu else 0,
                 args.requests / wall))


if __name__ == "__main__":
    main()
