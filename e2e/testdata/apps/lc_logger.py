"""A --logger-class for the end-to-end tests that owes nothing to gunicorn:
it writes a JSON line per request, and one when it is set up or reopens
its files, to the file cfg.env["ACCESS_JSON"] names, and writes the
runtime's gunicorn.error lines to standard error as "JSONLOGGER LEVEL
message"."""
import json
import logging
import sys


class JSONLogger:
    def __init__(self, cfg):
        self.cfg = cfg
        self.path = cfg.env["ACCESS_JSON"]
        self.error_log = logging.getLogger("gunicorn.error")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("JSONLOGGER %(levelname)s %(message)s"))
        self.error_log.addHandler(handler)
        self._write({"setup": True, "workers": cfg.workers, "class": cfg.logger_class.__name__})

    def _write(self, obj):
        with open(self.path, "a") as f:
            f.write(json.dumps(obj) + "\n")

    def access(self, resp, req, environ, request_time):
        self._write({"path": req.path, "method": req.method, "status": resp.status, "sent": resp.sent,
                     "agent": dict(req.headers).get("USER-AGENT"), "seconds": request_time.total_seconds()})

    def reopen_files(self):
        self._write({"reopened": True})
