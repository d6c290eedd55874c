"""The app of the logging tests (test_logging.py, test_access_log.py).

Routes, on PATH_INFO:

- ``/warn?m=TEXT``: ``logging.warning(TEXT)`` from the logger ``apps.logging_app``;
- ``/info?m=TEXT``: ``logging.info(TEXT)`` from the same logger;
- ``/errors?m=TEXT``: TEXT and a newline written to ``environ['wsgi.errors']``;
- anything else: ``hello`` (5 bytes) with an ``X-Answer: 42`` response header.
"""

from __future__ import annotations

import logging

from apps import query

LOGGER = logging.getLogger(__name__)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    message = query(environ).get("m", "")
    if path == "/warn":
        LOGGER.warning("app says %s", message)
    elif path == "/info":
        LOGGER.info("app informs %s", message)
    elif path == "/errors":
        environ["wsgi.errors"].write(f"{message}\n")
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", "5"), ("X-Answer", "42")],
    )
    return [b"hello"]
