"""Loaded by magic.ini through ``wsgi-file = %d%n_app.py``."""

from __future__ import annotations


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"magic"]
