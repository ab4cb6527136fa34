"""A WSGI app whose import takes a while (e2e/pool_test.go): POOL_SLOWBOOT_SECS
seconds, default 5. Each request writes a line naming its path to standard
error (the error log)."""
import os
import sys
import time

time.sleep(float(os.environ.get("POOL_SLOWBOOT_SECS", "5")))


def app(environ, start_response):
    sys.stderr.write("pool_slowboot served %s\n" % environ["PATH_INFO"])
    sys.stderr.flush()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"booted\n"]
