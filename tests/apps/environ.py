"""Echo the WSGI environ as JSON.

``/errors?msg=...`` writes ``msg`` to ``wsgi.errors`` instead. Every call is
noted in ``$RWSGI_TEST_RECORD`` when that is set.
"""

from __future__ import annotations

import json
import os
import threading

from apps import query, record_call

_METHODS = {
    "wsgi.input": ("read", "readline", "readlines", "__iter__"),
    "wsgi.errors": ("write", "writelines", "flush"),
}


def _describe(value: object) -> object:
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, tuple) and all(isinstance(item, int) for item in value):
        return list(value)
    return repr(value)


def application(environ, start_response):
    record_call(environ)
    if environ["PATH_INFO"] == "/errors":
        errors = environ["wsgi.errors"]
        errors.write(query(environ).get("msg", "no message") + "\n")
        errors.writelines(["second line via writelines\n"])
        errors.flush()
    report = {
        "values": {key: _describe(value) for key, value in environ.items()},
        "types": {key: type(value).__name__ for key, value in environ.items()},
        "methods": {
            key: [name for name in names if callable(getattr(environ.get(key), name, None))]
            for key, names in _METHODS.items()
        },
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
        "pid": os.getpid(),
        "thread": threading.get_ident(),
    }
    body = json.dumps(report).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
