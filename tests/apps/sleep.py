"""Slow requests, concurrency bookkeeping and dying workers.

``/sleep?t=SECONDS`` sleeps then answers JSON with the pid, the thread and how
many calls were running at once (``max_concurrent`` since the last
``/reset``). ``started=PATH`` is created when the call begins, so a test knows
the request is in flight. ``pad=N`` adds N bytes to the body. ``/exit`` ends
the worker process with ``os._exit``; ``/pid`` answers at once.
"""

from __future__ import annotations

import json
import os
import threading
import time

from apps import query

_lock = threading.Lock()
_running = 0
_max_running = 0


def _json(start_response, report: dict, pad: int = 0) -> list[bytes]:
    body = json.dumps(report).encode() + b" " * pad
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def application(environ, start_response):
    global _running, _max_running
    args = query(environ)
    path = environ["PATH_INFO"]
    if path == "/exit":
        os._exit(3)
    if path == "/reset":
        with _lock:
            _max_running = 0
        return _json(start_response, {"pid": os.getpid()})
    if path == "/pid":
        return _json(start_response, {"pid": os.getpid(), "thread": threading.get_ident()})
    with _lock:
        _running += 1
        _max_running = max(_max_running, _running)
        at_start = _running
    try:
        if args.get("started"):
            with open(args["started"], "a", encoding="utf-8") as marker:
                marker.write(f"{os.getpid()}\n")
        began = time.monotonic()
        time.sleep(float(args.get("t", "0")))
        slept = time.monotonic() - began
    finally:
        with _lock:
            _running -= 1
            peak = _max_running
    return _json(
        start_response,
        {
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "at_start": at_start,
            "max_concurrent": peak,
            "slept": slept,
        },
        int(args.get("pad", "0")),
    )
