"""Raw HTTP/1.x from the client's side: connecting, reading until the server
closes, and the one parser for a response's bytes (RFC 9112 section 6.3).

``read_response`` reads one message from a buffered binary file and leaves
the next one in place (keep-alive, pipelining); ``parse_response`` does the
same over the whole close-delimited answer of a uwsgi request and keeps what
follows the message in ``trailing`` (a body sent after a 204 is a bug the
tests must see). Both give a ``RawResponse``. ``Response`` is what
``http.client`` read, for ordinary requests.
"""

from __future__ import annotations

import io
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

LINE_LIMIT = 65536


def connect(address: str | tuple[str, int], timeout: float = 10.0) -> socket.socket:
    """A connected stream socket: a unix path (``\\0name`` for abstract) or (host, port)."""
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def read_until_closed(
    sock: socket.socket, timeout: float | None = None, rfile: Any = None
) -> bytes:
    """Everything the peer sends until it closes; a reset counts as a close.

    ``rfile`` is a buffered reader made from ``sock`` whose buffer may already
    hold bytes (read through it then). Fails the test if the connection is
    still open after ``timeout`` seconds (default: the socket's own timeout
    for each read)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    data = bytearray()
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"connection still open after {timeout} s (got {bytes(data)!r:.300})")
            sock.settimeout(remaining)
        try:
            piece = rfile.read1(LINE_LIMIT) if rfile is not None else sock.recv(LINE_LIMIT)
        except ConnectionResetError:
            break
        except TimeoutError:
            pytest.fail(f"connection still open after the timeout (got {bytes(data)!r:.300})")
        if not piece:
            break
        data += piece
    return bytes(data)


@dataclass
class Response:
    """A response read by ``http.client``."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RawResponse:
    """A response parsed byte for byte from a socket (HTTP or uwsgi)."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool = False
    chunks: list[bytes] = field(default_factory=list)
    status_line: str = ""
    raw: bytes = b""  # the whole answer, when parsed from bytes
    trailing: bytes = b""  # bytes after the message, when parsed from bytes

    def header(self, name: str) -> str | None:
        values = self.headers_named(name)
        return ", ".join(values) if values else None

    def headers_named(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


UwsgiResponse = RawResponse  # the name the uwsgi tests used for it


class IncompleteResponse(AssertionError):
    """The connection ended before the response did."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


def _read_head(rfile: Any) -> tuple[str, str, int, str, list[tuple[str, str]]]:
    line = rfile.readline(LINE_LIMIT)
    if not line:
        raise IncompleteResponse("connection closed before a status line")
    if not line.endswith(b"\r\n"):
        raise IncompleteResponse(f"status line not terminated: {line!r}", line)
    status_line = line[:-2].decode("latin-1")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    assert version in ("HTTP/1.0", "HTTP/1.1"), f"not an HTTP/1.x status line: {line!r}"
    headers = []
    while True:
        line = rfile.readline(LINE_LIMIT)
        if not line:
            raise IncompleteResponse("connection closed inside the response head")
        if line == b"\r\n":
            break
        assert line.endswith(b"\r\n"), f"header line not ended by CRLF: {line!r}"
        name, colon, value = line[:-2].decode("latin-1").partition(":")
        assert colon and name and name == name.strip(), f"malformed header line {line!r}"
        headers.append((name, value.strip()))
    return status_line, version, int(code), reason, headers


def read_head(rfile: Any) -> tuple[str, int, str, list[tuple[str, str]]]:
    """One response head: (version, status, reason, headers)."""
    _, version, status, reason, headers = _read_head(rfile)
    return version, status, reason, headers


def _read_chunked(rfile: Any, response: RawResponse) -> None:
    body = bytearray()
    while True:
        line = rfile.readline(LINE_LIMIT)
        if not line.endswith(b"\r\n"):
            raise IncompleteResponse(f"bad or missing chunk size line {line!r}", bytes(body))
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailers
                trailer = rfile.readline(LINE_LIMIT)
                if trailer == b"":
                    raise IncompleteResponse("closed in trailers", bytes(body))
                if trailer == b"\r\n":
                    break
            break
        chunk = rfile.read(size)
        if len(chunk) < size:
            raise IncompleteResponse("connection closed inside a chunk", bytes(body) + chunk)
        if rfile.read(2) != b"\r\n":
            raise IncompleteResponse("chunk not followed by CRLF", bytes(body) + chunk)
        response.chunks.append(chunk)
        body += chunk
    response.body = bytes(body)


def read_response(rfile: Any, method: str = "GET", skip_informational: bool = True) -> RawResponse:
    """Parse one HTTP/1.x response from a buffered binary file (RFC 9112 section 6.3)."""
    while True:
        status_line, version, status, reason, headers = _read_head(rfile)
        if not (skip_informational and 100 <= status < 200 and status != 101):
            break
    response = RawResponse(version, status, reason, headers, b"", status_line=status_line)
    transfer = (response.header("transfer-encoding") or "").lower()
    length = response.header("content-length")
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return response
    if "chunked" in transfer:
        response.chunked = True
        _read_chunked(rfile, response)
    elif length is not None:
        size = int(length)
        response.body = rfile.read(size)
        if len(response.body) < size:
            raise IncompleteResponse(
                f"got {len(response.body)} of {size} body bytes", response.body
            )
    else:
        response.body = rfile.read()
    return response


def parse_response(raw: bytes, method: str = "GET") -> RawResponse:
    """Parse the one response in ``raw``, a whole close-delimited answer."""
    assert b"\r\n\r\n" in raw, f"no complete response head in {raw[:300]!r}"
    rfile = io.BytesIO(raw)
    response = read_response(rfile, method)
    response.raw = raw
    response.trailing = rfile.read()
    return response


def trickle(sock: socket.socket, data: bytes, interval: float = 0.25) -> tuple[int, bytes]:
    """Send ``data`` one byte per ``interval`` until the server closes or it is all sent.

    Returns how many bytes went out and what the server answered (read until
    it closed). A server that never cuts the trickle off gets all of ``data``."""
    answer = bytearray()
    sent = 0
    closed = False
    while sent < len(data) and not closed:
        try:
            sock.sendall(data[sent : sent + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 1
        sock.settimeout(interval)
        try:
            piece = sock.recv(LINE_LIMIT)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        closed = not piece
        answer += piece
    if not closed:
        answer += read_until_closed(sock, 30)
    return sent, bytes(answer)


def ipv6_loopback_works() -> bool:
    """Whether this machine can bind ::1 (CI containers may have no IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
