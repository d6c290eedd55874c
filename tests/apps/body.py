"""Read ``wsgi.input`` in the way ``?mode=`` names and report what came back.

The answer is JSON: ``pieces`` (each call's result, latin-1 decoded), ``body``
(their concatenation), ``after`` (what one more read returned at the end) and
``content_length`` (the CONTENT_LENGTH the app saw, or null). ``mode=seek``
reports ``seek_ops`` instead; ``mode=rehash`` reads the body three times
(``read(n)``, line iteration, ``seek(0)`` and ``read(n)`` again) and reports
the sha256 and size of each pass.
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


def seek_ops(stream) -> list[object]:
    """seek/tell/read calls whose results match ``io.BytesIO`` on the same bytes."""
    ops: list[object] = [stream.seekable(), stream.tell(), stream.read(5).decode("latin-1")]
    ops += [stream.tell(), stream.seek(0), stream.read().decode("latin-1"), stream.tell()]
    ops += [stream.seek(-3, 2), stream.read().decode("latin-1")]
    ops += [stream.seek(2), stream.readline().decode("latin-1"), stream.tell()]
    ops += [stream.seek(-4, 1), stream.read(2).decode("latin-1"), stream.seek(-99, 1)]
    ops += [stream.seek(0, 2), stream.read(), stream.seek(0), b"|".join(stream), stream.tell()]
    return [op.decode("latin-1") if isinstance(op, bytes) else op for op in ops]


def _hash_pass(pieces) -> dict[str, object]:
    digest = hashlib.sha256()
    size = 0
    for piece in pieces:
        digest.update(piece)
        size += len(piece)
    return {"sha256": digest.hexdigest(), "size": size}


def rehash(stream) -> list[dict[str, object]]:
    """Read the whole body three ways, each from the start, in pieces of at most 64 KiB."""
    passes = [_hash_pass(iter(lambda: stream.read(65536), b""))]
    stream.seek(0)
    passes.append(_hash_pass(stream))
    stream.seek(0)
    passes.append(_hash_pass(iter(lambda: stream.read(100_000), b"")))
    return passes


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
    elif mode == "seek":
        report = {"seek_ops": seek_ops(stream), "end": stream.seek(10**9)}
    elif mode == "tell":
        seek = stream.seek(int(args.get("n", "0")))
        report = {"seek": seek, "tell": stream.tell()}
    elif mode == "rehash":
        report = {"passes": rehash(stream)}
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
