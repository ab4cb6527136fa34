"""The app of the request corpus tests (e2e/corpus_test.go, guard_test.go).

Every request gets 200 and JSON: the environ's string values and the request
body it read (latin-1). /split?TEXT answers with a response header holding
the unquoted TEXT, for the response-splitting test (CVE-2018-1000164).
"""
import json
from urllib.parse import unquote_to_bytes


def app(environ, start_response):
    if environ["PATH_INFO"] == "/split":
        value = unquote_to_bytes(environ["QUERY_STRING"]).decode("latin-1")
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Echo", value)])
        return [b"split\n"]
    body = environ["wsgi.input"].read()
    env = {k: v for k, v in environ.items() if isinstance(v, str)}
    out = json.dumps({"environ": env, "body": body.decode("latin-1")}, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]
