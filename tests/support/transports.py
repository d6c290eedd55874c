"""One request, three ways to send it: the tests of ``test_core.py`` are
written once and run over every protocol the server speaks.

- ``direct``: HTTP/1.1 with a ``Content-Length`` body (or none): the plain
  requests the server parses itself;
- ``chunked``: the same request with ``Transfer-Encoding: chunked`` framing;
  a request without a body carries an empty chunked one (``0\\r\\n\\r\\n``);
- ``uwsgi``: a uwsgi packet on the ``--socket`` unix listener, the HTTP
  headers as ``HTTP_*`` vars; its answer is delimited by the server's close.

Every transport builds a request in three parts (``head``, then ``piece``
for each slice of the body, then ``end``) so a test can stall, trickle or
stream a body the same way over each; ``encode`` is all three at once.
``connect`` gives a ``Conn`` whose ``response()`` reads one response into a
``RawResponse`` whatever the protocol.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from support.http import RawResponse, connect, parse_response, read_response, read_until_closed
from support.process import Rwsgi, ServerFactory, short_tmpdir, url_arg, wait_until
from support.uwsgi import request_vars, uwsgi_header, uwsgi_vars

HOST = "core.test"
CHUNK = 64 * 1024
BODILESS = ("GET", "HEAD", "OPTIONS", "DELETE")

# A header is ("Name", "value") or, on HTTP only, a raw line sent as it is.
Header = tuple[str, str] | str


class Conn:
    """One client connection; ``response()`` reads one answer from it."""

    def __init__(self, sock: socket.socket, close_delimited: bool) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.close_delimited = close_delimited

    def send(self, data: bytes) -> bool:
        """Send ``data``; False if the server had already closed (that may be fine)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def response(self, method: str = "GET", timeout: float = 10.0) -> RawResponse:
        """One response: the next message on HTTP, the whole close-delimited answer on uwsgi."""
        self.sock.settimeout(timeout)
        if self.close_delimited:
            return parse_response(self.rest(timeout), method)
        return read_response(self.rfile, method)

    def rest(self, timeout: float = 10.0) -> bytes:
        """Everything until the server closes (fails the test if it stays open)."""
        return read_until_closed(self.sock, timeout, self.rfile)

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transport:
    """How a request goes over one protocol; see the module docstring."""

    name: ClassVar[str]
    is_http: ClassVar[bool] = True

    def __init__(self, server: Rwsgi) -> None:
        self.server = server

    def __repr__(self) -> str:
        return self.name

    def address(self) -> str | tuple[str, int]:
        return self.server.tcp("http")

    def connect(self, timeout: float = 10.0) -> Conn:
        return Conn(connect(self.address(), timeout), close_delimited=not self.is_http)

    def framing(self, length: int | None) -> list[str]:
        """The header lines that frame a body of ``length`` bytes (None: no body)."""
        raise NotImplementedError

    def head(
        self,
        method: str,
        target: str,
        headers: Sequence[Header] = (),
        length: int | None = None,
    ) -> bytes:
        """Everything before the body; ``length`` is the body size to declare."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}"]
        lines += [item if isinstance(item, str) else f"{item[0]}: {item[1]}" for item in headers]
        lines += self.framing(length)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def piece(self, data: bytes) -> bytes:
        """One slice of the body, framed."""
        return data

    def end(self) -> bytes:
        """What ends the body."""
        return b""

    def body(self, data: bytes) -> bytes:
        return b"".join(self.piece(data[at : at + CHUNK]) for at in range(0, len(data), CHUNK))

    def encode(
        self, method: str, target: str, headers: Sequence[Header] = (), body: bytes = b""
    ) -> bytes:
        length = None if not body and method in BODILESS else len(body)
        return self.head(method, target, headers, length) + self.body(body) + self.end()

    def request(
        self,
        method: str,
        target: str,
        headers: Sequence[Header] = (),
        body: bytes = b"",
        timeout: float = 10.0,
    ) -> RawResponse:
        """One request on a fresh connection."""
        with self.connect(timeout) as conn:
            conn.send(self.encode(method, target, headers, body))
            return conn.response(method, timeout)


class Direct(Transport):
    name = "direct"

    def framing(self, length: int | None) -> list[str]:
        return [] if length is None else [f"Content-Length: {length}"]


class Chunked(Transport):
    name = "chunked"

    def framing(self, length: int | None) -> list[str]:
        return ["Transfer-Encoding: chunked"]

    def piece(self, data: bytes) -> bytes:
        return b"%x\r\n" % len(data) + data + b"\r\n" if data else b""

    def end(self) -> bytes:
        return b"0\r\n\r\n"


class Uwsgi(Transport):
    name = "uwsgi"
    is_http = False

    def address(self) -> str | tuple[str, int]:
        return self.server.unix("uwsgi")

    def framing(self, length: int | None) -> list[str]:
        return []

    def head(
        self,
        method: str,
        target: str,
        headers: Sequence[Header] = (),
        length: int | None = None,
    ) -> bytes:
        parts = urlsplit(target)
        pairs: dict[str, str | bytes] = request_vars(method, parts.path, parts.query)
        pairs["CONTENT_LENGTH"] = "" if length is None else str(length)
        pairs["HTTP_HOST"] = HOST
        for item in headers:
            assert not isinstance(item, str), f"a raw header line cannot go over uwsgi: {item!r}"
            name, value = item
            key = name.upper().replace("-", "_")
            pairs[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
        block = uwsgi_vars(pairs.items())
        return uwsgi_header(len(block)) + block


TRANSPORTS: dict[str, type[Transport]] = {kind.name: kind for kind in (Direct, Chunked, Uwsgi)}


class HttpUnix(Direct):
    """HTTP/1.1 on the ``--http-socket`` unix listener."""

    name = "http-unix"

    def address(self) -> str | tuple[str, int]:
        return self.server.unix("http")


LISTENER_KINDS: dict[str, type[Transport]] = {kind.name: kind for kind in (Direct, HttpUnix, Uwsgi)}
"""Every kind of listener: HTTP on TCP, HTTP on a unix socket, uwsgi on a unix socket."""


def start_on_every_listener(
    factory: ServerFactory, app: str, *args: str, env: dict[str, str] | None = None
) -> tuple[Rwsgi, Path]:
    """A 2-thread server on every kind of listener, recording its app's calls
    (``RWSGI_TEST_RECORD``); returns it and the record file."""
    tmp = Path(short_tmpdir())
    record = tmp / "calls.txt"
    server = factory.mixed(
        app,
        "--http",
        "127.0.0.1:0",
        "--http-socket",
        str(tmp / "h.sock"),
        "--socket",
        str(tmp / "u.sock"),
        "--threads",
        "2",
        *args,
        env={"RWSGI_TEST_RECORD": str(record), **(env or {})},
    )
    return server, record


def in_app(t: Transport, seconds: float, started: Path) -> Conn:
    """A connection whose request is inside the test app's ``/sleep`` for
    ``seconds`` (the app creates ``started`` as the call begins)."""
    conn = t.connect(timeout=30)
    conn.send(t.encode("GET", f"/sleep?t={seconds}&started={url_arg(started)}"))
    wait_until(started.exists, 10)
    return conn
