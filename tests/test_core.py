"""Behaviour every protocol shares, written once and run over three transports
(support/transports.py): direct HTTP/1.1, chunked HTTP/1.1 and uwsgi.

The limits (400, 408, 413, 431), the header and body timeouts, shutdown,
bodiless responses, Content-Length truncation, hop-by-hop headers from the
app, strict parsing of the request head and of chunked framing, and bodies
spooled past --post-buffering. The app (apps/core.py) notes every call, so
a refused request is proven never to have reached it.

Where uwsgi differs it is by design: it has no keep-alive, its answer is
delimited by the close, and a packet it cannot parse (or one that stalls)
is logged and closed without an answer, as nginx expects.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    IncompleteResponse,
    RawResponse,
    Rwsgi,
    ServerFactory,
    recorded_lines,
    short_tmpdir,
    trickle,
    url_arg,
    wait_until,
)
from support.transports import TRANSPORTS, Chunked, Conn, Direct, Transport
from support.uwsgi import request_vars, uwsgi_header, uwsgi_packet, uwsgi_vars

pytestmark = pytest.mark.timeout(90)

APP = "apps.core:application"
MAX_BODY = 100_000
LIMITED_TIMEOUT = 1.0  # --header-timeout and --body-timeout of the "limited" server


@dataclass
class Core:
    """A running server with an HTTP and a uwsgi listener, and its app's call record."""

    server: Rwsgi
    record: Path

    def calls(self) -> list[str]:
        return recorded_lines(self.record)

    def transport(self, name: str) -> Transport:
        return TRANSPORTS[name](self.server)


def start_core(factory: ServerFactory, *args: str, threads: int = 2) -> Core:
    tmp = Path(short_tmpdir())
    record = tmp / "calls.txt"
    server = factory.mixed(
        APP,
        "--http",
        "127.0.0.1:0",
        "--socket",
        str(tmp / "core.sock"),
        "--threads",
        str(threads),
        *args,
        env={"RWSGI_TEST_RECORD": str(record)},
    )
    return Core(server, record)


@pytest.fixture(scope="module")
def core(start_module_server: ServerFactory) -> Core:
    """Long timeouts, so that only the behaviour under test closes a connection."""
    return start_core(
        start_module_server,
        "--max-body-size",
        str(MAX_BODY),
        "--header-timeout",
        "60",
        "--body-timeout",
        "60",
    )


@pytest.fixture(scope="module")
def limited(start_module_server: ServerFactory) -> Core:
    """Short header and body timeouts, for the tests that wait them out."""
    return start_core(
        start_module_server,
        "--header-timeout",
        str(LIMITED_TIMEOUT),
        "--body-timeout",
        str(LIMITED_TIMEOUT),
    )


@pytest.fixture(params=list(TRANSPORTS))
def transport(request: pytest.FixtureRequest, core: Core) -> Transport:
    return core.transport(request.param)


@pytest.fixture(params=["direct", "chunked"])
def http_transport(request: pytest.FixtureRequest, core: Core) -> Transport:
    return core.transport(request.param)


@pytest.fixture(params=list(TRANSPORTS))
def limited_transport(request: pytest.FixtureRequest, limited: Core) -> Transport:
    return limited.transport(request.param)


def still_serving(t: Transport) -> None:
    response = t.request("GET", "/core/after/hello")
    assert response.status == 200 and response.body == b"hello", response


def assert_closed_without_answer(core: Core, conn: Conn, log: str, since: int) -> None:
    """How uwsgi refuses what it cannot answer: no bytes, a log line, a close."""
    answer = conn.rest(30)
    assert answer == b"", f"an answer where uwsgi must close silently: {answer[:300]!r}"
    logged = core.server.wait_for_log(log, since=since)
    assert "dropped" in logged.string, logged.string


def assert_refused(response: RawResponse, conn: Conn, status: int) -> None:
    """An HTTP refusal: the status, then the connection closed."""
    assert response.status == status, response
    assert conn.rest() == b"", "the connection must close after the refusal"


# -- 400 ----------------------------------------------------------------------------


def malformed(t: Transport, target: str) -> bytes:
    """What malformed means on each transport."""
    if isinstance(t, Direct):  # a header line without a colon
        return t.head("GET", target, ["X-No-Colon"])
    if isinstance(t, Chunked):  # a chunk size that is not hex
        return t.head("POST", target) + b"zz\r\nhello\r\n" + t.end()
    return uwsgi_header(4) + b"\x0a\x00AB"  # a key running past the vars block


def test_malformed_request_is_refused(core: Core, transport: Transport) -> None:
    target = f"/core/malformed/{transport.name}/hash"
    calls = len(core.calls())
    since = core.server.mark()
    with transport.connect() as conn:
        conn.send(malformed(transport, target))
        if transport.is_http:
            assert_refused(conn.response("POST"), conn, 400)
        else:
            assert_closed_without_answer(core, conn, r"malformed vars block", since)
    assert len(core.calls()) == calls, core.calls()[calls:]
    still_serving(transport)


# -- 408, 413 -----------------------------------------------------------------------


def test_stalled_body_is_408(limited: Core, limited_transport: Transport) -> None:
    t = limited_transport
    target = f"/core/stalled/{t.name}/hash"
    since = limited.server.mark()
    with t.connect(timeout=30) as conn:
        conn.send(t.head("POST", target, length=10) + t.piece(b"abc"))
        began = time.monotonic()
        # A well-formed request whose body stalls is answered 408 on every
        # protocol (behind nginx the client then gets the 408, not a 502).
        assert_refused(conn.response("POST", timeout=30), conn, 408)
        elapsed = time.monotonic() - began
    limited.server.wait_for_log(r"timed out waiting for the request body", since=since)
    assert elapsed > LIMITED_TIMEOUT * 0.8, f"refused after {elapsed:.2f} s, before the timeout"
    assert target not in limited.calls()


def test_body_over_max_body_size_is_413_even_while_sending(
    core: Core, transport: Transport
) -> None:
    """The client is still writing a body ten times the limit when the server
    decides: the 413 must reach it (not a reset that discards it)."""
    target = f"/core/too-large/{transport.name}/hash"
    body = os.urandom(MAX_BODY * 10)
    with transport.connect(timeout=30) as conn:
        conn.send(transport.head("POST", target, length=len(body)))

        def send_body() -> None:
            for at in range(0, len(body), 16384):
                if not conn.send(transport.piece(body[at : at + 16384])):
                    return
            conn.send(transport.end())

        sender = threading.Thread(target=send_body)
        sender.start()
        try:
            response = conn.response("POST", timeout=30)
            assert response.status == 413, response
            if transport.is_http:
                assert (response.header("connection") or "").lower() == "close", response
                assert conn.rest(30) == b""
        finally:
            sender.join(30)
    assert target not in core.calls()
    still_serving(transport)


# -- 431 (HTTP) and the full uwsgi vars block ----------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Big", "a" * (70 * 1024))],
        [(f"X-H{i}", "b" * 900) for i in range(80)],
        [(f"X-Field-{i}", str(i)) for i in range(101)],
    ],
    ids=["one-field-over-64k", "head-over-64k", "over-100-fields"],
)
def test_oversized_head_is_431(
    core: Core, http_transport: Transport, headers: list[tuple[str, str]]
) -> None:
    target = f"/core/431/{http_transport.name}/{len(headers)}/hash"
    with http_transport.connect() as conn:
        conn.send(http_transport.encode("GET", target, headers))
        assert_refused(conn.response(), conn, 431)
    assert target not in core.calls()
    still_serving(http_transport)


def test_uwsgi_vars_block_of_the_full_65535_bytes_is_accepted(core: Core) -> None:
    base = request_vars(path="/core/full-vars")
    filler = b"HTTP_X_FILL"
    room = 65535 - len(uwsgi_vars(base.items())) - 4 - len(filler)
    packet = uwsgi_packet([*base.items(), (filler, b"f" * room)])
    assert packet[1:3] == b"\xff\xff"
    with core.transport("uwsgi").connect() as conn:
        conn.send(packet)
        response = conn.response()
    assert response.status == 200, response
    assert response.json()["path"] == "/core/full-vars"


# -- the header and body timeouts ---------------------------------------------------------


def test_idle_connection_is_closed_after_the_header_timeout(
    limited: Core, limited_transport: Transport
) -> None:
    with limited_transport.connect(timeout=30) as conn:
        began = time.monotonic()
        answer = conn.rest(30)
        elapsed = time.monotonic() - began
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    assert elapsed > LIMITED_TIMEOUT * 0.8, f"closed after {elapsed:.2f} s, before the timeout"


def test_trickled_head_is_cut_off(limited: Core, limited_transport: Transport) -> None:
    t = limited_transport
    target = f"/core/trickle/{t.name}/hello"
    data = t.encode("GET", target, [("X-Pad", "p" * 100)])  # seconds at 20 bytes a second
    with t.connect(timeout=30) as conn:
        sent, answer = trickle(conn.sock, data, 0.05)
    assert sent < len(data), "the whole head went out: the server never cut it off"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    assert target not in limited.calls()


def test_slow_body_within_the_body_timeout_is_served(
    limited: Core, limited_transport: Transport
) -> None:
    """--body-timeout bounds each silence, not the whole body."""
    t = limited_transport
    body = os.urandom(4000)
    with t.connect(timeout=30) as conn:
        conn.send(t.head("POST", f"/core/slow-body/{t.name}/hash", length=len(body)))
        for at in range(0, len(body), 1000):
            time.sleep(LIMITED_TIMEOUT * 0.3)  # pacing below the idle limit, not readiness
            conn.send(t.piece(body[at : at + 1000]))
        conn.send(t.end())
        response = conn.response("POST", timeout=30)
    assert response.status == 200, response
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()


# -- SIGTERM -------------------------------------------------------------------------------


@pytest.fixture(params=list(TRANSPORTS))
def own_transport(request: pytest.FixtureRequest, start_server: ServerFactory) -> Transport:
    """A transport to a server of the test's own (it will be stopped), 60 s timeouts."""
    own = start_core(
        start_server,
        "--header-timeout",
        "60",
        "--keepalive-timeout",
        "60",
        "--graceful-timeout",
        "30",
    )
    return own.transport(request.param)


def test_sigterm_closes_an_idle_connection_and_exits_0(own_transport: Transport) -> None:
    t = own_transport
    with t.connect(timeout=30) as conn:
        if t.is_http:  # served once, now idle in keep-alive
            conn.send(t.encode("GET", "/core/before-stop/hello"))
            assert conn.response().body == b"hello"
        t.server.send_signal(signal.SIGTERM)
        # the 60 s header and keep-alive timeouts cannot be what closes it
        assert conn.rest(30) == b""
    assert t.server.wait(30) == 0, t.server.logs()


def test_sigterm_lets_the_request_in_flight_finish(
    own_transport: Transport, tmp_path: Path
) -> None:
    t = own_transport
    gate, started = tmp_path / "gate", tmp_path / "started"
    target = f"/core/gate?gate={url_arg(gate)}&started={url_arg(started)}"
    with t.connect(timeout=30) as conn:
        conn.send(t.encode("GET", target))
        wait_until(started.exists, 10)
        since = t.server.mark()
        t.server.send_signal(signal.SIGTERM)
        # The worker's own line: the master's comes before the worker has
        # the signal, and a response encoded before it would keep the
        # connection alive.
        t.server.wait_for_log(r"worker \d+: draining 1 connection", since=since)
        gate.touch()
        response = conn.response(timeout=30)
        assert response.status == 200, response
        assert response.json()["gate_opened"] is True
        if t.is_http:
            assert (response.header("connection") or "").lower() == "close", response.headers
        assert conn.rest(30) == b""
    assert t.server.wait(30) == 0, t.server.logs()


# -- responses without a body ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("HEAD", "/core/hello", 200),
        ("GET", "/core/nobody?code=204", 204),
        ("GET", "/core/nobody?code=304", 304),
    ],
    ids=["HEAD", "204", "304"],
)
def test_head_204_304_have_no_body(
    transport: Transport, method: str, target: str, status: int
) -> None:
    with transport.connect() as conn:
        conn.send(transport.encode(method, target))
        response = conn.response(method)
        assert response.status == status, response
        assert response.header("transfer-encoding") is None, response.headers
        if method == "HEAD":
            assert response.header("content-length") == "5", response.headers
        if not transport.is_http:
            assert response.trailing == b"", "body bytes after a bodiless answer"
            return
        # a body after the head would be read as this next answer's status line
        conn.send(transport.encode("GET", "/core/next/hello"))
        after = conn.response()
        assert after.status == 200 and after.body == b"hello", after


# -- Content-Length truncation ------------------------------------------------------------


def test_body_longer_than_its_content_length_is_cut_at_it(transport: Transport) -> None:
    with transport.connect() as conn:
        conn.send(transport.encode("GET", "/core/length?declared=5&actual=10"))
        response = conn.response()
        assert response.status == 200, response
        assert response.body == b"01234"
        assert response.trailing == b""
        assert conn.rest() == b"", "the connection must close after a cut-off body"


def test_body_shorter_than_its_content_length_closes_the_connection(
    core: Core, transport: Transport
) -> None:
    since = core.server.mark()
    with transport.connect(timeout=30) as conn:
        conn.send(transport.encode("GET", "/core/length?declared=10&actual=5"))
        with pytest.raises(IncompleteResponse) as short:
            conn.response(timeout=30)  # a hang here would be a timeout, not this
    assert short.value.partial == b"01234"
    core.server.wait_for_log(r"(?i)content-length", since=since)


# -- hop-by-hop headers from the app ---------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["list", "generator"])
def test_hop_by_hop_headers_from_the_app_are_not_forwarded(
    transport: Transport, stream: bool
) -> None:
    target = "/core/hop?stream=1" if stream else "/core/hop"
    with transport.connect() as conn:
        conn.send(transport.encode("GET", target))
        response = conn.response()
        assert response.status == 200, response
        assert response.body == b"hop-by-hop body"
        assert response.trailing == b""
        assert response.header("keep-alive") is None, response.headers
        assert response.header("upgrade") is None, response.headers
        connection = [value.lower() for value in response.headers_named("connection")]
        assert connection in ([], ["close"]), response.headers
        lengths = response.headers_named("content-length")
        encodings = response.headers_named("transfer-encoding")
        framing = len(lengths) + len(encodings)
        if transport.is_http:
            assert framing == 1, f"not exactly one framing header: {response.headers}"
        else:
            assert framing <= 1, response.headers
        assert encodings in ([], ["chunked"]), response.headers
        assert response.chunked == bool(encodings)
        if transport.is_http and not connection:  # valid HTTP/1.1: the connection goes on
            conn.send(transport.encode("GET", "/core/next/hello"))
            assert conn.response().body == b"hello"


# -- strict parsing of the request head (HTTP) ------------------------------------------------

STRICT = {
    "two-host-fields": ("GET", "/core/strict/two-host/hello", [("Host", "other.test")]),
    "asterisk-form-get": ("GET", "*", []),
    "authority-form-get": ("GET", "example.com:80", []),
    "obs-fold": ("GET", "/core/strict/obs-fold/hello", ["X-Fold: a", " folded"]),
    "bare-cr": ("GET", "/core/strict/bare-cr/hello", ["X-Cr: a\rb"]),
    "nul-in-header": ("GET", "/core/strict/nul/hello", ["X-Nul: a\x00b"]),
}


@pytest.mark.parametrize("case", list(STRICT))
def test_strict_head_parsing_is_400_before_the_app(
    core: Core, http_transport: Transport, case: str
) -> None:
    method, target, headers = STRICT[case]
    calls = len(core.calls())
    with http_transport.connect() as conn:
        conn.send(http_transport.encode(method, target, headers))
        assert_refused(conn.response(method), conn, 400)
    assert core.calls()[calls:] == [], "a refused request reached the app"
    still_serving(http_transport)


def test_options_asterisk_is_accepted(http_transport: Transport) -> None:
    response = http_transport.request("OPTIONS", "*")
    assert response.status < 400, response


STRICT_CHUNKS = {
    "size-with-trailing-space": b"0 \r\n\r\n",
    "negative-size": b"-1\r\nhello\r\n0\r\n\r\n",
    "hex-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "size-overflow": b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "bare-lf-after-size": b"5\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(STRICT_CHUNKS))
def test_strict_chunked_framing_is_400_before_the_app(core: Core, case: str) -> None:
    t = core.transport("chunked")
    target = f"/core/strict-chunk/{case}/hash"
    with t.connect() as conn:
        conn.send(t.head("POST", target) + STRICT_CHUNKS[case])
        assert_refused(conn.response("POST"), conn, 400)
    assert target not in core.calls()
    still_serving(t)


def test_content_length_with_transfer_encoding_never_smuggles(core: Core) -> None:
    """Refused with 400, or read by Transfer-Encoding alone and the connection
    closed after it: either way the request hidden behind it is never served."""
    smuggled = b"GET /core/smuggled/hello HTTP/1.1\r\nHost: core.test\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    head = (
        b"POST /core/cl-te/hash HTTP/1.1\r\nHost: core.test\r\n"
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body)
    )
    t = core.transport("direct")
    with t.connect() as conn:
        conn.send(head + body)
        response = conn.response("POST")
        assert response.status in (200, 400), response
        if response.status == 200:
            assert response.json()["size"] == 0, "the body was read by Content-Length"
        assert conn.rest() == b"", "a second answer: the hidden request was served"
    assert "/core/smuggled/hello" not in core.calls()
    still_serving(t)


# -- bodies spooled past --post-buffering -------------------------------------------------------


@pytest.fixture(scope="module")
def spooling(start_module_server: ServerFactory) -> Core:
    return start_core(
        start_module_server, "--post-buffering", "65536", "--max-body-size", str(16 << 20)
    )


@pytest.fixture(params=list(TRANSPORTS))
def spool_transport(request: pytest.FixtureRequest, spooling: Core) -> Transport:
    return spooling.transport(request.param)


def test_spooled_body_arrives_whole(spool_transport: Transport) -> None:
    body = os.urandom(5 * 1024 * 1024)
    response = spool_transport.request("POST", "/core/spool/hash", body=body, timeout=60)
    assert response.status == 200, response
    report = response.json()
    assert report["size"] == len(body)
    assert report["sha256"] == hashlib.sha256(body).hexdigest()
