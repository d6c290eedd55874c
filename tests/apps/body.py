"""Read ``wsgi.input`` in the way ``?mode=`` names and report what came back.

The answer is JSON: ``pieces`` (each call's result, latin-1 decoded), ``body``
(their concatenation), ``after`` (what one more read returned at the end) and
``content_length`` (the CONTENT_LENGTH the app saw, or null).
"""

from __future__ import annotations

import hashlib
import json

from apps import query, record_call


def _pieces(stream, mode: str, n: int) -> tuple[list[bytes], bytes]:
    if mode == "read":
        return [stream.read()], stream.read()
    if mode == "read_neg":
        return [stream.read(-1)], stream.read(-1)
    if mode == "read_none":
        return [stream.read(None)], stream.read(None)
    if mode == "read_n":
        pieces = []
        while True:
            piece = stream.read(n)
            if not piece:
                return pieces, stream.read(n)
            pieces.append(piece)
    if mode == "readline":
        pieces = []
        while True:
            line = stream.readline()
            if not line:
                return pieces, stream.readline()
            pieces.append(line)
    if mode == "readline_n":
        pieces = []
        while True:
            line = stream.readline(n)
            if not line:
                return pieces, stream.readline(n)
            pieces.append(line)
    if mode == "readlines":
        return list(stream.readlines()), b"".join(stream.readlines())
    if mode == "iter":
        return list(stream), stream.read()
    if mode == "mixed":
        pieces = [stream.read(3), stream.readline(), stream.readline(2), stream.read(4)]
        pieces.append(stream.read())
        return pieces, stream.read(1)
    raise ValueError(f"unknown mode {mode!r}")


def application(environ, start_response):
    record_call(environ)
    args = query(environ)
    mode = args.get("mode", "read")
    stream = environ["wsgi.input"]
    if mode == "hash":
        digest = hashlib.sha256()
        size = 0
        while True:
            piece = stream.read(65536)
            if not piece:
                break
            digest.update(piece)
            size += len(piece)
        report = {"sha256": digest.hexdigest(), "size": size}
    elif mode == "ignore":
        report = {}
    else:
        pieces, after = _pieces(stream, mode, int(args.get("n", "0") or 0))
        for piece in pieces:
            if not isinstance(piece, bytes):
                raise TypeError(f"wsgi.input returned {type(piece).__name__}, not bytes")
        report = {
            "pieces": [piece.decode("latin-1") for piece in pieces],
            "body": b"".join(pieces).decode("latin-1"),
            "after": after.decode("latin-1"),
        }
    report["content_length"] = environ.get("CONTENT_LENGTH")
    report["input_terminated"] = environ.get("wsgi.input_terminated")
    body = json.dumps(report).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
