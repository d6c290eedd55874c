"""The binary uwsgi protocol (what nginx's ``uwsgi_pass`` speaks), byte by byte.

Packets are ours, written from uWSGI's description of its protocol: a
4-byte header (modifier1, datasize u16 LE, modifier2), a vars block of
(u16 LE length, key, u16 LE length, value) pairs, then CONTENT_LENGTH bytes of
body. The answer is a plain HTTP/1.x response, then the server closes.

Malformed packets must be closed without an answer and a log line, never
reach the app (it notes every call in a file) and never cost the worker its
life (the same PID answers the next request).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nginx_helper import (
    Rwsgi,
    connect,
    parse_response,
    read_until_closed,
    request_vars,
    run_to_exit,
    short_tmpdir,
    uwsgi_exchange,
    uwsgi_header,
    uwsgi_packet,
    uwsgi_vars,
)

pytestmark = pytest.mark.timeout(60)

APP = "apps.uwsgi_apps:application"
MAX_BODY = 1_000_000
TIMEOUT = 1.0  # --header-timeout and --body-timeout of the shared server


class Backend:
    """The shared server: uwsgi on a unix socket and on TCP, one worker."""

    def __init__(self, server: Rwsgi, sock_path: str, record: Path) -> None:
        self.server = server
        self.unix = sock_path
        self.tcp = server.tcp("uwsgi")
        self.record = record

    def calls(self) -> list[str]:
        return self.record.read_text().splitlines() if self.record.exists() else []

    def env(self, address=None, modifier1: int = 0, body: bytes = b"", **pairs) -> dict:
        """Send a request built from ``request_vars(**pairs)``; the app's JSON report."""
        packet = uwsgi_packet(request_vars(body=body, **pairs), body, modifier1=modifier1)
        response = uwsgi_exchange(address or self.unix, packet)
        assert response.status == 200, (response.raw[:500], self.server.logs())
        return json.loads(response.body)


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    tmp = short_tmpdir()
    sock_path = os.path.join(tmp, "u.sock")
    record = Path(tmp) / "calls.txt"
    server = Rwsgi(
        APP,
        "--socket",
        sock_path,
        "--socket",
        "127.0.0.1:0",
        "--max-body-size",
        str(MAX_BODY),
        "--header-timeout",
        str(TIMEOUT),
        "--body-timeout",
        str(TIMEOUT),
        "--threads",
        "2",
        env={"RWSGI_TEST_RECORD": str(record)},
    )
    try:
        yield Backend(server, sock_path, record)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# -- well-formed requests ------------------------------------------------------


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_get_answers_http_and_closes(backend: Backend, transport: str) -> None:
    address = backend.unix if transport == "unix" else backend.tcp
    packet = uwsgi_packet(request_vars(path="/reason"))
    with connect(address) as sock:
        sock.sendall(packet)
        raw = read_until_closed(sock)  # returns only because the server closes
    response = parse_response(raw)
    assert response.status_line == "HTTP/1.1 299 Custom Reason"
    assert response.header("content-type") == "text/plain"
    assert response.header("content-length") == "2"
    assert response.header("transfer-encoding") is None
    assert response.body == b"ok"


def test_banners_name_both_uwsgi_listeners(backend: Backend) -> None:
    assert f"uwsgi+unix://{backend.unix}" in backend.server.listeners
    host, port = backend.tcp
    assert host == "127.0.0.1" and port > 0
    assert f"uwsgi://127.0.0.1:{port}" in backend.server.listeners


def test_every_var_reaches_environ_as_latin1_str(backend: Backend) -> None:
    pairs = [
        *request_vars(path="/env", query="a=1&b=%20").items(),
        ("HTTP_X_CUSTOM", "some value"),
        ("HTTP_X_LATIN1", b"caf\xe9 \xff"),
        ("UWSGI_SOMETHING", "kept"),
        ("HTTP_X_EMPTY", ""),
    ]
    response = uwsgi_exchange(backend.unix, uwsgi_packet(pairs))
    assert response.status == 200, response.raw[:300]
    report = json.loads(response.body)
    environ, types = report["environ"], report["types"]
    for key, value in pairs:
        key_text = key.decode("latin-1") if isinstance(key, bytes) else key
        expected = value.decode("latin-1") if isinstance(value, bytes) else value
        if key_text == "CONTENT_LENGTH" and expected == "":
            continue  # an empty CONTENT_LENGTH may be dropped or kept
        assert environ.get(key_text) == expected, key_text
        assert types[key_text] == "str"
    assert environ["HTTP_X_LATIN1"] == "caf\xe9 \xff"
    assert environ["QUERY_STRING"] == "a=1&b=%20"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["wsgi.url_scheme"] == "http"
    assert types["wsgi.input"] != "NoneType"


def test_later_var_overrides_earlier(backend: Backend) -> None:
    pairs = [*request_vars().items(), ("HTTP_X_TWICE", "first"), ("HTTP_X_TWICE", "second")]
    report = json.loads(uwsgi_exchange(backend.unix, uwsgi_packet(pairs)).body)
    assert report["environ"]["HTTP_X_TWICE"] == "second"


def test_non_ascii_keys_and_many_vars(backend: Backend) -> None:
    pairs = [*request_vars().items(), (b"HTTP_X_\xe9", b"v")]
    pairs += [(f"HTTP_X_N{i}", str(i)) for i in range(3000)]
    packet = uwsgi_packet(pairs)
    assert len(packet) < 65535 + 4
    response = uwsgi_exchange(backend.unix, packet)
    assert response.status == 200, backend.server.logs()
    environ = json.loads(response.body)["environ"]
    assert environ["HTTP_X_\xe9"] == "v"
    assert all(environ[f"HTTP_X_N{i}"] == str(i) for i in range(3000))


def test_empty_vars_block_gets_pep3333_defaults(backend: Backend) -> None:
    response = uwsgi_exchange(backend.unix, uwsgi_header(0))
    assert response.status == 200, response.raw[:300]
    environ = json.loads(response.body)["environ"]
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["QUERY_STRING"] == ""
    assert environ["SERVER_NAME"] and environ["SERVER_PORT"]
    assert environ["SERVER_PROTOCOL"].startswith("HTTP/")


def test_path_info_from_request_uri_when_missing(backend: Backend) -> None:
    pairs = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/a%20b/c?x=1", "QUERY_STRING": "x=1"}
    environ = json.loads(uwsgi_exchange(backend.unix, uwsgi_packet(pairs)).body)["environ"]
    assert environ["PATH_INFO"] == "/a b/c"


@pytest.mark.parametrize(
    ("modifier1", "script_name", "path_info", "expected_script", "expected_path"),
    [
        (30, "/app", "/app/foo/bar", "/app", "/foo/bar"),
        (30, "/app", "/app", "/app", ""),
        (30, "/app/", "/app/x", "/app", "/x"),
        (30, "/app", "/application/x", "/app", "/application/x"),  # not a path prefix
        (30, "/app", "/other", "/app", "/other"),
        (30, "", "/app/x", "", "/app/x"),  # nothing to strip
        (0, "/app", "/app/foo", "/app", "/app/foo"),  # modifier1 0 leaves PATH_INFO alone
    ],
)
def test_modifier1_30_strips_script_name(
    backend: Backend,
    modifier1: int,
    script_name: str,
    path_info: str,
    expected_script: str,
    expected_path: str,
) -> None:
    report = backend.env(modifier1=modifier1, path=path_info, SCRIPT_NAME=script_name)
    assert report["environ"]["SCRIPT_NAME"] == expected_script
    assert report["environ"]["PATH_INFO"] == expected_path


@pytest.mark.parametrize(
    ("extra", "scheme"),
    [
        ({"HTTPS": "on"}, "https"),
        ({"HTTPS": "ON"}, "https"),
        ({"HTTPS": "1"}, "https"),
        ({"REQUEST_SCHEME": "https"}, "https"),
        ({"HTTPS": "off"}, "http"),
        ({"HTTPS": ""}, "http"),
        ({}, "http"),
    ],
)
def test_url_scheme(backend: Backend, extra: dict[str, str], scheme: str) -> None:
    report = backend.env(backend.tcp, **extra)
    assert report["environ"]["wsgi.url_scheme"] == scheme


def test_body_is_wsgi_input(backend: Backend) -> None:
    body = os.urandom(200_000)
    packet = uwsgi_packet(request_vars("POST", "/hash", body=body), body)
    response = uwsgi_exchange(backend.tcp, packet)
    assert response.status == 200, response.raw[:300]
    report = json.loads(response.body)
    assert report == {
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
        "pid": report["pid"],
    }


def test_body_echoed_back_with_its_length(backend: Backend) -> None:
    body = bytes(range(256)) * 1000
    packet = uwsgi_packet(request_vars("POST", "/echo", body=body), body)
    response = uwsgi_exchange(backend.unix, packet)
    assert response.status == 200
    assert response.header("content-length") == str(len(body))
    assert response.body == body


def test_slow_body_within_idle_timeout_is_served(backend: Backend) -> None:
    """--body-timeout bounds each silence, not the whole body: 4 gaps of 0.4 s pass."""
    body = b"0123456789" * 400
    packet = uwsgi_packet(request_vars("POST", "/hash", body=body), body)
    head_size = len(packet) - len(body)
    with connect(backend.unix) as sock:
        sock.sendall(packet[:head_size])
        for index in range(4):
            time.sleep(0.4)  # deliberate pacing below the 1 s idle limit, not readiness
            sock.sendall(body[index * 1000 : (index + 1) * 1000])
        response = parse_response(read_until_closed(sock))
    assert response.status == 200, (response.raw[:300], backend.server.logs())
    assert json.loads(response.body)["sha256"] == hashlib.sha256(body).hexdigest()


def test_vars_block_of_60_kib(backend: Backend) -> None:
    cookie = "k=" + "c" * (60 * 1024)
    pairs = {**request_vars(), "HTTP_COOKIE": cookie}
    response = uwsgi_exchange(backend.unix, uwsgi_packet(pairs))
    assert response.status == 200, backend.server.logs()
    assert json.loads(response.body)["environ"]["HTTP_COOKIE"] == cookie


def test_vars_block_of_exactly_65535_bytes(backend: Backend) -> None:
    base = uwsgi_vars(request_vars().items())
    filler_key = b"HTTP_X_FILL"
    room = 65535 - len(base) - 4 - len(filler_key)
    pairs = [*request_vars().items(), (filler_key, b"f" * room)]
    packet = uwsgi_packet(pairs)
    assert packet[1:3] == b"\xff\xff"
    response = uwsgi_exchange(backend.tcp, packet)
    assert response.status == 200, backend.server.logs()
    assert len(json.loads(response.body)["environ"]["HTTP_X_FILL"]) == room


def test_head_gets_no_body(backend: Backend) -> None:
    packet = uwsgi_packet(request_vars("HEAD", "/echo"))
    response = uwsgi_exchange(backend.unix, packet, method="HEAD")
    assert response.status == 200
    assert response.body == b"" and response.trailing == b""


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_for_204_and_304(backend: Backend, code: int) -> None:
    packet = uwsgi_packet(request_vars(path="/status", query=f"code={code}"))
    response = uwsgi_exchange(backend.unix, packet)
    assert response.status == code
    assert response.header("x-status") == str(code)
    assert response.body == b"" and response.trailing == b""


def test_http_10_request_gets_http_10_status_line(backend: Backend) -> None:
    packet = uwsgi_packet(request_vars(path="/reason", SERVER_PROTOCOL="HTTP/1.0"))
    response = uwsgi_exchange(backend.unix, packet)
    assert response.status_line == "HTTP/1.0 299 Custom Reason"


def test_generator_response_streams_close_delimited(backend: Backend) -> None:
    from apps.uwsgi_apps import stream_body

    gate = Path(short_tmpdir()) / "gate"
    try:
        packet = uwsgi_packet(request_vars(path="/stream", query=f"gate={gate}"))
        with connect(backend.unix) as sock:
            sock.sendall(packet)
            received = bytearray()
            while not received.endswith(b"first\n"):
                piece = sock.recv(4096)
                assert piece, f"closed before the first chunk: {bytes(received)!r}"
                received += piece
            # The app is now waiting for the gate: the first chunk came on its own.
            gate.touch()
            received += read_until_closed(sock)
    finally:
        shutil.rmtree(gate.parent, ignore_errors=True)
    response = parse_response(bytes(received))
    assert response.status == 200
    assert response.header("content-length") is None
    assert response.header("transfer-encoding") is None
    assert response.body == stream_body()


def test_app_exception_is_500_and_worker_survives(backend: Backend) -> None:
    pid = backend.env()["pid"]
    since = backend.server.mark()
    response = uwsgi_exchange(backend.unix, uwsgi_packet(request_vars(path="/raise")))
    assert response.status == 500
    backend.server.wait_for_log("uwsgi-apps-raise-marker", since=since)
    assert backend.env()["pid"] == pid


# -- refused and malformed requests --------------------------------------------


def test_content_length_over_max_body_size_is_413(backend: Backend) -> None:
    calls = len(backend.calls())
    pairs = request_vars("POST", "/hash", CONTENT_LENGTH=str(MAX_BODY + 1))
    with connect(backend.tcp) as sock:
        sock.sendall(uwsgi_packet(pairs))  # no body: the answer must not wait for it
        response = parse_response(read_until_closed(sock))
    assert response.status == 413
    assert len(backend.calls()) == calls


@pytest.mark.parametrize("value", ["abc", "-1", "12x", "1e3"])
def test_non_numeric_content_length_is_400(backend: Backend, value: str) -> None:
    calls = len(backend.calls())
    pairs = request_vars("POST", "/hash", CONTENT_LENGTH=value)
    response = uwsgi_exchange(backend.unix, uwsgi_packet(pairs, b"abc"))
    assert response.status == 400
    assert len(backend.calls()) == calls


def _valid_vars() -> bytes:
    return uwsgi_vars(request_vars("POST", "/hash", body=b"x" * 100).items())


MALFORMED = {
    # name: (bytes to send, then "close" (shut down our side) or "silent", log pattern)
    "truncated-header": (b"\x00\x10", "close", r"middle of the packet header"),
    "silent-from-start": (b"", "silent", r"timed out waiting for the packet header"),
    "silent-in-header": (b"\x00\x10", "silent", r"timed out waiting for the packet header"),
    "key-past-block": (uwsgi_header(4) + b"\x0a\x00AB", "close", r"malformed vars block"),
    "value-past-block": (
        uwsgi_header(6) + b"\x01\x00K\xff\xffv",
        "close",
        r"malformed vars block",
    ),
    "cut-length-field": (uwsgi_header(1) + b"\x03", "close", r"malformed vars block"),
    "empty-key": (uwsgi_header(4) + b"\x00\x00\x00\x00", "close", r"malformed vars block"),
    "datasize-larger-then-close": (
        uwsgi_header(len(_valid_vars()) + 50) + _valid_vars(),
        "close",
        r"middle of the vars block",
    ),
    "datasize-larger-then-silent": (
        uwsgi_header(len(_valid_vars()) + 50) + _valid_vars(),
        "silent",
        r"timed out waiting for the vars block",
    ),
    "short-body-then-close": (
        uwsgi_header(len(_valid_vars())) + _valid_vars() + b"x" * 40,
        "close",
        r"middle of the request body",
    ),
    "slow-body-past-timeout": (
        uwsgi_header(len(_valid_vars())) + _valid_vars() + b"x" * 40,
        "silent",
        r"timed out waiting for the request body",
    ),
    "unsupported-modifier1": (
        uwsgi_packet(request_vars(), modifier1=5),
        "close",
        r"unsupported modifier1 5",
    ),
    "unsupported-modifier1-silent": (
        uwsgi_packet(request_vars(), modifier1=17, modifier2=3),
        "silent",
        r"unsupported modifier1 17",
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_packet_is_closed_logged_and_harmless(backend: Backend, name: str) -> None:
    data, then, pattern = MALFORMED[name]
    pid = backend.env()["pid"]
    calls = len(backend.calls())
    since = backend.server.mark()
    started = time.monotonic()
    with connect(backend.unix, timeout=10 * TIMEOUT) as sock:
        if data:
            sock.sendall(data)
        if then == "close":
            sock.shutdown(socket.SHUT_WR)
        answer = read_until_closed(sock)
    elapsed = time.monotonic() - started
    if name == "slow-body-past-timeout":
        # A well-formed request whose body stalls gets the 408 every protocol gets.
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    else:
        assert answer == b"", f"{name}: an answer to a malformed packet: {answer[:200]!r}"
    logged = backend.server.wait_for_log(pattern, since=since)
    assert "dropped" in logged.string, logged.string
    if then == "silent" and "timed out" in pattern:
        assert elapsed >= TIMEOUT * 0.8, f"closed after {elapsed:.2f} s, before the timeout"
    assert len(backend.calls()) == calls, f"{name} reached the app: {backend.calls()[calls:]}"
    assert backend.env()["pid"] == pid, f"{name} cost the worker its life"


def test_connection_closed_before_anything_is_silent(backend: Backend) -> None:
    pid = backend.env()["pid"]
    calls = len(backend.calls())
    with connect(backend.tcp) as sock:
        sock.shutdown(socket.SHUT_WR)
        assert read_until_closed(sock) == b""
    assert len(backend.calls()) == calls
    assert backend.env()["pid"] == pid


def test_many_malformed_then_valid_on_same_worker(backend: Backend) -> None:
    """A burst of garbage of every kind, then a real request on the same PID."""
    pid = backend.env()["pid"]
    calls = len(backend.calls())
    for index in range(40):
        data = bytes((index * 37 + k * 11) % 256 for k in range(3 + index % 9))
        data = bytes([index % 2 * 30]) + data  # modifier1 0 or 30: reaches the vars parser
        with connect(backend.tcp) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            read_until_closed(sock)
    assert len(backend.calls()) == calls
    assert backend.env()["pid"] == pid


# -- who may connect -----------------------------------------------------------


def test_non_loopback_tcp_uwsgi_needs_allow_from() -> None:
    code, log = run_to_exit(APP, "--socket", "0.0.0.0:0")
    assert code == 2, log
    assert "--uwsgi-allow-from" in log


def test_non_loopback_tcp_uwsgi_with_allow_from_starts() -> None:
    server = Rwsgi(APP, "--socket", "0.0.0.0:0", "--uwsgi-allow-from", "127.0.0.1")
    try:
        _, port = server.tcp("uwsgi")
        response = uwsgi_exchange(("127.0.0.1", port), uwsgi_packet(request_vars()))
        assert response.status == 200
        assert json.loads(response.body)["environ"]["PATH_INFO"] == "/env"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("allow", "allowed"),
    [
        ("10.9.9.9", False),
        ("10.0.0.0/8", False),
        ("127.0.0.0/8", True),
        ("10.0.0.1,127.0.0.1", True),
    ],
)
def test_uwsgi_allow_from_on_loopback(allow: str, allowed: bool) -> None:
    tmp = short_tmpdir()
    record = Path(tmp) / "calls.txt"
    server = Rwsgi(
        APP,
        "--socket",
        "127.0.0.1:0",
        "--uwsgi-allow-from",
        allow,
        env={"RWSGI_TEST_RECORD": str(record)},
    )
    try:
        since = server.mark()
        with connect(server.tcp("uwsgi")) as sock:
            try:
                sock.sendall(uwsgi_packet(request_vars()))
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed before we finished writing: also a refusal
            answer = read_until_closed(sock)
        if allowed:
            assert parse_response(answer).status == 200
            assert record.read_text().splitlines() == ["/env"]
        else:
            assert answer == b""
            server.wait_for_log(r"uwsgi connection from 127\.0\.0\.1:\d+ refused", since=since)
            assert not record.exists()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# -- concurrency and shutdown --------------------------------------------------


def test_silent_connections_do_not_block_others() -> None:
    """Connections waiting for their packet (more than --threads) hold no thread:
    a valid request is answered while every one of them is still open."""
    tmp = short_tmpdir()
    sock_path = os.path.join(tmp, "s.sock")
    # A 60 s header timeout: nothing but the server's own choice closes them early.
    server = Rwsgi(APP, "--socket", sock_path, "--header-timeout", "60", "--threads", "2")
    socks = [connect(sock_path) for _ in range(4)]
    try:
        for index, sock in enumerate(socks):
            sock.sendall(b"\x00\x10" if index % 2 else uwsgi_header(100))
        response = uwsgi_exchange(sock_path, uwsgi_packet(request_vars()))
        assert response.status == 200, server.logs()
        assert json.loads(response.body)["environ"]["PATH_INFO"] == "/env"
        for sock in socks:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):  # still open, nothing sent back
                sock.recv(1)
    finally:
        for sock in socks:
            sock.close()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_waiting_generator_does_not_block_other_requests(backend: Backend) -> None:
    """With --threads 2, one app blocked mid-stream leaves the worker serving."""
    gate = Path(short_tmpdir()) / "gate"
    try:
        with connect(backend.tcp) as sock:
            sock.sendall(uwsgi_packet(request_vars(path="/stream", query=f"gate={gate}")))
            received = bytearray()
            while b"first\n" not in received:
                piece = sock.recv(4096)
                assert piece, bytes(received)
                received += piece
            report = backend.env()
            assert report["environ"]["PATH_INFO"] == "/env"
            gate.touch()
            received += read_until_closed(sock)
        assert b"gate timeout" not in received
        assert received.endswith(b"last\n")
    finally:
        shutil.rmtree(gate.parent, ignore_errors=True)


def test_sigterm_lets_an_inflight_uwsgi_response_finish() -> None:
    from apps.uwsgi_apps import stream_body

    tmp = short_tmpdir()
    sock_path = os.path.join(tmp, "g.sock")
    gate = Path(tmp) / "gate"
    server = Rwsgi(APP, "--socket", sock_path, "--graceful-timeout", "20")
    try:
        with connect(sock_path) as sock:
            sock.sendall(uwsgi_packet(request_vars(path="/stream", query=f"gate={gate}")))
            received = bytearray()
            while b"first\n" not in received:
                piece = sock.recv(4096)
                assert piece, bytes(received)
                received += piece
            since = server.mark()
            server.proc.send_signal(15)
            server.wait_for_log("SIGTERM", since=since)
            gate.touch()
            received += read_until_closed(sock)
        assert parse_response(bytes(received)).body == stream_body()
        assert server.wait_exit() == 0
        assert not os.path.exists(sock_path)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
