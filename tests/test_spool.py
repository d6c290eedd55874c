"""Request bodies past --post-buffering spool to an unnamed file in --spool-dir:
every byte comes back through read(n), line iteration and seek(0), over
HTTP (Content-Length and chunked) and uwsgi; the worker's memory stays flat
under large concurrent uploads; the folder never holds a name, not even
after a SIGKILL mid-upload; and a folder that stops being writable answers
503 with a log line naming it.

The connection code does not produce spooled bodies yet (its rewrite wires
``BodySink`` in), so the module is skipped until then; the spooled
``wsgi.input`` itself is covered by the Rust tests in src/wsgi/input.rs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, read_response, wait_until
from nginx_helper import (
    Rwsgi,
    connect,
    parse_response,
    read_to_eof,
    request_vars,
    short_tmpdir,
    uwsgi_packet,
)
from test_input import LINES, expected_pieces

pytestmark = [
    pytest.mark.timeout(300),
]

APP = "apps.body:application"
MiB = 1 << 20
LARGE = 256 * MiB
SMALL_BUFFERING = "65536"
BLOCK = os.urandom(MiB)  # random bytes hold a newline every 256 bytes or so


def pieces(size: int) -> Iterator[bytes]:
    """``size`` bytes in 1 MiB pieces, each numbered so that a lost or repeated one shows."""
    number = 0
    while size > 0:
        piece = (number.to_bytes(8, "little") + BLOCK[8:])[: min(MiB, size)]
        yield piece
        size -= len(piece)
        number += 1


def digest(size: int) -> dict[str, object]:
    sha = hashlib.sha256()
    for piece in pieces(size):
        sha.update(piece)
    return {"sha256": sha.hexdigest(), "size": size}


def spool_server(start_server, spool: Path, *args: str, threads: int = 1) -> Server:
    return start_server(
        APP, "--spool-dir", str(spool), "--body-timeout", "60", *args, threads=threads
    )


def worker_pid(server: Server) -> int:
    (pid,) = server.worker_pids.values()
    return pid


def spool_fds(pid: int, spool: Path) -> list[str]:
    """Where the worker's descriptors into ``spool`` point (``(deleted)`` when unnamed)."""
    links = []
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            link = os.readlink(fd)
        except FileNotFoundError:
            continue  # closed while we looked
        if link.startswith(str(spool)):
            links.append(link)
    return links


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def send_head(sock: socket.socket, path: str, size: int | None) -> None:
    framing = "Transfer-Encoding: chunked" if size is None else f"Content-Length: {size}"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\n{framing}\r\n\r\n".encode())


def upload(server: Server, size: int, path: str = "/?mode=rehash", chunked: bool = False):
    with server.connect(timeout=120) as sock, sock.makefile("rb") as rfile:
        send_head(sock, path, None if chunked else size)
        for piece in pieces(size):
            sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        return read_response(rfile, "POST")


def assert_three_passes(response: Any, size: int) -> None:
    """The app's ``mode=rehash`` report (HTTP or uwsgi response) says it read every byte 3 times."""
    assert response.status == 200, response.body[:300]
    passes = json.loads(response.body)["passes"]
    assert passes == [digest(size)] * 3, "read(n), line iteration and seek(0) + read(n)"


# -- every byte back, every way -------------------------------------------------


@pytest.mark.parametrize("buffering", [SMALL_BUFFERING, None])
def test_large_upload_with_content_length(start_server, tmp_path: Path, buffering) -> None:
    extra = ("--post-buffering", buffering) if buffering else ()
    server = spool_server(start_server, tmp_path, *extra)
    assert_three_passes(upload(server, LARGE), LARGE)
    assert list(tmp_path.iterdir()) == []


def test_large_chunked_upload(start_server, tmp_path: Path) -> None:
    server = spool_server(start_server, tmp_path, "--post-buffering", SMALL_BUFFERING)
    assert_three_passes(upload(server, LARGE, chunked=True), LARGE)
    assert list(tmp_path.iterdir()) == []


def test_large_upload_over_uwsgi(tmp_path: Path) -> None:
    sock_path = os.path.join(short_tmpdir(), "u.sock")
    server = Rwsgi(
        APP,
        "--socket",
        sock_path,
        "--spool-dir",
        str(tmp_path),
        "--post-buffering",
        SMALL_BUFFERING,
        "--body-timeout",
        "60",
    )
    try:
        block = request_vars("POST", "/", query="mode=rehash", CONTENT_LENGTH=str(LARGE))
        with connect(sock_path, timeout=120) as sock:
            sock.sendall(uwsgi_packet(block))
            for piece in pieces(LARGE):
                sock.sendall(piece)
            response = parse_response(read_to_eof(sock))
        assert_three_passes(response, LARGE)
        assert list(tmp_path.iterdir()) == []
    finally:
        server.stop()


@pytest.mark.parametrize("size", [65535, 65536, 65537, 3 * MiB + 1])
def test_bodies_around_the_threshold(start_server, tmp_path: Path, size: int) -> None:
    server = spool_server(start_server, tmp_path, "--post-buffering", SMALL_BUFFERING)
    assert_three_passes(upload(server, size), size)
    assert_three_passes(upload(server, size, chunked=True), size)


@pytest.mark.parametrize("mode", ["read", "readline", "readlines", "iter", "mixed"])
def test_every_read_method_on_a_spooled_body(start_server, tmp_path: Path, mode: str) -> None:
    server = spool_server(start_server, tmp_path, "--post-buffering", "0")
    report = server.request("POST", f"/?mode={mode}", body=LINES).json()
    assert report["pieces"] == [p.decode("latin-1") for p in expected_pieces(mode, LINES, 0)]
    assert report["after"] == ""


# -- memory ---------------------------------------------------------------------


def test_worker_memory_stays_flat_under_concurrent_large_uploads(
    start_server, tmp_path: Path
) -> None:
    server = spool_server(start_server, tmp_path, threads=8)
    pid = worker_pid(server)
    upload(server, 4 * MiB, "/?mode=hash")  # warm up: buffers, threads, the spool path
    baseline = vm_kib(pid, "VmRSS")
    responses: list[Any] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            responses.append(upload(server, LARGE, "/?mode=hash"))
        except BaseException as error:
            errors.append(error)

    clients = [threading.Thread(target=one) for _ in range(8)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    assert not errors, errors
    expected = digest(LARGE)
    assert len(responses) == 8
    for response in responses:
        assert response.status == 200
        report = response.json()
        assert {"sha256": report["sha256"], "size": report["size"]} == expected
    # VmHWM is the peak, so a short-lived spike between samples still counts.
    grown_mib = (vm_kib(pid, "VmHWM") - baseline) / 1024
    assert grown_mib < 32, f"the worker grew by {grown_mib:.1f} MiB for 8 x 256 MiB bodies"


# -- nothing left behind --------------------------------------------------------


def half_sent_upload(server: Server, spool: Path) -> tuple[socket.socket, int]:
    """A connection that has sent 16 MiB of a 64 MiB body, once the spool file exists."""
    sock = server.connect(timeout=60)
    send_head(sock, "/?mode=hash", 64 * MiB)
    for piece in itertools.islice(pieces(64 * MiB), 16):
        sock.sendall(piece)
    pid = worker_pid(server)
    links = wait_until(lambda: spool_fds(pid, spool), timeout=30)
    assert all(link.endswith("(deleted)") for link in links), links
    return sock, pid


def test_spool_dir_stays_empty_during_and_after_an_upload(start_server, tmp_path: Path) -> None:
    server = spool_server(start_server, tmp_path, "--post-buffering", SMALL_BUFFERING)
    sock, pid = half_sent_upload(server, tmp_path)
    with sock, sock.makefile("rb") as rfile:
        assert list(tmp_path.iterdir()) == [], "the spool file has a name mid-upload"
        for piece in itertools.islice(pieces(64 * MiB), 16, None):
            sock.sendall(piece)
        assert read_response(rfile, "POST").json()["size"] == 64 * MiB
    assert list(tmp_path.iterdir()) == []
    wait_until(lambda: not spool_fds(pid, tmp_path), timeout=10)


def test_a_worker_killed_mid_upload_leaves_nothing(start_server, tmp_path: Path) -> None:
    server = spool_server(start_server, tmp_path, "--post-buffering", SMALL_BUFFERING)
    sock, pid = half_sent_upload(server, tmp_path)
    with sock:
        os.kill(pid, signal.SIGKILL)
        server.wait_for_respawn(1, pid)
    assert list(tmp_path.iterdir()) == []
    assert upload(server, 2 * MiB, "/?mode=hash").json()["size"] == 2 * MiB


# -- an unwritable spool dir ----------------------------------------------------


def test_a_spool_dir_removed_after_start_up_answers_503(start_server, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    server = spool_server(start_server, spool, "--post-buffering", SMALL_BUFFERING)
    spool.rmdir()  # root ignores mode bits: a folder that is gone cannot be written either
    mark = server.mark()
    response = upload(server, 1 * MiB, "/?mode=hash")
    assert response.status == 503
    server.wait_for_log(re.compile(re.escape(str(spool))), since=mark)
    # bodies that stay in memory are still served, and the worker is the same
    assert upload(server, 1000, "/?mode=hash").json()["size"] == 1000
    assert worker_pid(server) in server.all_worker_pids()
    spool.mkdir()
    assert upload(server, 1 * MiB, "/?mode=hash").json()["size"] == 1 * MiB
