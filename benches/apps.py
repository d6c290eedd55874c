"""The WSGI apps every server in benches/compare.py runs (``Scenario.app``).

Each is plain PEP 3333 with a Content-Length, so every server can answer it
without chunking; ``compare.py`` checks one answer of each before loading it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

HELLO = b"Hello, world!\n"
ONE_MIB = 1024 * 1024
# Built once at import: the scenario measures the server moving 1 MiB, not the
# app making it.
BIG = bytes(range(256)) * (ONE_MIB // 256)
READ_BYTES = 64 * 1024  # drain's read size


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Hello world: the server's own per-request overhead."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]


def sleep(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """An app that waits 10 ms (an I/O-bound view): what threads are for."""
    time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]


def get1m(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """A 1 MiB response body in one chunk."""
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG)))],
    )
    return [BIG]


def post1m(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Echo: read the whole request body from wsgi.input and send it back."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    body = stream.read(int(length)) if length.isdigit() else stream.read()
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
    )
    return [body]


def drain(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Read the whole request body in 64 KiB reads, keep none of it, and
    answer how many bytes came: an upload whose cost is the server's alone.

    With a Content-Length it reads no further than that (PEP 3333); without
    one (a chunked body) it reads until ``read`` returns b"".
    """
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    left = int(length) if length.isdigit() else None
    total = 0
    while left is None or left > 0:
        chunk = stream.read(READ_BYTES if left is None else min(READ_BYTES, left))
        if not chunk:
            break
        total += len(chunk)
        if left is not None:
            left -= len(chunk)
    body = str(total).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
