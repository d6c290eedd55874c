"""``rwsgi top``: the live view of a running server's ``--stats`` listener.

The view runs under a real pseudo-terminal against a real server, and its
``--once`` snapshot is read as text; both must show one row per worker PID
with the requests that worker served. The rate arithmetic is checked on
recorded snapshots.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServerFactory, short_tmpdir, wait_until
from rwsgi import top

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


@pytest.fixture
def stats_address() -> Iterator[str]:
    folder = short_tmpdir()
    path = os.path.join(folder, "stats.sock")
    yield path
    if os.path.exists(path):
        os.unlink(path)
    os.rmdir(folder)


def top_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "rwsgi", "top", *args]


def row_of(text: str, pid: int) -> list[str] | None:
    """The columns of the row for worker ``pid`` in a rendered screen."""
    for line in text.splitlines():
        columns = line.split()
        if len(columns) >= 9 and columns[1] == str(pid):
            return columns
    return None


def test_once_shows_every_worker_with_its_requests(
    start_server: ServerFactory, stats_address: str
) -> None:
    server = start_server("apps.sleep", "--stats", stats_address, workers=2)
    for _ in range(7):
        assert server.get("/pid").status == 200
    result = subprocess.run(
        top_argv(stats_address, "--once", "--interval", "0.2"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    pids = server.worker_pids
    assert len(pids) == 2
    served = 0
    for pid in pids.values():
        columns = row_of(result.stdout, pid)
        assert columns is not None, result.stdout
        assert columns[2] == "idle"
        served += int(columns[4].replace(",", ""))
    assert served == 7, result.stdout
    assert "workers 2 (busy 0)" in result.stdout
    assert "requests 7" in result.stdout


def test_a_request_in_flight_shows_as_busy(
    start_server: ServerFactory, stats_address: str, tmp_path: Path
) -> None:
    server = start_server("apps.sleep", "--stats", stats_address, workers=1, threads=2)
    started = tmp_path / "started"
    slow = threading.Thread(target=server.get, args=(f"/sleep?t=3&started={started}",), daemon=True)
    slow.start()
    wait_until(started.exists, timeout=10)
    result = subprocess.run(
        top_argv(stats_address, "--once", "--interval", "0.2"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    slow.join(timeout=10)
    assert result.returncode == 0, result.stderr
    (pid,) = server.worker_pids.values()
    columns = row_of(result.stdout, pid)
    assert columns is not None, result.stdout
    assert columns[2] == "busy"
    assert columns[5] == "1", result.stdout
    assert "in flight 1" in result.stdout


class Terminal:
    """``rwsgi top`` on a pseudo-terminal; everything it drew is kept."""

    def __init__(self, *args: str) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: become rwsgi top on the terminal
            os.environ["TERM"] = "xterm"
            os.environ["LINES"], os.environ["COLUMNS"] = "30", "120"
            os.execv(sys.executable, top_argv(*args))
        self.pid, self.fd = pid, fd
        self.output = b""
        self.status: int | None = None

    def read_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    return

    def read_until(self, pattern: bytes, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pattern in ANSI.sub(b" ", self.output):
                return True
            self.read_for(0.05)
        return False

    def text(self) -> str:
        return ANSI.sub(b" ", self.output).decode("utf-8", "replace")

    def press(self, key: bytes) -> None:
        os.write(self.fd, key)

    def wait(self, timeout: float) -> int | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            self.read_for(0.05)
        return None

    def close(self) -> None:
        if self.status is None and self.wait(0) is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_the_live_view_refreshes_and_quits_on_q(
    start_server: ServerFactory, stats_address: str
) -> None:
    server = start_server("apps.sleep", "--stats", stats_address, workers=2)
    terminal = Terminal(stats_address, "--interval", "0.2")
    try:
        assert terminal.read_until(b"WID", timeout=15), terminal.text()
        for _ in range(5):
            assert server.get("/pid").status == 200
        assert terminal.read_until(b"requests 5", timeout=15), terminal.text()
        terminal.press(b"+")
        assert terminal.read_until(b"refresh every 0.4 s", timeout=15), terminal.text()
        terminal.press(b"q")
        assert terminal.wait(timeout=10) == 0, terminal.text()
    finally:
        terminal.close()
    text = terminal.text()
    assert "Traceback" not in text
    for pid in server.worker_pids.values():
        assert str(pid) in text


def test_the_live_view_says_when_the_server_goes_away(
    start_server: ServerFactory, stats_address: str
) -> None:
    server = start_server("apps.sleep", "--stats", stats_address, workers=1)
    terminal = Terminal(stats_address, "--interval", "0.2")
    try:
        assert terminal.read_until(b"WID", timeout=15), terminal.text()
        server.stop()
        assert terminal.read_until(b"(retrying)", timeout=15), terminal.text()
        terminal.press(b"q")
        assert terminal.wait(timeout=10) == 0
    finally:
        terminal.close()
    assert "Traceback" not in terminal.text()


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("nonsense", "is not a stats address"),
        ("127.0.0.1:99999", "is not a stats address"),
        ("/nonexistent/stats.sock", "No such file or directory"),
    ],
)
def test_a_bad_or_silent_address_is_a_clear_error(address: str, message: str) -> None:
    result = subprocess.run(
        top_argv(address, "--once"), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_view_needs_a_terminal_unless_once(
    start_server: ServerFactory, stats_address: str
) -> None:
    start_server("apps.sleep", "--stats", stats_address, workers=1)
    result = subprocess.run(
        top_argv(stats_address), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "use --once" in result.stderr


def snapshot(*workers: tuple[int, int, int]) -> dict[str, object]:
    return {
        "workers": [
            {"id": wid, "pid": pid, "requests": requests, "status": "idle"}
            for wid, pid, requests in workers
        ]
    }


def test_rates_come_from_two_snapshots_of_the_same_process() -> None:
    before = snapshot((1, 100, 10), (2, 200, 50))
    after = snapshot((1, 100, 30), (2, 201, 3))
    table = {row.wid: row for row in top.rows(after, before, elapsed=2.0)}
    assert table[1].rate == 10.0
    assert table[2].rate is None, "a respawned worker has no rate yet"
    assert top.totals(list(table.values())).rate is None
    assert top.totals(top.rows(after, None, 1.0)).requests == 33
