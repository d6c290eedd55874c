"""The app the ini tests serve: answers with DJANGO_SETTINGS_MODULE from os.environ."""

from __future__ import annotations

import os


def application(environ, start_response):
    body = os.environ.get("DJANGO_SETTINGS_MODULE", "-").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
