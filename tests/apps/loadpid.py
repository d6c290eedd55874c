"""Which process imported the app: the master (preload) or each worker (--lazy)."""

from __future__ import annotations

import json
import os

IMPORT_PID = os.getpid()


def application(environ, start_response):
    body = json.dumps({"import_pid": IMPORT_PID, "pid": os.getpid()}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


not_callable = 42
