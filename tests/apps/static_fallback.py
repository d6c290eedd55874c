"""The app behind the static-file tests (test_static.py): what falls through.

Every call is noted in ``$RWSGI_TEST_RECORD`` (its PATH_INFO) before anything
else, so a test proves that a refused or served static request never reached
the app. The answer is ``200``, ``text/plain``, a body of ``from the app``,
the method and PATH_INFO on one line each, so a test sees which path the
server handed on and how.
"""

from __future__ import annotations

from apps import read_body, record_call

MARKER = "from the app"


def application(environ, start_response):
    record_call(environ)
    read_body(environ)
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    body = f"{MARKER}\n{environ['REQUEST_METHOD']}\n{path}\n".encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
