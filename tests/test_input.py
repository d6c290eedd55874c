"""wsgi.input and request bodies: every read method, seek/tell, chunked bodies,
Expect: 100-continue, unread bodies on keep-alive, --max-body-size (413) and
--body-timeout."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest
from apps.body import rehash, seek_ops
from conftest import IncompleteResponse, Server, read_head, read_response, recorded_lines

pytestmark = pytest.mark.timeout(60)

LINES = b"line one\nline two\n\nlast line without newline"


@pytest.fixture(scope="module")
def server(start_module_server) -> Server:
    return start_module_server("apps.body:application", threads=2)


def expected_pieces(mode: str, body: bytes, n: int) -> list[bytes]:
    """What the same calls return on a plain in-memory file."""
    stream = io.BytesIO(body)
    if mode in ("read", "read_neg"):
        return [stream.read()]
    if mode == "readline":
        return list(iter(stream.readline, b""))
    if mode == "readline_n":
        return list(iter(lambda: stream.readline(n), b""))
    if mode in ("readlines", "iter"):
        return stream.readlines()
    if mode == "mixed":
        pieces = [stream.read(3), stream.readline(), stream.readline(2), stream.read(4)]
        return [*pieces, stream.read()]
    raise AssertionError(mode)


@pytest.mark.parametrize(
    ("mode", "n"),
    [
        ("read", 0),
        ("read_neg", 0),
        ("readline", 0),
        ("readline_n", 5),
        ("readline_n", 1),
        ("readlines", 0),
        ("iter", 0),
        ("mixed", 0),
    ],
)
def test_input_methods_behave_like_a_file(server: Server, mode: str, n: int) -> None:
    response = server.request("POST", f"/?mode={mode}&n={n}", body=LINES)
    assert response.status == 200, server.logs()
    report = response.json()
    assert report["pieces"] == [p.decode("latin-1") for p in expected_pieces(mode, LINES, n)]
    assert report["body"] == LINES.decode("latin-1")
    assert report["after"] == "", "reading past the end must return b'' at once"
    assert report["content_length"] == str(len(LINES))


@pytest.mark.parametrize("n", [1, 7, 4096])
def test_read_n_returns_at_most_n_bytes(server: Server, n: int) -> None:
    body = os.urandom(10000)
    response = server.request("POST", f"/?mode=read_n&n={n}", body=body)
    assert response.status == 200
    report = response.json()
    pieces = [piece.encode("latin-1") for piece in report["pieces"]]
    assert all(0 < len(piece) <= n for piece in pieces)
    assert b"".join(pieces) == body
    assert report["after"] == ""


@pytest.mark.parametrize("body", [LINES, b"no newline at all", b"\n\n\n"])
def test_seek_and_tell_behave_like_a_file(server: Server, body: bytes) -> None:
    response = server.request("POST", "/?mode=seek", body=body)
    assert response.status == 200, server.logs()
    report = response.json()
    assert report["seek_ops"] == seek_ops(io.BytesIO(body))
    # a position past the end is clamped to the end (io.BytesIO would keep it)
    assert report["end"] == len(body)


def test_seek_back_reads_the_body_again(server: Server) -> None:
    body = os.urandom(300_000).replace(b"\n", b"\n" * 2)
    response = server.request("POST", "/?mode=rehash", body=body, timeout=30)
    assert response.status == 200, server.logs()
    passes = response.json()["passes"]
    assert passes == rehash(io.BytesIO(body))
    assert passes[0] == {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}


def test_seek_is_clamped_and_an_empty_body_stays_at_zero(server: Server) -> None:
    # requests without a body share one input: a seek must leave nothing for the next
    report = server.get_json("/?mode=tell&n=100")
    assert (report["seek"], report["tell"]) == (0, 0)
    assert server.request("POST", "/?mode=tell&n=100", body=b"abc").json()["tell"] == 3
    assert server.get_json("/?mode=tell&n=0")["tell"] == 0


def test_get_without_body_reads_empty_at_once(server: Server) -> None:
    # A read waiting for a body that never comes would end only at the 30 s
    # --body-timeout, well after this request's own 10 s.
    report = server.get_json("/?mode=read", timeout=10)
    assert report["body"] == "" and report["after"] == ""
    assert report["content_length"] in (None, "")


def test_zero_length_post(server: Server) -> None:
    report = server.request("POST", "/?mode=readline", body=b"").json()
    assert report["pieces"] == []
    assert report["content_length"] == "0"


def test_large_body_arrives_intact(server: Server) -> None:
    body = os.urandom(8 * 1024 * 1024 + 13)
    response = server.request("POST", "/?mode=hash", body=body, timeout=30)
    assert response.status == 200
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert response.json()["size"] == len(body)


def chunked(body: bytes, size: int) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\nX-Trailer: t\r\n\r\n"


def test_chunked_request_body(server: Server) -> None:
    body = os.urandom(300_000)
    head = b"POST /?mode=hash HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(head + chunked(body, 7777))
        response = read_response(rfile, "POST")
        assert response.status == 200
        report = response.json()
        assert report["sha256"] == hashlib.sha256(body).hexdigest()
        assert report["input_terminated"] is True
        assert report["content_length"] in (None, "", str(len(body)))
        # the connection stays usable after a chunked body
        sock.sendall(head + chunked(b"second", 2))
        assert read_response(rfile, "POST").json()["size"] == 6


def test_chunked_body_readlines(server: Server) -> None:
    head = b"POST /?mode=readline HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    response = server.exchange(head + chunked(LINES, 5), "POST")
    assert response.json()["pieces"] == [
        p.decode("latin-1") for p in expected_pieces("readline", LINES, 0)
    ]


def test_expect_100_continue(server: Server) -> None:
    body = b"x" * 5000
    head = (
        b"POST /?mode=read HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(head)
        _, status, _, _ = read_head(rfile)  # the client waits; the server must ask for the body
        assert status == 100
        sock.sendall(body)
        response = read_response(rfile, "POST")
    assert response.status == 200
    assert response.json()["body"] == body.decode()


def test_unread_body_does_not_break_keep_alive(server: Server) -> None:
    body = b"z" * 200_000
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(
            b"POST /?mode=ignore HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        first = read_response(rfile, "POST")
        assert first.status == 200
        sock.sendall(b"POST /?mode=read HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nnext")
        second = read_response(rfile, "POST")
    assert second.status == 200
    assert second.json()["body"] == "next"


# -- limits -----------------------------------------------------------------


@pytest.fixture(scope="module")
def limits_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("limits") / "calls.txt"


@pytest.fixture(scope="module")
def limited(start_module_server, limits_record: Path) -> Server:
    return start_module_server(
        "apps.body:application",
        "--max-body-size",
        "1000",
        "--body-timeout",
        "1",
        env={"RWSGI_TEST_RECORD": str(limits_record)},
    )


calls = recorded_lines


def test_body_at_the_limit_is_accepted(limited: Server) -> None:
    response = limited.request("POST", "/at-limit?mode=hash", body=b"a" * 1000)
    assert response.status == 200
    assert response.json()["size"] == 1000


def test_body_over_the_limit_is_413(limited: Server, limits_record: Path) -> None:
    with limited.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(
            b"POST /over-limit?mode=hash HTTP/1.1\r\nHost: test\r\nContent-Length: 1001\r\n\r\n"
            + b"a" * 1001
        )
        response = read_response(rfile, "POST")
    assert response.status == 413
    assert "/over-limit" not in calls(limits_record)


def test_chunked_body_over_the_limit_is_413(limited: Server, limits_record: Path) -> None:
    head = (
        b"POST /chunked-over?mode=hash HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with limited.connect() as sock, sock.makefile("rb") as rfile:
        try:
            sock.sendall(head + chunked(b"b" * 3000, 500))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading it all
        response = read_response(rfile, "POST")
    assert response.status == 413
    assert "/chunked-over" not in calls(limits_record)


def test_expect_100_continue_over_the_limit_is_413(limited: Server, limits_record: Path) -> None:
    head = (
        b"POST /expect-over?mode=hash HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    with limited.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(head)
        _, status, _, _ = read_head(rfile)
        if status == 100:  # asking for a body it will refuse is wasteful but allowed
            sock.sendall(b"c" * 5000)
            _, status, _, _ = read_head(rfile)
    assert status == 413
    assert "/expect-over" not in calls(limits_record)


def test_body_timeout_ends_a_stalled_body(limited: Server, limits_record: Path) -> None:
    with limited.connect(timeout=6) as sock, sock.makefile("rb") as rfile:
        sock.sendall(
            b"POST /stalled-body?mode=read HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc"
        )
        began = time.monotonic()
        try:
            _, status, _, _ = read_head(rfile)
        except (IncompleteResponse, ConnectionResetError):
            status = None  # closed without an answer
        except TimeoutError:
            pytest.fail("the server still waits for the body after 6 s with --body-timeout 1")
        elapsed = time.monotonic() - began
    assert status in (None, 400, 408), status
    assert elapsed > 0.5, f"ended after {elapsed:.2f} s, before --body-timeout 1"
    assert "/stalled-body" not in calls(limits_record)
    assert limited.request("POST", "/after-stall?mode=read", body=b"ok").status == 200
