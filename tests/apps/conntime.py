"""Connection-lifetime tests: keep-alive, draining, readiness, slow and
stalled clients. Every call is noted in ``$RWSGI_TEST_RECORD`` (its
PATH_INFO), so a request answered by the server alone is proven never to
have reached the app.

- ``/hello``: a short text answer;
- ``/sleep?t=SECONDS&started=PATH``: sleeps, PATH created when the call begins;
- ``/big?mb=N&mode=stream|full|file``: N MiB (64 by default) as a generator
  of 64 KiB chunks, as one bytes object in a list, or through
  ``wsgi.file_wrapper`` over a temporary file; the generator and the file
  note ``closed /big`` in the record when their ``close()`` runs;
- ``/body``: reads the whole body and answers its length.
"""

from __future__ import annotations

import os
import tempfile
import time

from apps import query, read_body, record, record_call

CHUNK = 64 * 1024


def _record_path() -> str | None:
    return os.environ.get("RWSGI_TEST_RECORD")


def _chunks(total: int):
    chunk = b"x" * CHUNK
    try:
        for _ in range(total // CHUNK):
            yield chunk
    finally:
        record(_record_path(), "closed /big")


class ClosingFile:
    """A temporary file of ``size`` bytes for ``wsgi.file_wrapper``; its
    ``close()`` is noted and removes nothing (the file is already unlinked)."""

    def __init__(self, size: int) -> None:
        self._file = tempfile.TemporaryFile()
        self._file.truncate(size)
        self._file.seek(0)

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def close(self) -> None:
        self._file.close()
        record(_record_path(), "closed /big")


def application(environ, start_response):
    record_call(environ)
    path = environ["PATH_INFO"]
    args = query(environ)
    if path == "/sleep":
        if args.get("started"):
            with open(args["started"], "a", encoding="utf-8") as marker:
                marker.write(f"{os.getpid()}\n")
        time.sleep(float(args.get("t", "1")))
        body = b"slept"
    elif path == "/big":
        size = int(args.get("mb", "64")) << 20
        mode = args.get("mode", "stream")
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        start_response("200 OK", headers)
        if mode == "full":
            return [b"x" * size]
        if mode == "file":
            return environ["wsgi.file_wrapper"](ClosingFile(size), CHUNK)
        return _chunks(size)
    elif path == "/body":
        body = str(len(read_body(environ))).encode()
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
