"""A uwsgi client written from the protocol description (uWSGI's docs, "The uwsgi protocol").

A packet is a 4-byte header (modifier1, datasize u16 LE, modifier2), a vars
block of (u16 LE length, key, u16 LE length, value) pairs, then the body;
the answer is a plain HTTP/1.x response delimited by the server's close.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from support.http import RawResponse, connect, parse_response, read_until_closed


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


def uwsgi_vars(pairs: Iterable[tuple[str | bytes, str | bytes]]) -> bytes:
    """A vars block: (u16 LE length, key, u16 LE length, value) for each pair."""
    block = bytearray()
    for key, value in pairs:
        key_bytes, value_bytes = _as_bytes(key), _as_bytes(value)
        block += struct.pack("<H", len(key_bytes)) + key_bytes
        block += struct.pack("<H", len(value_bytes)) + value_bytes
    return bytes(block)


def uwsgi_header(datasize: int, modifier1: int = 0, modifier2: int = 0) -> bytes:
    return struct.pack("<BHB", modifier1, datasize, modifier2)


def uwsgi_packet(
    pairs: dict[str, str | bytes] | Sequence[tuple[str | bytes, str | bytes]],
    body: bytes = b"",
    modifier1: int = 0,
    modifier2: int = 0,
) -> bytes:
    """A whole request: header, vars block, body (CONTENT_LENGTH is the caller's business)."""
    items = list(pairs.items()) if isinstance(pairs, dict) else list(pairs)
    block = uwsgi_vars(items)
    return uwsgi_header(len(block), modifier1, modifier2) + block + body


def request_vars(
    method: str = "GET", path: str = "/env", query: str = "", body: bytes = b"", **extra: str
) -> dict[str, str | bytes]:
    """The vars nginx's ``uwsgi_params`` would send for a simple request."""
    result: dict[str, str | bytes] = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": "application/octet-stream" if body else "",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "REQUEST_URI": path + ("?" + query if query else ""),
        "PATH_INFO": path,
        "DOCUMENT_ROOT": "/usr/share/nginx/html",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "SERVER_PORT": "80",
        "SERVER_NAME": "localhost",
        "HTTP_HOST": "localhost",
    }
    result.update(extra)
    return result


def uwsgi_exchange(
    address: str | tuple[str, int], packet: bytes, timeout: float = 10.0, method: str = "GET"
) -> RawResponse:
    """Send one packet, read until the server closes, parse the answer."""
    with connect(address, timeout) as sock:
        sock.sendall(packet)
        return parse_response(read_until_closed(sock), method)
