"""The app the uwsgi, nginx and unix-socket tests serve, routed on PATH_INFO.

Every call appends its PATH_INFO to ``$RWSGI_TEST_RECORD`` (when set) before
anything else, so a test can prove that a malformed packet never reached the
app. Routes (anything not listed, including a mounted prefix, gets ``/env``):

- ``/env``: the environ as JSON (str values as given, other values' type names),
  plus ``pid`` and ``body_sha256``/``body_size`` of ``wsgi.input``;
- ``/echo``: the request body back, with its length;
- ``/hash``: JSON with the sha256 and size of the body;
- ``/stream?gate=PATH``: a generator: ``first`` chunk, then waits (up to 10 s)
  for the file ``gate`` before yielding 64 more chunks;
- ``/raise``: raises before start_response (the server answers 500);
- ``/status?code=204``: that status with a body the server must not send;
- ``/reason``: ``299 Custom Reason``.
"""

from __future__ import annotations

import hashlib
import os
import time

from apps import json_response, query, read_body, record_call

GATE_LIMIT = 10.0
STREAM_CHUNK = b"0123456789abcdef" * 64  # 1 KiB


def env(environ, start_response):
    body = read_body(environ)
    report = {
        "environ": {key: value for key, value in environ.items() if isinstance(value, str)},
        "types": {key: type(value).__name__ for key, value in environ.items()},
        "pid": os.getpid(),
        "body_size": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    return json_response(start_response, report)


def echo(environ, start_response):
    body = read_body(environ)
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
    )
    return [body]


def hash_body(environ, start_response):
    body = read_body(environ)
    report = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "pid": os.getpid()}
    return json_response(start_response, report)


def stream(environ, start_response):
    gate = query(environ).get("gate")
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first\n"
    deadline = time.monotonic() + GATE_LIMIT
    while gate and not os.path.exists(gate):
        if time.monotonic() > deadline:
            yield b"gate timeout\n"
            return
        time.sleep(0.01)
    for _ in range(64):
        yield STREAM_CHUNK
    yield b"last\n"


def stream_body() -> bytes:
    """What ``/stream`` sends in all, once its gate is open."""
    return b"first\n" + STREAM_CHUNK * 64 + b"last\n"


def fail(environ, start_response):
    raise RuntimeError("uwsgi-apps-raise-marker")


def status(environ, start_response):
    code = query(environ).get("code", "204")
    reasons = {"204": "No Content", "304": "Not Modified"}
    start_response(f"{code} {reasons.get(code, 'Whatever')}", [("X-Status", code)])
    return [b"this body must not be sent"]


def reason(environ, start_response):
    start_response("299 Custom Reason", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


ROUTES = {
    "/echo": echo,
    "/hash": hash_body,
    "/stream": stream,
    "/raise": fail,
    "/status": status,
    "/reason": reason,
}


def application(environ, start_response):
    record_call(environ)
    path = environ.get("PATH_INFO", "")
    # Under nginx's /tcp/, /proxy/, /stream/ prefixes the route is the last part.
    route = ROUTES.get(path) or ROUTES.get("/" + path.rstrip("/").rsplit("/", 1)[-1])
    return (route or env)(environ, start_response)
