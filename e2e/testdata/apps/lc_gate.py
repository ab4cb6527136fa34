"""A test app whose import waits (up to a minute) until the file $GATE_FILE
exists, after creating $GATE_FILE.importing: a test sees the runtime
importing and decides when the import ends. Every path answers the
runtime's os.environ as JSON."""
import json
import os
import time

GATE = os.environ["GATE_FILE"]
open(GATE + ".importing", "w").close()
_deadline = time.monotonic() + 60
while not os.path.exists(GATE) and time.monotonic() < _deadline:
    time.sleep(0.02)


def app(environ, start_response):
    body = json.dumps(dict(os.environ)).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
