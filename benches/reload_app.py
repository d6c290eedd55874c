"""The app of benches/reload.py: 10 ms of "work", then its code version.

``VERSION`` is the one line the harness rewrites (in its own copy of this
file, never this one) before each reload, so which code a worker runs is in
every answer: ``reload_app vN pid P``, P being the worker's process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

VERSION = 1

SLEEP_S = 0.01  # an I/O-bound view: what the 4 threads per worker are for


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    time.sleep(SLEEP_S)
    body = f"reload_app v{VERSION} pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
