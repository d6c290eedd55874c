"""Apps for the response side of PEP 3333, routed on PATH_INFO.

``record=PATH`` in the query names a file the app appends to (close() calls,
whether start_response raised...). ``gate=PATH`` names a file the app waits
for (up to 10 s) before it goes on, so a test can prove that data reached it
before the app finished, without timing guesses.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import time

from apps import query, record

GATE_LIMIT = 10.0


def _wait_for_gate(path: str | None) -> bool:
    if not path:
        return True
    deadline = time.monotonic() + GATE_LIMIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def pattern(size: int) -> bytes:
    """Deterministic non-repeating-looking bytes the tests can recompute."""
    block = hashlib.sha256(b"rwsgi").digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


class ClosingIterable:
    """An iterable (not a generator) that records every close() call."""

    def __init__(self, path: str | None, mode: str) -> None:
        self.path = path
        self.mode = mode
        self.count = 0

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        self.count += 1
        if self.mode == "raise" and self.count == 2:
            raise RuntimeError("boom-mid-iteration")
        if self.mode == "endless":
            if self.count > 4000:  # about 20 s: a bound if close() never comes
                record(self.path, "exhausted")
                raise StopIteration
            if self.count > 1:
                time.sleep(0.005)
            return b"x" * 1024
        if self.count > 2:
            raise StopIteration
        return b"chunk%d\n" % self.count

    def close(self) -> None:
        record(self.path, f"closed after {self.count}")


def _closing_generator(path: str | None, mode: str):
    count = 0
    try:
        while True:
            count += 1
            if mode == "endless":
                if count > 4000:
                    record(path, "exhausted")
                    return
                if count > 1:
                    time.sleep(0.005)
                yield b"y" * 1024
            elif mode == "raise" and count == 2:
                raise RuntimeError("boom-mid-generator")
            elif count > 2:
                return
            else:
                yield b"gen%d\n" % count
    finally:
        record(path, f"closed after {count}")


class RecordingFile(io.FileIO):
    """A real file (it has fileno()) that says whether the server closed it."""

    def __init__(self, path: str, record_path: str | None) -> None:
        super().__init__(path, "rb")
        self.record_path = record_path
        self._collecting = False

    def close(self) -> None:
        if not self.closed and not self._collecting:
            record(self.record_path, "file closed")
        super().close()

    def __del__(self) -> None:
        if not self.closed:
            record(self.record_path, "file garbage collected while open")
            self._collecting = True
        super().__del__()


class ReadOnly:
    """A file-like object with read() and close() but no fileno()."""

    def __init__(self, data: bytes, record_path: str | None) -> None:
        self._data = io.BytesIO(data)
        self.record_path = record_path

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def close(self) -> None:
        record(self.record_path, "filelike closed")


def application(environ, start_response):
    args = query(environ)
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no route " + environ["PATH_INFO"].encode("latin-1")]
    return route(environ, start_response, args)


def hello(environ, start_response, args):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def parts(environ, start_response, args):
    """A list of several items and no Content-Length."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"part%d;" % i for i in range(int(args.get("n", "3")))]


def gate(environ, start_response, args):
    """A generator: "first", then wait for the gate file, then "second"."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first\n"
    if _wait_for_gate(args.get("gate")):
        yield b"second\n"
    else:
        yield b"gate timeout\n"


def big(environ, start_response, args):
    size = int(args["size"])
    chunk = int(args.get("chunk", "65536"))
    headers = [("Content-Type", "application/octet-stream")]
    if args.get("cl"):
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)
    data = pattern(size)
    return (data[i : i + chunk] for i in range(0, size, chunk))


def closing(environ, start_response, args):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ClosingIterable(args.get("record"), args.get("mode", "normal"))


def closing_generator(environ, start_response, args):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _closing_generator(args.get("record"), args.get("mode", "normal"))


def write(environ, start_response, args):
    """The legacy write() callable, then a returned iterable."""
    write_body = start_response("200 OK", [("Content-Type", "text/plain")])
    write_body(b"one,")
    write_body(b"two,")
    return [b"three"]


def write_only(environ, start_response, args):
    write_body = start_response("200 OK", [("Content-Type", "text/plain")])
    write_body(b"written")
    return []


def write_gate(environ, start_response, args):
    """write() must push data out before the app returns (PEP 3333)."""
    write_body = start_response("200 OK", [("Content-Type", "text/plain")])
    write_body(b"early\n")
    if _wait_for_gate(args.get("gate")):
        return [b"late\n"]
    return [b"gate timeout\n"]


def file(environ, start_response, args):
    """wsgi.file_wrapper over a real file, optionally seeked and/or with a Content-Length."""
    handle = RecordingFile(args["path"], args.get("record"))
    if args.get("seek"):
        handle.seek(int(args["seek"]))
    headers = [("Content-Type", "application/octet-stream")]
    if args.get("cl"):
        headers.append(("Content-Length", args["cl"]))
    start_response("200 OK", headers)
    wrapper = environ["wsgi.file_wrapper"]
    if args.get("blksize"):
        return wrapper(handle, int(args["blksize"]))
    return wrapper(handle)


def filelike(environ, start_response, args):
    """wsgi.file_wrapper over an object that has read() but no fileno()."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    data = pattern(int(args.get("size", "100000")))
    return environ["wsgi.file_wrapper"](ReadOnly(data, args.get("record")), 8192)


def excinfo_replace(environ, start_response, args):
    """An error before any body: start_response(..., exc_info) replaces the status."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
    try:
        raise ValueError("replaced")
    except ValueError:
        start_response(
            "500 Internal Server Error",
            [("Content-Type", "text/plain"), ("X-Replaced", "yes")],
            sys.exc_info(),
        )
    return [b"error page"]


def excinfo_after_body(environ, start_response, args):
    """An error after the headers went out: start_response must re-raise it."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial;"
    try:
        raise ValueError("late-error-marker")
    except ValueError:
        try:
            start_response("500 Internal Server Error", [], sys.exc_info())
        except ValueError as error:
            record(args.get("record"), f"reraised {error}")
            raise
        except BaseException as error:
            record(args.get("record"), f"raised other {type(error).__name__}")
            raise
        record(args.get("record"), "did not raise")
    yield b"unreachable"


def start_twice(environ, start_response, args):
    """start_response called again without exc_info: a fatal error."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        start_response("201 Created", [("Content-Type", "text/plain")])
    except Exception as error:
        record(args.get("record"), f"raised {type(error).__name__}")
        raise
    record(args.get("record"), "did not raise")
    return [b"twice"]


def raise_early(environ, start_response, args):
    raise RuntimeError("boom-before-start-response-" + args.get("tag", ""))


def raise_after_start(environ, start_response, args):
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("boom-after-start-response")


def status(environ, start_response, args):
    start_response(args["status"], [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"body"]


def bad_header(environ, start_response, args):
    value = {"cr": "a\rb", "lf": "a\nb", "crlf": "a\r\nInjected: yes"}[args["kind"]]
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bad", value)])
    return [b"should not be sent"]


def nobody(environ, start_response, args):
    """A status that forbids a body, from an app that returns one anyway."""
    reasons = {"204": "No Content", "304": "Not Modified"}
    code = args["code"]
    start_response(f"{code} {reasons[code]}", [("X-Code", code)])
    return [b"must not be sent"]


def stream_nocl(environ, start_response, args):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return (piece for piece in (b"a", b"bb", b"", b"ccc"))


def cookies(environ, start_response, args):
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Set-Cookie", "b=2; Path=/"),
            ("X-Spaces", "keep  inner  spaces"),
            ("Content-Length", "0"),
        ],
    )
    return [b""]


def pid(environ, start_response, args):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def str_body(environ, start_response, args):
    """PEP 3333 bodies are bytes; a str item is an app error."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["not bytes"]


ROUTES = {
    "/pid": pid,
    "/str_body": str_body,
    "/hello": hello,
    "/parts": parts,
    "/gate": gate,
    "/big": big,
    "/closing": closing,
    "/closing_generator": closing_generator,
    "/write": write,
    "/write_only": write_only,
    "/write_gate": write_gate,
    "/file": file,
    "/filelike": filelike,
    "/excinfo_replace": excinfo_replace,
    "/excinfo_after_body": excinfo_after_body,
    "/start_twice": start_twice,
    "/raise": raise_early,
    "/raise_after_start": raise_after_start,
    "/status": status,
    "/bad_header": bad_header,
    "/nobody": nobody,
    "/stream_nocl": stream_nocl,
    "/cookies": cookies,
}
