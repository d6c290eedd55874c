"""The app of benches/fleet.py's hosts: 20 ms of "work" for a GET, and a
POST that reads its small body first; every answer names the host.

``HOST`` comes from the environment (fleet.py sets ``FLEET_HOST=h1`` ...) and
``VERSION`` is the line fleet.py rewrites in its copy of this file before a
rolling reload, so each answer says which host and which code served it:
``fleet hN vV pid P`` and, for a POST, `` read B``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

VERSION = 1

HOST = os.environ.get("FLEET_HOST", "h?")
SLEEP_S = 0.02


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    read = ""
    if environ["REQUEST_METHOD"] == "POST":
        length = environ.get("CONTENT_LENGTH") or ""
        data = environ["wsgi.input"].read(int(length)) if length.isdigit() else b""
        read = f" read {len(data)}"
    time.sleep(SLEEP_S)
    body = f"fleet {HOST} v{VERSION} pid {os.getpid()}{read}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
