"""A test app whose logging configuration, applied at import as Django
applies its LOGGING, disables every logger it does not name; /ok answers
200, any other path raises."""
import logging.config

logging.config.dictConfig({"version": 1, "disable_existing_loggers": True})


def app(environ, start_response):
    if environ["PATH_INFO"] == "/ok":
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    raise RuntimeError("quiet app failed")
