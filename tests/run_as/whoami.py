"""Answers who the worker runs as: ``{"pid", "uid", "gid", "groups"}`` as JSON.

It imports only what the server has imported before switching users, so it
loads from a folder the switched-to user can read even when the interpreter's
own folder is private to root."""

import json
import os


def application(environ, start_response):
    body = json.dumps(
        {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
