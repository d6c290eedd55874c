"""Small WSGI apps the behaviour tests serve (``apps.<module>:<attr>``).

Each module is one area; an app picks its behaviour from PATH_INFO and the
query string so one server per test module can cover many cases. Apps that
must report something out of band (close() calls, "I was called") append to a
file whose absolute path the test passes in the query string (``record=``) or
in the ``RWSGI_TEST_RECORD`` environment variable.
"""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qs


def query(environ: dict) -> dict[str, str]:
    """The query string as a dict of last values."""
    return {key: values[-1] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}


def record(path: str | None, text: str) -> None:
    """Append one line to ``path`` (no-op without a path); flushed and closed at once."""
    if not path:
        return
    with open(path, "a", encoding="utf-8") as file:
        file.write(text + "\n")


def record_call(environ: dict) -> None:
    """Note the request in ``$RWSGI_TEST_RECORD``, for "never reached the app" tests."""
    record(os.environ.get("RWSGI_TEST_RECORD"), environ.get("PATH_INFO", ""))


def read_body(environ: dict) -> bytes:
    """All of ``wsgi.input``, read in 64 KiB pieces as a framework would."""
    stream = environ["wsgi.input"]
    pieces = []
    while True:
        piece = stream.read(1 << 16)
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)


def json_response(start_response, report: dict, status: str = "200 OK") -> list[bytes]:
    """Answer ``report`` as JSON with a Content-Length."""
    body = json.dumps(report).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
