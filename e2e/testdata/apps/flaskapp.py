"""A small Flask app for gorn's end-to-end tests."""
import os

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/json")
def json_route():
    return jsonify(hello="world", pid=os.getpid(), args=request.args.to_dict(flat=False),
                   script_root=request.script_root, path=request.path)


@app.post("/form")
def form_route():
    files = {name: {"filename": f.filename, "size": len(f.read())}
             for name, f in request.files.items()}
    return jsonify(form=request.form.to_dict(flat=False), files=files,
                   content_type=request.content_type)


@app.post("/json")
def json_post():
    data = request.get_json()
    return jsonify(received=data), 201


@app.get("/boom")
def boom():
    raise RuntimeError("flask route exploded: marker-flask")
