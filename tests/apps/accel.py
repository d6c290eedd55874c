"""The app behind the X-Accel-Redirect / X-Sendfile tests (test_internal_redirect.py).

Every call is noted in ``$RWSGI_TEST_RECORD`` (its PATH_INFO). Under
``/accel`` it answers ``200`` with the header the query asks for:

- ``redirect=URL-PATH``: ``X-Accel-Redirect: URL-PATH`` (sent as given);
- ``sendfile=FS-PATH``: ``X-Sendfile: FS-PATH``;

plus the headers the server must keep (``Content-Type`` unless ``noctype=1``,
``Content-Disposition``, ``Cache-Control``, ``Expires``, two ``Set-Cookie``),
those it must drop or replace (``X-App-Only``, ``ETag``, ``Last-Modified``,
and a ``Content-Length`` that is right for the app's own body), and a body
the server must discard. The body is an iterable whose ``close()`` appends
``closed`` to the file named by ``closed=PATH``, so a test sees that it ran.

Anything else answers like apps/static_fallback.py: ``from the app``, the
method and PATH_INFO.
"""

from __future__ import annotations

from apps import query, record, record_call
from apps.static_fallback import application as fallback

APP_BODY = b"the app's own body, which the server must discard\n"
APP_TYPE = "application/x-chosen-by-the-app"
KEPT = [
    ("Content-Disposition", 'attachment; filename="chosen.pdf"'),
    ("Cache-Control", "private, max-age=60"),
    ("Expires", "Thu, 01 Jan 2037 00:00:00 GMT"),
    ("Set-Cookie", "first=1; Path=/"),
    ("Set-Cookie", "second=2; Path=/; HttpOnly"),
]
DROPPED = [
    ("X-App-Only", "must not reach the client"),
    ("ETag", '"the-app-etag"'),
    ("Last-Modified", "Mon, 01 Jan 2001 00:00:00 GMT"),
]


class Body:
    """The app's body: one piece, and a ``close()`` that leaves a trace."""

    def __init__(self, closed: str | None) -> None:
        self.closed = closed

    def __iter__(self):
        yield APP_BODY

    def close(self) -> None:
        record(self.closed, "closed")


def application(environ, start_response):
    if not environ.get("PATH_INFO", "").startswith("/accel"):
        return fallback(environ, start_response)
    record_call(environ)
    args = query(environ)
    headers = []
    if "redirect" in args:
        headers.append(("X-Accel-Redirect", args["redirect"]))
    if "sendfile" in args:
        headers.append(("X-Sendfile", args["sendfile"]))
    if not args.get("noctype"):
        headers.append(("Content-Type", APP_TYPE))
    headers += KEPT + DROPPED
    headers.append(("Content-Length", str(len(APP_BODY))))
    start_response("200 OK", headers)
    return Body(args.get("closed"))
