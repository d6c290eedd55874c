"""Requests that run too long, for the ``--harakiri`` tests.

- ``/pid``: JSON with the worker's pid, at once;
- ``/spin``: a pure-Python loop that never ends, inside an ``except
  Exception`` that must not stop ``rwsgi.RequestTimeout`` (a BaseException);
- ``/sleep?t=SECONDS``: ``time.sleep`` (blocked in C: the exception fires
  only when the sleep returns), then JSON;
- ``/stream``: a generator that yields one chunk, then loops forever.

With ``record=PATH``, whatever unwinds a call (the exception's module and
name) is appended to PATH, then re-raised.
"""

from __future__ import annotations

import os
import time

from apps import json_response, query, record


def spin_forever() -> None:
    while True:
        try:
            while True:
                pass
        except Exception:  # RequestTimeout is a BaseException: not caught here
            pass


def sleep_long(seconds: float) -> None:
    time.sleep(seconds)


def stream_then_spin():
    yield b"first chunk"
    spin_forever()
    yield b"never"


def _recorded(path: str | None, call, *args):
    try:
        return call(*args)
    except BaseException as error:
        record(path, f"{type(error).__module__}.{type(error).__qualname__}")
        raise


def application(environ, start_response):
    args = query(environ)
    path = environ["PATH_INFO"]
    where = args.get("record")
    if path == "/spin":
        _recorded(where, spin_forever)
    elif path == "/sleep":
        _recorded(where, sleep_long, float(args.get("t", "0")))
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream_then_spin()
    return json_response(start_response, {"pid": os.getpid()})
