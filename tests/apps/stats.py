"""The app the stats tests serve (tests/test_stats.py).

- ``/raise``: the app raises (the server answers 500 and counts an exception);
- ``/missing``: 404;
- ``/gate?gate=PATH&started=PATH``: creates ``started``, then waits (up to
  30 s) for the file ``gate``, so a test holds a thread inside the app;
- ``/body``: reads ``wsgi.input`` and answers its size;
- anything else: ``ok``.
"""

from __future__ import annotations

import os
import time

from apps import query, read_body


def _answer(start_response, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise RuntimeError("stats-test-exception")
    if path == "/missing":
        return _answer(start_response, "404 Not Found", b"missing")
    if path == "/gate":
        args = query(environ)
        with open(args["started"], "a", encoding="utf-8") as marker:
            marker.write(f"{os.getpid()}\n")
        deadline = time.monotonic() + 30
        while not os.path.exists(args["gate"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        return _answer(start_response, "200 OK", b"released")
    if path == "/body":
        return _answer(start_response, "200 OK", str(len(read_body(environ))).encode())
    return _answer(start_response, "200 OK", b"ok")
