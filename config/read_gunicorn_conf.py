"""Reads a gunicorn configuration file for gorn's -c/--config.

Runs the file as gunicorn does (its module-level names are the settings),
or imports the module a "python:MODULE" location names (from the current
directory, or wherever sys.path finds it), and writes, as one JSON object
to descriptor 3 (standard output and error are the file's own):

  file      the file read, as an absolute path (a module's __file__; null
            for a module without one)
  module, import_path
            for a module, its name and the sys.path directory it was
            imported from (null when it has no file); null for a file
  settings  every top-level name whose value is JSON data (str, int, float,
            bool, None, or lists and dicts of those), by name
  hooks     the names bound to functions or other callables
  objects   the names bound to anything else but modules (classes, streams,
            dicts holding them, ...), which gorn cannot take as settings

gorn, not this script, decides which names are settings it knows. An
exception in the file is printed as a traceback on standard error, with
exit code 1. Standard library only, Python 3.9 or later.

Usage: python3 read_gunicorn_conf.py FILE|file:FILE|python:MODULE
"""

import importlib
import json
import os
import sys
import types


def _is_data(value, depth=0):
    if depth > 8:
        return False
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_data(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_data(v, depth + 1) for k, v in value.items())
    return False


def read(location):
    module_name = import_path = None
    if location.startswith("python:"):
        # As gunicorn: an import, with the current directory importable
        # (python -c puts it first on sys.path).
        module_name = location[len("python:"):]
        module = importlib.import_module(module_name)
        namespace = vars(module)
        path = getattr(module, "__file__", None)
        if path:
            # Up from the file, a directory per dotted part of the name
            # (and one more for a package's __init__).
            import_path = os.path.dirname(os.path.abspath(path))
            ups = module_name.count(".") + (os.path.basename(path).startswith("__init__.") and 1 or 0)
            for _ in range(ups):
                import_path = os.path.dirname(import_path)
    else:
        path = location[len("file:"):] if location.startswith("file:") else location
        # As gunicorn's Config loading: the file runs as the module
        # __config__.
        namespace = {
            "__builtins__": __builtins__,
            "__name__": "__config__",
            "__file__": path,
            "__doc__": None,
            "__package__": None,
        }
        with open(path, "rb") as f:
            code = compile(f.read(), path, "exec")
        exec(code, namespace)
    settings, hooks, objects = {}, [], []
    for name, value in namespace.items():
        if name.startswith("__") or isinstance(value, types.ModuleType):
            continue
        if _is_data(value):
            settings[name] = list(value) if isinstance(value, tuple) else value
        elif callable(value) and not isinstance(value, type):
            hooks.append(name)
        else:
            objects.append(name)
    return {"file": path and os.path.abspath(path), "module": module_name,
            "import_path": import_path, "settings": settings,
            "hooks": sorted(hooks), "objects": sorted(objects)}


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: read_gunicorn_conf.py FILE|file:FILE|python:MODULE\n")
        return 2
    # The result goes to descriptor 3; standard output and error are the
    # file's, which gorn shows as gunicorn would.
    result = read(argv[1])
    with os.fdopen(3, "w") as out:
        out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
