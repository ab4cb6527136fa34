"""A test app whose logging configuration, applied at import as Django
applies its LOGGING, disables every logger it does not name; / raises."""
import logging.config

logging.config.dictConfig({"version": 1, "disable_existing_loggers": True})


def app(environ, start_response):
    raise RuntimeError("quiet app failed")
