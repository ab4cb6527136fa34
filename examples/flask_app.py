"""A small Flask app.

    gorn --chdir examples flask_app:app

Needs Flask (Debian: apt-get install python3-flask; or pip install flask in
a virtualenv, which gorn picks up from $VIRTUAL_ENV).
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello from Flask under gorn!\n"


@app.route("/hello/<name>")
def hello(name):
    return jsonify(greeting="Hello, %s!" % name, method=request.method)


@app.route("/echo", methods=["POST"])
def echo():
    """Returns the request body: wsgi.input streams it from gorn."""
    data = request.get_data()
    return jsonify(length=len(data), body=data.decode("utf-8", "replace"))
