"""Slow and hostile clients, on every path: HTTP/1.1 on TCP, HTTP/1.1 on a
unix socket (``--http-socket``) and uwsgi on a unix socket.

500 connections trickling a request head one byte a second and 200
trickling a body (1000 bytes declared, one a second) cost a worker no
thread: a normal client is answered within a second meanwhile (the median
of several, none failing), with the default timeouts and ``--workers 2
--threads 2``. The tricklers only need to be open while the normal client
is measured, so each run takes a few seconds.

Then each limit ends its trickler: ``--header-timeout`` a head that never
completes, ``--body-timeout`` a body that goes silent, ``--keepalive-timeout``
an idle kept-alive connection (HTTP only: uwsgi has no keep-alive). The
assertions are on what happened and in which order, not on tight times.
"""

from __future__ import annotations

import resource
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import RawResponse, Rwsgi, ServerFactory, connect, short_tmpdir
from support.transports import Direct, Transport, Uwsgi

pytestmark = pytest.mark.timeout(120)

APP = "apps.conntime:application"
HEAD_TRICKLERS = 500
BODY_TRICKLERS = 200
SAMPLES = 10
LIMIT = 1.0  # the limited server's header, body and keep-alive timeouts


class HttpUnix(Direct):
    """HTTP/1.1 on the ``--http-socket`` unix listener."""

    name = "http-unix"

    def address(self) -> str | tuple[str, int]:
        return self.server.unix("http")


KINDS = {kind.name: kind for kind in (Direct, HttpUnix, Uwsgi)}


def raise_nofile(wanted: int) -> None:
    """Room for the tricklers in this process and the servers it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


def start(factory: ServerFactory, *args: str) -> Rwsgi:
    raise_nofile(4096)
    tmp = short_tmpdir()
    return factory.mixed(
        APP,
        "--http",
        "127.0.0.1:0",
        "--http-socket",
        f"{tmp}/h.sock",
        "--socket",
        f"{tmp}/u.sock",
        "--threads",
        "2",
        *args,
        workers=2,
    )


@pytest.fixture(scope="module")
def defaults(start_module_server: ServerFactory) -> Rwsgi:
    """Every timeout at its default."""
    return start(start_module_server)


@pytest.fixture(scope="module")
def limited(start_module_server: ServerFactory) -> Rwsgi:
    return start(
        start_module_server,
        "--header-timeout",
        str(LIMIT),
        "--body-timeout",
        str(LIMIT),
        "--keepalive-timeout",
        str(LIMIT),
    )


def head_trickle(t: Transport) -> bytes:
    """A head far too long to finish at a byte a second within the test."""
    return t.head("GET", "/trickled-head", [("X-Pad", "p" * 200)])


def body_trickle(t: Transport) -> tuple[bytes, bytes]:
    """A whole head declaring 1000 bytes of body, and the body."""
    return t.head("POST", "/body", length=1000), b"b" * 1000


class Trickler:
    """Connections that each get one byte of their ``rest`` a second (after
    ``first``, sent at once), on a thread, until closed."""

    def __init__(self, address: str | tuple[str, int]) -> None:
        self.address = address
        self.socks: list[socket.socket] = []
        self.pending: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def open(self, first: bytes, rest: bytes, count: int) -> None:
        for _ in range(count):
            sock = connect(self.address, timeout=10)
            sock.sendall(first)
            sock.setblocking(False)
            self.socks.append(sock)
            self.pending.append(rest)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for index, sock in enumerate(self.socks):
                rest = self.pending[index]
                if not rest:
                    continue
                try:
                    sock.send(rest[:1])
                except OSError:
                    self.pending[index] = b""
                    continue
                self.pending[index] = rest[1:]

    def still_open(self) -> int:
        """How many the server has not closed (nothing to read, no end of stream)."""
        held = 0
        for sock in self.socks:
            try:
                held += bool(sock.recv(1, socket.MSG_PEEK))
            except BlockingIOError:
                held += 1
            except OSError:
                pass
        return held

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for sock in self.socks:
            sock.close()


def timed_request(t: Transport) -> float | None:
    began = time.monotonic()
    try:
        response: RawResponse = t.request("GET", "/hello", timeout=5)
    except OSError:
        return None
    return time.monotonic() - began if response.body == b"hello" else None


@pytest.fixture
def trickling(
    defaults: Rwsgi, request: pytest.FixtureRequest
) -> Iterator[tuple[Transport, Trickler]]:
    t = KINDS[request.param](defaults)
    trickler = Trickler(t.address())
    try:
        trickler.open(b"", head_trickle(t), HEAD_TRICKLERS)
        head, body = body_trickle(t)
        trickler.open(head, body, BODY_TRICKLERS)
        trickler.start()
        yield t, trickler
    finally:
        trickler.close()


@pytest.mark.parametrize("trickling", list(KINDS), indirect=True)
def test_tricklers_do_not_hold_up_a_normal_client(
    trickling: tuple[Transport, Trickler],
) -> None:
    t, trickler = trickling
    time.sleep(1.5)  # pacing: every trickler accepted and a byte or two into its request
    timings = [timed_request(t) for _ in range(SAMPLES)]
    held = trickler.still_open()
    failed = timings.count(None)
    assert failed == 0, f"{failed} of {SAMPLES} normal requests failed: {timings}"
    median = statistics.median(x for x in timings if x is not None)
    assert median < 1.0, f"normal requests took {timings}"
    total = HEAD_TRICKLERS + BODY_TRICKLERS
    assert held >= total * 0.95, f"only {held} of {total} tricklers were held: no real load"


# -- each limit ends its trickler ---------------------------------------------------------


def watch_close(
    sock: socket.socket, feed: bytes, interval: float, timeout: float
) -> tuple[float, int, bytes]:
    """Send ``feed`` one byte per ``interval`` until the server closes the
    connection; how long that took, how many bytes went out and what the
    server answered."""
    began = time.monotonic()
    sent = 0
    answer = bytearray()
    sock.settimeout(interval)
    while time.monotonic() - began < timeout:
        if sent < len(feed):
            try:
                sock.sendall(feed[sent : sent + 1])
                sent += 1
            except OSError:
                break
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not piece:
            break
        answer += piece
    else:
        pytest.fail(f"still open after {timeout} s, {sent} byte(s) sent")
    return time.monotonic() - began, sent, bytes(answer)


@pytest.mark.parametrize("kind", list(KINDS))
def test_header_timeout_ends_a_trickled_head(limited: Rwsgi, kind: str) -> None:
    t = KINDS[kind](limited)
    data = head_trickle(t)  # over 50 s at 4 bytes a second
    with connect(t.address(), timeout=10) as sock:
        elapsed, sent, answer = watch_close(sock, data, 0.25, 30)
    assert sent < len(data), "the whole head went out: never cut off"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    assert elapsed > LIMIT * 0.8, f"cut off after {elapsed:.2f} s, before the limit"


@pytest.mark.parametrize("kind", list(KINDS))
def test_body_timeout_ends_a_body_that_goes_silent(limited: Rwsgi, kind: str) -> None:
    t = KINDS[kind](limited)
    head, body = body_trickle(t)
    with connect(t.address(), timeout=10) as sock:
        sock.sendall(head + body[:10])
        # One byte every 3 s: each silence is past the 1 s limit.
        _, sent, answer = watch_close(sock, body[10:], 3.0, 30)
    assert sent <= 2, f"{sent} more byte(s) went out: the silence did not end it"
    assert answer.startswith(b"HTTP/1.1 408"), answer


@pytest.mark.parametrize("kind", ["direct", "http-unix"])
def test_keepalive_timeout_ends_an_idle_kept_connection(limited: Rwsgi, kind: str) -> None:
    t = KINDS[kind](limited)
    with t.connect(timeout=10) as conn:
        conn.send(t.encode("GET", "/hello"))
        assert conn.response().body == b"hello"
        began = time.monotonic()
        assert conn.rest(10) == b""
        elapsed = time.monotonic() - began
    assert elapsed > LIMIT * 0.8, f"closed after {elapsed:.2f} s, before the limit"
