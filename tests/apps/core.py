"""The app the protocol-neutral tests (test_core.py) and the fairness tests serve.

Every call appends its PATH_INFO to ``$RWSGI_TEST_RECORD`` (when set) before
anything else, so a test can prove that a refused request never reached the
app. Routes, matched on the last part of PATH_INFO:

- ``/hello``: ``hello`` with its Content-Length;
- ``/hash``: JSON with the sha256 and size of ``wsgi.input`` and the method;
- ``/nobody?code=204|304``: that status, with a body the server must not send;
- ``/length?declared=N&actual=M``: declares Content-Length N, returns M bytes;
- ``/hop?stream=1``: hop-by-hop headers (Connection, Transfer-Encoding,
  Keep-Alive, Upgrade) the server must not forward, a list body or a generator;
- ``/gate?gate=PATH&started=PATH``: creates ``started``, then waits (up to 30 s)
  for the file ``gate`` before answering, so a test knows a request is inside
  the app and decides when it leaves;
- ``/pid``: the worker's pid, at once;
- anything else: JSON with PATH_INFO, QUERY_STRING, the method and the body size.
"""

from __future__ import annotations

import hashlib
import os
import time

from apps import json_response, query, read_body, record_call

GATE_LIMIT = 30.0
HOP_BY_HOP = [
    ("Connection", "keep-alive"),
    ("Transfer-Encoding", "chunked"),
    ("Keep-Alive", "timeout=5"),
    ("Upgrade", "h2c"),
]
HOP_BODY = b"hop-by-hop body"


def hello(environ, start_response, args):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def hash_body(environ, start_response, args):
    digest = hashlib.sha256()
    size = 0
    stream = environ["wsgi.input"]
    while True:
        piece = stream.read(1 << 16)
        if not piece:
            break
        digest.update(piece)
        size += len(piece)
    report = {"sha256": digest.hexdigest(), "size": size, "method": environ["REQUEST_METHOD"]}
    return json_response(start_response, report)


def nobody(environ, start_response, args):
    reasons = {"204": "No Content", "304": "Not Modified"}
    code = args.get("code", "204")
    start_response(f"{code} {reasons[code]}", [("X-Code", code)])
    return [b"this body must not be sent"]


def length(environ, start_response, args):
    declared, actual = args["declared"], int(args["actual"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", declared)])
    return [b"0123456789abcdefghij"[:actual]]


def hop(environ, start_response, args):
    start_response("200 OK", [("Content-Type", "text/plain"), *HOP_BY_HOP])
    if args.get("stream"):
        return (piece for piece in (b"hop-by-hop ", b"body"))
    return [HOP_BODY]


def gate(environ, start_response, args):
    if args.get("started"):
        with open(args["started"], "a", encoding="utf-8") as marker:
            marker.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + GATE_LIMIT
    opened = True
    while not os.path.exists(args["gate"]):
        if time.monotonic() > deadline:
            opened = False
            break
        time.sleep(0.01)
    return json_response(start_response, {"pid": os.getpid(), "gate_opened": opened})


def pid(environ, start_response, args):
    return json_response(start_response, {"pid": os.getpid()})


def report(environ, start_response, args):
    body = read_body(environ)
    return json_response(
        start_response,
        {
            "path": environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "method": environ.get("REQUEST_METHOD", ""),
            "body_size": len(body),
        },
    )


ROUTES = {
    "hello": hello,
    "hash": hash_body,
    "nobody": nobody,
    "length": length,
    "hop": hop,
    "gate": gate,
    "pid": pid,
}


def application(environ, start_response):
    record_call(environ)
    name = environ.get("PATH_INFO", "").rstrip("/").rsplit("/", 1)[-1]
    return ROUTES.get(name, report)(environ, start_response, query(environ))
