"""--write-timeout: a client that asks for a large answer and stops reading
is cut off once a write makes no progress for that long; the app's response
is dropped (its ``close()`` runs), and the worker's one thread goes on
serving everyone else meanwhile and afterwards. Over HTTP/1.1 and uwsgi, for
a streamed body, a body in one piece and a ``wsgi.file_wrapper`` file."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from conftest import RawResponse, Rwsgi, ServerFactory, recorded_lines, short_tmpdir, wait_until
from support.transports import TRANSPORTS, Transport

pytestmark = pytest.mark.timeout(90)

APP = "apps.conntime:application"
WRITE_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def stalled(start_module_server: ServerFactory) -> tuple[Rwsgi, Path]:
    """One worker with one thread: nothing else could serve while it was held."""
    tmp = Path(short_tmpdir())
    record = tmp / "calls.txt"
    server = start_module_server.mixed(
        APP,
        "--http",
        "127.0.0.1:0",
        "--socket",
        str(tmp / "u.sock"),
        "--threads",
        "1",
        "--write-timeout",
        str(WRITE_TIMEOUT),
        env={"RWSGI_TEST_RECORD": str(record)},
    )
    return server, record


def hello(t: Transport) -> RawResponse:
    return t.request("GET", "/hello", timeout=10)


def stalled_client(t: Transport, target: str) -> socket.socket:
    """A client that sends its request and never reads the answer."""
    conn = t.connect(timeout=30)
    # Default buffers: 64 MiB is far more than they hold, and what they do
    # hold is read at full speed once the server has given up.
    conn.send(t.encode("GET", target))
    return conn.sock


@pytest.mark.parametrize("transport", ["direct", "uwsgi"])
@pytest.mark.parametrize("mode", ["stream", "full", "file"])
def test_a_client_that_stops_reading_is_cut_off(
    stalled: tuple[Rwsgi, Path], transport: str, mode: str
) -> None:
    server, record = stalled
    t = TRANSPORTS[transport](server)
    since = server.mark()
    closes_before = recorded_lines(record).count("closed /big")
    sock = stalled_client(t, f"/big?mb=64&mode={mode}")
    try:
        wait_until(lambda: "/big" in recorded_lines(record), 10)
        # The write is blocked; the one thread still serves other clients.
        assert hello(t).body == b"hello"
        server.wait_for_log(r"--write-timeout", timeout=30, since=since)
        if mode != "full":  # a list has no close() to call
            wait_until(lambda: recorded_lines(record).count("closed /big") > closes_before, 10)
        # The server closed its end: after what the buffers held, the end of stream.
        sock.settimeout(30)
        received = 0
        while piece := _recv(sock):
            received += len(piece)
        assert received < 64 << 20, "the whole answer went out: the client was never cut off"
    finally:
        sock.close()
    assert hello(t).body == b"hello"
    assert "panicked" not in server.logs()


def _recv(sock: socket.socket, size: int = 256 << 10) -> bytes:
    try:
        return sock.recv(size)
    except ConnectionResetError:
        return b""


def test_a_slow_reader_that_keeps_reading_gets_everything(
    start_server: ServerFactory,
) -> None:
    """--write-timeout bounds each stall, not the whole answer."""
    server = start_server(APP, "--write-timeout", "1")
    size = 32 << 20  # far more than the socket buffers hold: the server waits on the reader
    with server.connect(timeout=30) as sock:
        sock.sendall(
            f"GET /big?mb={size >> 20} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
        )
        received = 0
        began = time.monotonic()
        # Pauses below the limit, past it in sum. The server's socket only
        # says it is writable again once a good part of its send buffer has
        # gone, so each pause reads a lot.
        while piece := _recv(sock, 1 << 20):
            received += len(piece)
            if time.monotonic() - began < 3:
                time.sleep(0.3)
    assert received > size, f"{received} bytes: cut off"
    assert "--write-timeout" not in server.logs()
