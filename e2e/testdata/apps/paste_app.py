"""A PasteDeploy app factory, for gorn's --paste test.

GET any path: {"greeting": the ini's greeting, "region": --paste-global's
region}, and a warning "served PATH" from the Python logger "pasteapp".
"""
import json
import logging


def app_factory(global_config, **local_conf):
    def app(environ, start_response):
        logging.getLogger("pasteapp").warning("served %s", environ["PATH_INFO"])
        body = json.dumps({"greeting": local_conf.get("greeting"),
                           "region": global_config.get("region")}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app
