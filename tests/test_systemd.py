"""systemd integration: sd_notify messages (READY, STATUS, STOPPING, WATCHDOG)
read from a fake NOTIFY_SOCKET, and socket activation with sockets a test
parent binds and passes as fds 3 and 4 with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TESTS_DIR, Server, ServerFactory, short_tmpdir
from support.uwsgi import request_vars, uwsgi_exchange, uwsgi_packet

pytestmark = pytest.mark.timeout(60)

APP = "apps.core:application"
WAIT = 15.0


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(short_tmpdir())
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class FakeNotifySocket:
    """A datagram socket standing for systemd's: every message with its sender's pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        # The kernel then attaches each sender's credentials (pid, uid, gid).
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.messages: list[tuple[int, dict[str, str]]] = []

    def close(self) -> None:
        self.sock.close()

    def _receive(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            return False
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append((pid, fields))
        return True

    def wait_for(self, key: str, count: int = 1, timeout: float = WAIT) -> list[dict[str, str]]:
        """Wait until ``count`` messages carrying ``key`` came; all of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [fields for _, fields in self.messages if key in fields]
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{count} x {key} not received; got {self.messages}")
            self._receive(remaining)

    def drain(self, window: float) -> None:
        """Take whatever arrives within ``window`` seconds."""
        deadline = time.monotonic() + window
        while (remaining := deadline - time.monotonic()) > 0:
            self._receive(remaining)


@pytest.fixture
def notify_socket(folder: Path) -> Iterator[FakeNotifySocket]:
    fake = FakeNotifySocket(folder / "notify")
    try:
        yield fake
    finally:
        fake.close()


def rwsgi(*args: str, workers: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rwsgi",
        *args,
        "--chdir",
        str(TESTS_DIR),
        "--workers",
        str(workers),
    ]


def test_ready_comes_once_every_worker_serves_and_stopping_on_sigterm(
    start_server: ServerFactory, notify_socket: FakeNotifySocket, folder: Path
) -> None:
    gate = folder / "gate"
    server = start_server.argv(
        rwsgi("apps.gated_import:application", "--lazy", "--http", "127.0.0.1:0", workers=2),
        workers=2,
        env={"NOTIFY_SOCKET": str(notify_socket.path), "RWSGI_TEST_GATE": str(gate)},
        wait=False,
    )
    server.wait_for_log("listening on http://")
    # The workers are still importing the app: no READY=1 yet.
    notify_socket.drain(0.5)
    assert not [fields for _, fields in notify_socket.messages if "READY" in fields]
    gate.touch()
    server.wait_ready()
    (ready,) = notify_socket.wait_for("READY")
    assert ready["READY"] == "1"
    assert (
        ready["STATUS"] == f"serving on http://127.0.0.1:{server.port}, 2 worker(s) x 1 thread(s)"
    )
    assert server.get("/hello").body == b"hello"
    server.send_signal(signal.SIGTERM)
    (stopping,) = notify_socket.wait_for("STOPPING")
    assert stopping["STOPPING"] == "1"
    assert "stopping" in stopping["STATUS"]
    assert server.wait(WAIT) == 0
    senders = {pid for pid, _ in notify_socket.messages}
    assert senders == {server.pid}, "only the master notifies"


def test_watchdog_pings_at_half_the_interval_from_the_master(
    start_server: ServerFactory, notify_socket: FakeNotifySocket
) -> None:
    env = {"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "400000"}
    os.environ.pop("WATCHDOG_PID", None)
    server = start_server(APP, workers=2, env=env)
    pings = notify_socket.wait_for("WATCHDOG", count=4)
    assert all(fields["WATCHDOG"] == "1" for fields in pings)
    notify_socket.wait_for("READY")
    server.stop()
    assert {pid for pid, _ in notify_socket.messages} == {server.pid}


def test_a_broken_notify_socket_is_logged_once_and_serving_goes_on(
    start_server: ServerFactory, folder: Path
) -> None:
    env = {"NOTIFY_SOCKET": str(folder / "nobody-listens"), "WATCHDOG_USEC": "100000"}
    server = start_server(APP, env=env)
    assert server.get("/hello").status == 200
    server.wait_for_log("cannot notify the service manager")
    server.stop()
    assert server.returncode == 0
    assert server.logs().count("cannot notify the service manager") == 1


# -- socket activation -------------------------------------------------------

# Moves the fds given in argv[1] to 3, 4..., sets LISTEN_* for its own pid and
# execs rwsgi with the rest of argv: what systemd does before starting a service.
ACTIVATE = """
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
names = sys.argv[2]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(fds))
if names:
    os.environ["LISTEN_FDNAMES"] = names
os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
"""


def activated(sockets: list[socket.socket], names: str, *args: str, workers: int = 1) -> list[str]:
    fds = ",".join(str(sock.fileno()) for sock in sockets)
    return [sys.executable, "-c", ACTIVATE, fds, names, *rwsgi(*args, workers=workers)[1:]]


def listening_tcp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def listening_unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def still_accepts(sock: socket.socket) -> None:
    """The parent's socket still listens: a connection to it is accepted."""
    address = sock.getsockname()
    family = sock.family
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(WAIT)
        client.connect(address)
        sock.settimeout(WAIT)
        accepted, _ = sock.accept()
        accepted.close()


def start(
    start_server: ServerFactory, argv: list[str], sockets: list[socket.socket], **kwargs: int
) -> Server:
    return start_server.argv(argv, pass_fds=tuple(sock.fileno() for sock in sockets), **kwargs)


def test_inherited_tcp_and_unix_sockets_are_served_and_left_open(
    start_server: ServerFactory, folder: Path
) -> None:
    tcp = listening_tcp()
    path = folder / "app.sock"
    unix = listening_unix(path)
    try:
        port = tcp.getsockname()[1]
        argv = activated([tcp, unix], "http:uwsgi", APP, workers=2)
        server = start(start_server, argv, [tcp, unix], listeners=1, workers=2)
        logs = server.logs()
        assert f"listening on http://127.0.0.1:{port} (from systemd)" in logs, logs
        assert f"listening on uwsgi+unix://{path} (from systemd)" in logs, logs
        assert server.port == port
        for _ in range(4):
            assert server.get("/hello").body == b"hello"
        response = uwsgi_exchange(str(path), uwsgi_packet(request_vars(path="/hello")))
        assert response.status == 200, response.raw[:300]
        assert response.body == b"hello"
        assert server.stop() == 0
        # Nothing shut the sockets down and the file is still there.
        assert path.exists()
        still_accepts(tcp)
        still_accepts(unix)
    finally:
        tcp.close()
        unix.close()


def test_an_inherited_socket_replaces_the_configured_listener_of_its_address(
    start_server: ServerFactory,
) -> None:
    tcp = listening_tcp()
    try:
        port = tcp.getsockname()[1]
        # Named uwsgi, configured as HTTP: the configuration says what it speaks.
        argv = activated([tcp], "uwsgi", APP, "--http", f"127.0.0.1:{port}")
        server = start(start_server, argv, [tcp], listeners=1)
        assert f"listening on http://127.0.0.1:{port} (from systemd)" in server.logs()
        assert server.logs().count("listening on") == 1
        assert server.get("/hello").body == b"hello"
        server.stop()
        still_accepts(tcp)
    finally:
        tcp.close()


def test_an_unnamed_inherited_socket_speaks_http(start_server: ServerFactory) -> None:
    tcp = listening_tcp()
    try:
        server = start(start_server, activated([tcp], "", APP), [tcp], listeners=1)
        assert server.get("/hello").body == b"hello"
    finally:
        tcp.close()


def test_a_passed_socket_that_does_not_listen_is_refused_by_fd_and_name(
    start_server: ServerFactory,
) -> None:
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagram.bind(("127.0.0.1", 0))
    try:
        server = start(start_server, activated([datagram], "web", APP), [datagram], wait=False)
        assert server.wait(WAIT) != 0
        logs = server.logs()
        assert "fd 3" in logs and '"web"' in logs and "not a stream socket" in logs, logs
        assert "listening on" not in logs
    finally:
        datagram.close()


def test_without_listen_fds_a_listener_is_still_required() -> None:
    import subprocess

    env = {key: value for key, value in os.environ.items() if not key.startswith("LISTEN_")}
    result = subprocess.run(
        rwsgi(APP), capture_output=True, text=True, env=env, cwd=TESTS_DIR, timeout=WAIT
    )
    assert result.returncode != 0
    assert "no listener" in result.stderr


def test_fds_meant_for_another_process_are_ignored(start_server: ServerFactory) -> None:
    tcp = listening_tcp()
    try:
        argv = activated([tcp], "http", APP, "--http", "127.0.0.1:0")
        # LISTEN_PID names the wrapper's parent, not rwsgi: the fd is not ours.
        argv[2] = ACTIVATE.replace("str(os.getpid())", "str(os.getppid())")
        server = start(start_server, argv, [tcp], listeners=1)
        assert "(from systemd)" not in server.logs()
        assert server.port != tcp.getsockname()[1]
        assert server.get("/hello").body == b"hello"
    finally:
        tcp.close()
