"""The access log (``--access-log``): one line per answered request, written by
the server's I/O side after the response, on every kind of listener, in the
common, combined and runserver layouts; a destination that does not keep up
costs lines, never responses."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from conftest import ServerFactory, short_tmpdir, wait_until
from support.transports import LISTENER_KINDS, start_on_every_listener

STAMP = r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}"


def lines_of(path: Path, count: int) -> list[str]:
    """The log's lines once it holds ``count`` (it is flushed within a second)."""
    wait_until(lambda: path.exists() and len(path.read_text().splitlines()) >= count, 10)
    return path.read_text().splitlines()


def test_one_common_line_per_request_on_every_listener(start_server: ServerFactory) -> None:
    log = Path(short_tmpdir()) / "access.log"
    server, _ = start_on_every_listener(start_server, "apps.core", "--access-log", str(log))
    for kind in LISTENER_KINDS.values():
        response = kind(server).request("GET", f"/echo?via={kind.name}")
        assert response.status == 200
    lines = lines_of(log, 3)
    assert len(lines) == 3, lines
    # Lines are written after their responses, so not necessarily in request order.
    for kind in LISTENER_KINDS.values():
        [line] = [line for line in lines if f"via={kind.name} " in line]
        peer = "127.0.0.1" if kind.name == "direct" else r"(-|127\.0\.0\.1)"
        pattern = rf'^{peer} - - \[{STAMP}\] "GET /echo\?via={kind.name} HTTP/1\.1" 200 \d+$'
        assert re.match(pattern, line), (kind.name, line)


def test_combined_adds_referer_and_an_escaped_user_agent(start_server: ServerFactory) -> None:
    log = Path(short_tmpdir()) / "access.log"
    server, _ = start_on_every_listener(
        start_server, "apps.core", "--access-log", str(log), "--access-log-format", "combined"
    )
    direct = LISTENER_KINDS["direct"](server)
    direct.request("GET", "/echo", headers=[("Referer", "http://a.test/"), ("User-Agent", 'x"y')])
    direct.request("GET", "/echo")
    # Each line is written after its response is sent: the client may see the
    # first answer, and send the second request, before that line is written.
    lines = sorted(lines_of(log, 2), key=lambda line: "a.test" not in line)
    assert lines[0].endswith(' "http://a.test/" "x\\"y"'), lines
    assert lines[1].endswith(' "-" "-"'), lines


def test_runserver_lines_on_standard_output(start_server: ServerFactory) -> None:
    server = start_server.mixed(
        "apps.core",
        "--http",
        "127.0.0.1:0",
        "--access-log",
        "-",
        "--access-log-format",
        "runserver",
    )
    direct = LISTENER_KINDS["direct"](server)
    assert direct.request("HEAD", "/echo?x=1").status == 200
    assert direct.request("GET", "/missing-route").status in (200, 404)
    wait_until(lambda: len(server.stdout().splitlines()) >= 2, 10)
    first = server.stdout().splitlines()[0]
    assert re.match(
        r'^\[\d\d/[A-Z][a-z]{2}/\d{4} \d\d:\d\d:\d\d\] "HEAD /echo\?x=1 HTTP/1\.1" 200 \d+$', first
    ), first


def test_off_by_default(start_server: ServerFactory) -> None:
    server = start_server.mixed("apps.core", "--http", "127.0.0.1:0")
    direct = LISTENER_KINDS["direct"](server)
    assert direct.request("GET", "/echo").status == 200
    server.stop()
    assert server.stdout() == ""


def test_a_destination_that_never_reads_costs_lines_not_responses(
    start_server: ServerFactory,
) -> None:
    """A fifo whose reader never reads: the writer thread blocks once the pipe is
    full, batches queue and are then dropped with a warning; every request is
    still answered."""
    fifo = Path(short_tmpdir()) / "access.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
    try:
        server = start_server.mixed("apps.core", "--http", "127.0.0.1:0", "--access-log", str(fifo))
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        direct = LISTENER_KINDS["direct"](server)
        padding = "p" * 4000
        # ~12 MB of lines: far past the pipe (64 KiB) and the writer's queue.
        with direct.connect() as conn:
            for index in range(3000):
                conn.send(direct.encode("GET", f"/echo?{index}&{padding}"))
                assert conn.response("GET").status == 200
        server.wait_for_log("access log: its destination does not keep up", timeout=10)
    finally:
        os.close(reader)


@pytest.mark.parametrize("value", ["/no/such/folder/access.log"])
def test_a_log_in_a_missing_folder_is_refused_at_start(value: str) -> None:
    from support.process import run_to_exit

    code, err = run_to_exit("apps.core", "--http", "127.0.0.1:0", "--access-log", value)
    assert code != 0
    assert "--access-log" in err and "does not exist" in err
