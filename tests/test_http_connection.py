"""One HTTP/1.1 connection carrying every kind of request in turn — plain
Content-Length ones, chunked bodies, HTTP/1.0 keep-alive, 100-continue —
served by rwsgi's own HTTP/1.1 (src/http/, src/connection.rs): order,
buffered and pipelined bytes, the environ, the response framing, the limits
(413, 408, header timeout) and shutdown. Raw sockets throughout: the exact
bytes matter. (These tests were written when chunked requests went to hyper;
they keep proving that mixing kinds on one connection loses nothing.)"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import signal
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from apps.response import pattern
from conftest import (
    RawResponse,
    Server,
    ServerFactory,
    read_head,
    read_response,
    read_until_closed,
    recorded_lines,
    trickle,
    url_arg,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

HOST = "direct.test"


# -- servers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def record_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("direct") / "calls.txt"


@pytest.fixture(scope="module")
def server(start_module_server: ServerFactory, record_file: Path) -> Server:
    """uwsgi_apps: ``/echo`` returns the body, any other path the environ as JSON."""
    return start_module_server(
        "apps.uwsgi_apps:application", threads=2, env={"RWSGI_TEST_RECORD": str(record_file)}
    )


@pytest.fixture(scope="module")
def response_server(start_module_server: ServerFactory) -> Server:
    return start_module_server("apps.response:application")


@pytest.fixture(scope="module")
def limits_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("direct-limits") / "calls.txt"


@pytest.fixture(scope="module")
def limited(start_module_server: ServerFactory, limits_record: Path) -> Server:
    return start_module_server(
        "apps.uwsgi_apps:application",
        "--max-body-size",
        "1000",
        "--body-timeout",
        "1",
        "--header-timeout",
        "1",
        "--keepalive-timeout",
        "1",
        env={"RWSGI_TEST_RECORD": str(limits_record)},
    )


calls = recorded_lines


# -- requests -------------------------------------------------------------------


def request(
    method: str,
    target: str,
    *headers: str,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: str | None = HOST,
) -> bytes:
    """A request head (Host first unless None), then ``body`` as it is."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [*headers, "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def get(target: str, *headers: str) -> bytes:
    return request("GET", target, *headers)


def post(target: str, body: bytes, *headers: str) -> bytes:
    return request("POST", target, f"Content-Length: {len(body)}", *headers, body=body)


def chunked_body(body: bytes, size: int) -> bytes:
    out = b""
    for at in range(0, len(body), size):
        piece = body[at : at + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def chunked_post(target: str, body: bytes, size: int = 7) -> bytes:
    """A chunked POST, then plain requests again on the same connection."""
    head = request("POST", target, "Transfer-Encoding: chunked")
    return head + chunked_body(body, size)


def environ_of(response: RawResponse) -> dict[str, str]:
    assert response.status == 200, response
    report: dict[str, Any] = response.json()
    environ: dict[str, str] = report["environ"]
    return environ


# -- 1, 2: plain requests around chunked ones ---------------------------------

CHUNKED_BODY = b"chunked body\n" * 40 + bytes(range(256))


def read_get_chunked_get(rfile: Any, sock: socket.socket, tag: str) -> None:
    """Read the answers to get(/TAG/1), the chunked echo, get(/TAG/3?after=chunked)."""
    first = environ_of(read_response(rfile))
    assert first["PATH_INFO"] == f"/{tag}/1"
    assert first["SERVER_PROTOCOL"] == "HTTP/1.1"
    echoed = read_response(rfile, "POST")
    assert echoed.status == 200, echoed
    assert echoed.body == CHUNKED_BODY
    assert echoed.header("content-length") == str(len(CHUNKED_BODY))
    third = environ_of(read_response(rfile))
    assert third["PATH_INFO"] == f"/{tag}/3"
    assert third["QUERY_STRING"] == "after=chunked"
    client_port = str(sock.getsockname()[1])
    assert first["REMOTE_PORT"] == third["REMOTE_PORT"] == client_port


def test_plain_then_chunked_then_plain_on_one_connection(server: Server) -> None:
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(get("/seq/1"))
        first = read_response(rfile)
        assert environ_of(first)["PATH_INFO"] == "/seq/1"
        sock.sendall(chunked_post("/seq/echo", CHUNKED_BODY, 100))
        echoed = read_response(rfile, "POST")
        assert echoed.status == 200, echoed
        assert echoed.body == CHUNKED_BODY
        sock.sendall(get("/seq/3?after=chunked"))
        third = environ_of(read_response(rfile))
        assert third["PATH_INFO"] == "/seq/3"
        assert third["QUERY_STRING"] == "after=chunked"
        assert third["REMOTE_PORT"] == environ_of(first)["REMOTE_PORT"]
        # and the connection goes on
        sock.sendall(get("/seq/4"))
        assert environ_of(read_response(rfile))["PATH_INFO"] == "/seq/4"


def test_plain_chunked_plain_pipelined_in_one_write(server: Server) -> None:
    data = get("/pipe/1") + chunked_post("/pipe/echo", CHUNKED_BODY, 64)
    data += get("/pipe/3?after=chunked")
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(data)
        read_get_chunked_get(rfile, sock, "pipe")
        sock.sendall(get("/pipe/4"))
        assert environ_of(read_response(rfile))["PATH_INFO"] == "/pipe/4"


def test_chunked_request_split_across_writes_is_handed_over_whole(server: Server) -> None:
    """A chunked head arrives in pieces: the partial head is buffered and
    every byte of it reaches the parser."""
    data = get("/split/1") + chunked_post("/split/echo", CHUNKED_BODY, 50)
    data += get("/split/3?after=chunked")
    cut_in_head = data.index(b"Transfer-En") + 5
    cut_in_body = data.index(b"\r\n\r\n", cut_in_head) + 4 + 30
    cut_in_last = data.index(b"GET /split/3") + 7
    with server.connect() as sock, sock.makefile("rb") as rfile:
        for begin, end in (
            (0, cut_in_head),
            (cut_in_head, cut_in_body),
            (cut_in_body, cut_in_last),
        ):
            sock.sendall(data[begin:end])
            time.sleep(0.1)
        sock.sendall(data[cut_in_last:])
        read_get_chunked_get(rfile, sock, "split")


def test_many_plain_requests_pipelined_behind_a_chunked_one(server: Server) -> None:
    """Everything after the hand-off point was read by the direct side already."""
    data = get("/many/0") + chunked_post("/many/echo", CHUNKED_BODY, 300)
    data += b"".join(get(f"/many/{i}") for i in range(1, 30))
    data += post("/many/echo", b"last body")
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(data)
        assert environ_of(read_response(rfile))["PATH_INFO"] == "/many/0"
        assert read_response(rfile, "POST").body == CHUNKED_BODY
        paths = [environ_of(read_response(rfile))["PATH_INFO"] for _ in range(1, 30)]
        assert paths == [f"/many/{i}" for i in range(1, 30)]
        assert read_response(rfile, "POST").body == b"last body"


# -- 3: HTTP/1.0 and Expect: 100-continue after plain requests ------------------------


def expect_continue_post(sock: socket.socket, rfile: Any, target: str, body: bytes) -> RawResponse:
    """Send the head, wait for 100 Continue (failing otherwise), then the body."""
    sock.sendall(request("POST", target, "Expect: 100-continue", f"Content-Length: {len(body)}"))
    try:
        version, status, reason, _ = read_head(rfile)
    except TimeoutError:
        pytest.fail("no 100 Continue: the server waits for a body the client holds back")
    assert (version, status) == ("HTTP/1.1", 100), (version, status, reason)
    sock.sendall(body)
    return read_response(rfile, "POST")


def test_plain_then_http10_keep_alive_then_expect_continue(server: Server) -> None:
    body = bytes(range(256)) * 20
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(get("/mixed/1"))
        assert environ_of(read_response(rfile))["SERVER_PROTOCOL"] == "HTTP/1.1"

        sock.sendall(request("GET", "/mixed/2?v=10", "Connection: keep-alive", version="HTTP/1.0"))
        old = read_response(rfile)
        assert not old.chunked, "an HTTP/1.0 client cannot read chunked bodies"
        environ = environ_of(old)
        assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
        assert environ["PATH_INFO"] == "/mixed/2"
        assert environ["QUERY_STRING"] == "v=10"
        assert (old.header("connection") or "").lower() == "keep-alive", old.headers

        echoed = expect_continue_post(sock, rfile, "/mixed/echo", body)
        assert echoed.status == 200
        assert echoed.body == body

        sock.sendall(get("/mixed/4"))
        assert environ_of(read_response(rfile))["PATH_INFO"] == "/mixed/4"


def test_plain_then_expect_continue_then_plain(server: Server) -> None:
    body = b"e" * 5000
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(get("/expect/1"))
        assert environ_of(read_response(rfile))["PATH_INFO"] == "/expect/1"
        echoed = expect_continue_post(sock, rfile, "/expect/echo", body)
        assert echoed.status == 200
        assert echoed.body == body
        sock.sendall(get("/expect/3"))
        assert environ_of(read_response(rfile))["PATH_INFO"] == "/expect/3"


def test_plain_then_http10_without_keep_alive_is_served_and_closed(server: Server) -> None:
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(get("/ten/1"))
        assert environ_of(read_response(rfile))["PATH_INFO"] == "/ten/1"
        sock.sendall(request("GET", "/ten/2", version="HTTP/1.0", host=None))
        old = read_response(rfile)
        assert not old.chunked
        environ = environ_of(old)
        assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
        assert environ["PATH_INFO"] == "/ten/2"
        assert read_until_closed(sock, 5, rfile) == b""


# -- 4: the environ built from a raw head ----------------------------------------------

ENVIRON_HEADERS = (
    "X-Multi: a",
    "X-Other: 1",
    "X-Multi: b",
    "X_Spoof: evil",
    "X-Spoof: good",
    "x-multi: c",
    "Content-Type: text/plain; charset=utf-8",
)
ENVIRON_TARGET = "/caf%C3%A9/a+b?q=%C3%A9&x=1&x=2"


def environ_request() -> bytes:
    return request(
        "POST",
        ENVIRON_TARGET,
        *ENVIRON_HEADERS,
        "Content-Length: 5",
        body=b"hello",
        host="Example.test:8080",
    )


def check_environ(environ: dict[str, str]) -> None:
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["HTTP_X_MULTI"] == "a, b, c"
    assert environ["HTTP_X_OTHER"] == "1"
    assert environ["HTTP_X_SPOOF"] == "good", "a name with '_' must not reach the environ"
    assert not [key for key in environ if "SPOOF" in key and key != "HTTP_X_SPOOF"]
    assert environ["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert environ["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9/a+b"
    assert environ["PATH_INFO"] == b"/caf\xc3\xa9/a+b".decode("latin-1")
    assert environ["QUERY_STRING"] == "q=%C3%A9&x=1&x=2"
    assert environ["REQUEST_URI"] == ENVIRON_TARGET
    assert environ["RAW_URI"] == ENVIRON_TARGET
    assert environ["SERVER_NAME"] == "Example.test"
    assert environ["SERVER_PORT"] == "8080"
    assert environ["HTTP_HOST"] == "Example.test:8080"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_environ_of_a_plain_request(server: Server) -> None:
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(environ_request())
        response = read_response(rfile, "POST")
        assert response.status == 200, response
        report = response.json()
        check_environ(report["environ"])
        assert report["body_size"] == 5
        assert report["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
        assert report["environ"]["REMOTE_PORT"] == str(sock.getsockname()[1])


def test_environ_of_a_plain_request_matches_a_chunked_ones(server: Server) -> None:
    """The same request sent with a Content-Length body and chunked."""
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(environ_request())
        direct = read_response(rfile, "POST").json()
        sock.sendall(chunked_post("/parity/echo", b"now chunked"))
        assert read_response(rfile, "POST").body == b"now chunked"
        sock.sendall(environ_request())
        chunked = read_response(rfile, "POST").json()
    check_environ(chunked["environ"])
    assert direct["environ"] == chunked["environ"]
    assert direct["types"] == chunked["types"]
    assert direct["body_sha256"] == chunked["body_sha256"]


def test_no_environ_key_leaks_into_the_next_request(server: Server) -> None:
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(environ_request() + request("GET", "/next", host=None))
        check_environ(environ_of(read_response(rfile, "POST")))
        environ = environ_of(read_response(rfile))
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/next"
    assert environ["QUERY_STRING"] == ""
    assert environ["REQUEST_URI"] == "/next"
    for key in ("HTTP_X_MULTI", "HTTP_X_OTHER", "HTTP_X_SPOOF", "HTTP_HOST"):
        assert key not in environ, key
    assert environ.get("CONTENT_TYPE", "") == ""
    assert environ.get("CONTENT_LENGTH", "") == ""
    # no Host: the listener's address
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == str(server.port)


def test_host_without_port_gives_port_80(server: Server) -> None:
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(request("GET", "/host", host="plain.example"))
        environ = environ_of(read_response(rfile))
    assert environ["SERVER_NAME"] == "plain.example"
    assert environ["SERVER_PORT"] == "80"


# -- 5: the response head ----------------------------------------------------------------

MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
IMF_FIXDATE = re.compile(
    rf"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d ({MONTHS}) \d{{4}} \d\d:\d\d:\d\d GMT"
)


def check_date(response: RawResponse) -> None:
    dates = [value for name, value in response.headers if name.lower() == "date"]
    assert len(dates) == 1, response.headers
    assert IMF_FIXDATE.fullmatch(dates[0]), dates[0]
    sent = email.utils.parsedate_to_datetime(dates[0])
    skew = abs((datetime.now(timezone.utc) - sent).total_seconds())
    assert skew < 10, (dates[0], skew)


def check_length(response: RawResponse, body: bytes) -> None:
    lengths = [value for name, value in response.headers if name.lower() == "content-length"]
    assert lengths == [str(len(body))], response.headers
    assert response.header("transfer-encoding") is None
    assert response.body == body


def test_responses_carry_a_date_and_a_correct_length(response_server: Server) -> None:
    big = pattern(200_000)
    with response_server.connect() as sock, sock.makefile("rb") as rfile:
        # declared by the app / computed from a list / a large streamed body
        sock.sendall(get("/hello") + get("/parts?n=3") + get("/big?size=200000&cl=1&chunk=7000"))
        for body in (b"hello", b"part0;part1;part2;", big):
            response = read_response(rfile)
            assert response.status == 200, response
            assert response.version == "HTTP/1.1"
            check_date(response)
            check_length(response, body)
        # the connection is still in step
        sock.sendall(get("/hello"))
        check_length(read_response(rfile), b"hello")


def test_head_gets_the_length_but_no_body(response_server: Server) -> None:
    with response_server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        for target, length in (("/hello", 5), ("/parts?n=4", 24)):
            sock.sendall(request("HEAD", target))
            head = read_response(rfile, "HEAD")
            assert head.status == 200, head
            check_date(head)
            assert head.header("content-length") == str(length), head.headers
            assert head.header("transfer-encoding") is None
            # a body sent after the HEAD answer would be read as this one's status line
            sock.sendall(get(target))
            response = read_response(rfile)
            assert response.status == 200, response
            assert len(response.body) == length
        sock.sendall(request("HEAD", "/hello", "Connection: close"))
        assert read_response(rfile, "HEAD").header("content-length") == "5"
        assert read_until_closed(sock, 5, rfile) == b"", "no body after a HEAD answer"


# -- 6: 413 and 408 -----------------------------------------------------------------------


def test_body_over_max_body_size_is_413_and_closes(limited: Server, limits_record: Path) -> None:
    with limited.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(post("/at-limit/echo", b"a" * 1000))
        at_limit = read_response(rfile, "POST")
        assert at_limit.status == 200 and at_limit.body == b"a" * 1000
        # too large, with a request pipelined behind it that must not be served
        sock.sendall(post("/too-large/echo", b"b" * 1001) + get("/after-413"))
        refused = read_response(rfile, "POST")
        assert refused.status == 413, refused
        assert (refused.header("connection") or "").lower() == "close", refused.headers
        assert read_until_closed(sock, 5, rfile) == b""
    assert "/too-large/echo" not in calls(limits_record)
    assert "/after-413" not in calls(limits_record)


def test_stalled_body_is_408_after_body_timeout(limited: Server, limits_record: Path) -> None:
    with limited.connect(timeout=6) as sock, sock.makefile("rb") as rfile:
        sock.sendall(get("/before-stall"))
        assert environ_of(read_response(rfile))["PATH_INFO"] == "/before-stall"
        sock.sendall(request("POST", "/stalled/echo", "Content-Length: 10", body=b"abc"))
        began = time.monotonic()
        try:
            response = read_response(rfile, "POST")
        except TimeoutError:
            pytest.fail("still waiting for the body 6 s later with --body-timeout 1")
        elapsed = time.monotonic() - began
        assert response.status == 408, response
        assert elapsed > 0.5, f"answered after {elapsed:.2f} s, before --body-timeout 1"
        assert read_until_closed(sock, 5, rfile) == b""
    assert "/stalled/echo" not in calls(limits_record)


# -- 7: the header timeout ---------------------------------------------------------------


@pytest.mark.parametrize("served_before", [0, 1], ids=["fresh", "after-a-request"])
def test_idle_connection_is_closed_after_header_timeout(
    limited: Server, served_before: int
) -> None:
    with limited.connect() as sock:
        if served_before:
            with sock.makefile("rb") as rfile:
                sock.sendall(get("/idle"))
                assert environ_of(read_response(rfile))["PATH_INFO"] == "/idle"
        began = time.monotonic()
        data = read_until_closed(sock, 10)
        elapsed = time.monotonic() - began
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data
    assert elapsed > 0.8, f"closed after {elapsed:.2f} s with --header-timeout 1"


@pytest.mark.parametrize("served_before", [0, 1], ids=["fresh", "after-a-request"])
def test_trickling_head_is_cut_off(
    limited: Server, limits_record: Path, served_before: int
) -> None:
    target = f"/trickle/{served_before}"
    # ~100 bytes at 4 a second: 25 s if never cut off, far over the 1 s limit
    data = get(target, "X-Pad: " + "p" * 50)
    with limited.connect() as sock:
        if served_before:
            with sock.makefile("rb") as rfile:
                sock.sendall(get("/before-trickle"))
                assert environ_of(read_response(rfile))["PATH_INFO"] == "/before-trickle"
        sent, answer = trickle(sock, data)
    assert sent < len(data), "the whole head went out: the server never cut it off"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    assert target not in calls(limits_record)


def test_header_timeout_counts_from_the_end_of_each_response(start_server: ServerFactory) -> None:
    """Neither a slow app nor a series of short idle gaps adding up to more
    than --header-timeout closes a keep-alive connection."""
    server = start_server("apps.sleep:application", "--header-timeout", "1.5")
    with server.connect(timeout=5) as sock, sock.makefile("rb") as rfile:
        sock.sendall(get("/sleep?t=1.7"))
        assert read_response(rfile).status == 200
        sock.sendall(get("/pid"))  # at once after a response that took 1.7 s
        assert read_response(rfile).status == 200
        for _ in range(4):  # 1.8 s of idle in all, never more than 0.45 s at a time
            time.sleep(0.45)
            sock.sendall(get("/pid"))
            assert read_response(rfile).status == 200


# -- 8: shutdown ---------------------------------------------------------------------------


@pytest.mark.parametrize("history", ["fresh", "plain", "handed-off"])
def test_sigterm_closes_an_idle_keep_alive_connection(
    start_server: ServerFactory, history: str
) -> None:
    # With 60 s header and keep-alive timeouts, the stop is the only thing that can close it.
    server = start_server(
        "apps.uwsgi_apps:application",
        "--header-timeout",
        "60",
        "--keepalive-timeout",
        "60",
        threads=2,
    )
    with server.connect() as sock, sock.makefile("rb") as rfile:
        if history in ("plain", "handed-off"):
            sock.sendall(get("/before-stop"))
            assert environ_of(read_response(rfile))["PATH_INFO"] == "/before-stop"
        if history == "handed-off":
            sock.sendall(chunked_post("/before-stop/echo", b"chunked"))
            assert read_response(rfile, "POST").body == b"chunked"
        if history == "fresh":
            time.sleep(0.2)  # let the worker accept it
        server.send_signal(signal.SIGTERM)
        data = read_until_closed(sock, 30)
    assert data == b"", data
    assert server.wait(30) == 0, server.logs()


def test_sigterm_lets_a_directly_served_request_finish_then_closes(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server("apps.sleep:application", threads=2)
    started = tmp_path / "started"
    with server.connect() as sock, sock.makefile("rb") as rfile:
        sock.sendall(get("/pid"))
        assert read_response(rfile).status == 200
        sock.sendall(get(f"/sleep?t=1&pad=50000&started={url_arg(started)}"))
        wait_until(started.exists, 5)
        server.send_signal(signal.SIGTERM)
        response = read_response(rfile)
        assert response.status == 200, response
        assert json.loads(response.body)["slept"] >= 0.9
        assert len(response.body) > 50000
        assert (response.header("connection") or "").lower() == "close", response.headers
        assert read_until_closed(sock, 3, rfile) == b""
    assert server.wait(10) == 0, server.logs()
