"""Unix socket listeners and listener mixes: --socket/--http-socket on paths and
abstract names, --chmod-socket, --chown-socket, stale and live socket files,
non-socket paths, removal at a clean exit, and every listener kind at once."""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import uuid
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
    uwsgi_packet,
)

pytestmark = pytest.mark.timeout(60)

APP = "apps.uwsgi_apps:application"


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(short_tmpdir())
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def servers() -> Iterator[list[Rwsgi]]:
    """Servers a test starts; all stopped at teardown."""
    started: list[Rwsgi] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def uwsgi_env(address: str | tuple[str, int], path: str = "/env") -> dict:
    response = uwsgi_exchange(address, uwsgi_packet(request_vars(path=path)))
    assert response.status == 200, response.raw[:300]
    return json.loads(response.body)


def http_over_unix(path: str, target: str = "/env") -> tuple[int, dict]:
    """One HTTP/1.1 request with Connection: close on a unix (or abstract) socket."""
    with connect(path) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: unix\r\nConnection: close\r\n\r\n".encode("ascii")
        )
        response = parse_response(read_until_closed(sock))
    return response.status, json.loads(response.body)


def test_uwsgi_on_unix_socket_banner_mode_and_removal(sockdir: Path, servers) -> None:
    path = sockdir / "app.sock"
    server = Rwsgi(APP, "--socket", str(path))
    servers.append(server)
    assert server.listeners == [f"uwsgi+unix://{path}"]
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert uwsgi_env(str(path))["environ"]["PATH_INFO"] == "/env"
    assert server.stop(signal.SIGTERM) == 0
    assert not path.exists(), "the socket file was left behind after SIGTERM"


def test_http_on_unix_socket(sockdir: Path, servers) -> None:
    path = sockdir / "http.sock"
    server = Rwsgi(APP, "--http-socket", str(path))
    servers.append(server)
    assert server.listeners == [f"http+unix://{path}"]
    status, report = http_over_unix(str(path), "/env?q=1")
    assert status == 200
    assert report["environ"]["PATH_INFO"] == "/env"
    assert report["environ"]["QUERY_STRING"] == "q=1"
    for key in ("SERVER_NAME", "SERVER_PORT", "REQUEST_METHOD", "SERVER_PROTOCOL"):
        assert isinstance(report["environ"].get(key), str), key  # PEP 3333 requires them
    assert server.stop() == 0
    assert not path.exists()


def test_http_socket_on_tcp(servers) -> None:
    server = Rwsgi(APP, "--http-socket", "127.0.0.1:0")
    servers.append(server)
    host, port = server.tcp("http")
    assert host == "127.0.0.1" and port > 0
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/env")
        response = conn.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["environ"]["REMOTE_ADDR"] == "127.0.0.1"
    finally:
        conn.close()


def test_every_listener_kind_in_one_server(sockdir: Path, servers) -> None:
    uwsgi_sock, http_sock = sockdir / "u.sock", sockdir / "h.sock"
    server = Rwsgi(
        APP,
        "--socket",
        str(uwsgi_sock),
        "--socket",
        "127.0.0.1:0",
        "--http-socket",
        str(http_sock),
        "--http-socket",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        workers=2,
    )
    servers.append(server)
    assert f"uwsgi+unix://{uwsgi_sock}" in server.listeners
    assert f"http+unix://{http_sock}" in server.listeners
    assert sum(url.startswith("uwsgi://127.0.0.1:") for url in server.listeners) == 1
    assert sum(url.startswith("http://127.0.0.1:") for url in server.listeners) == 2
    assert len(server.worker_pids) == 2
    assert uwsgi_env(str(uwsgi_sock))["environ"]["PATH_INFO"] == "/env"
    assert uwsgi_env(server.tcp("uwsgi"))["environ"]["PATH_INFO"] == "/env"
    assert http_over_unix(str(http_sock))[0] == 200
    for index in range(2):
        host, port = server.tcp("http", index)
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request("GET", "/env")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
        finally:
            conn.close()
    assert server.stop() == 0
    assert not uwsgi_sock.exists() and not http_sock.exists()


def test_chmod_socket(sockdir: Path, servers) -> None:
    path, http_path = sockdir / "m.sock", sockdir / "h.sock"
    servers.append(
        Rwsgi(APP, "--socket", str(path), "--http-socket", str(http_path), "--chmod-socket", "660")
    )
    assert stat.S_IMODE(path.lstat().st_mode) == 0o660
    assert stat.S_IMODE(http_path.lstat().st_mode) == 0o660
    assert uwsgi_env(str(path))["environ"]["PATH_INFO"] == "/env"
    assert http_over_unix(str(http_path))[0] == 200


def test_chmod_socket_alone_means_666(sockdir: Path, servers) -> None:
    path = sockdir / "m.sock"
    servers.append(Rwsgi(APP, "--socket", str(path), "--chmod-socket"))
    assert stat.S_IMODE(path.lstat().st_mode) == 0o666


@pytest.mark.parametrize("form", ["numeric", "names", "user-only", "group-only"])
def test_chown_socket_to_current_ids(sockdir: Path, servers, form: str) -> None:
    uid, gid = os.getuid(), os.getgid()
    user, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
    owner = {
        "numeric": f"{uid}:{gid}",
        "names": f"{user}:{group}",
        "user-only": user,
        "group-only": f":{group}",
    }[form]
    path = sockdir / "o.sock"
    servers.append(Rwsgi(APP, "--socket", str(path), "--chown-socket", owner))
    info = path.lstat()
    assert (info.st_uid, info.st_gid) == (uid, gid)
    assert uwsgi_env(str(path))["environ"]["PATH_INFO"] == "/env"


@pytest.mark.parametrize(
    ("owner", "missing"),
    [
        ("rwsgi-no-such-user-x9", "rwsgi-no-such-user-x9"),
        ("rwsgi-no-such-user-x9:root", "rwsgi-no-such-user-x9"),
        ("root:rwsgi-no-such-group-x9", "rwsgi-no-such-group-x9"),
    ],
)
def test_chown_socket_unknown_user_exits_2(sockdir: Path, owner: str, missing: str) -> None:
    path = sockdir / "o.sock"
    code, log = run_to_exit(APP, "--socket", str(path), "--chown-socket", owner)
    assert code == 2, log
    assert "chown-socket" in log
    assert missing in log
    assert not path.exists()


def test_stale_socket_file_is_replaced(sockdir: Path, servers) -> None:
    path = sockdir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # bound, then closed without unlinking, as after a crash
    assert stat.S_ISSOCK(path.lstat().st_mode)
    with pytest.raises(ConnectionRefusedError):
        connect(str(path)).close()
    server = Rwsgi(APP, "--socket", str(path))
    servers.append(server)
    assert uwsgi_env(str(path))["environ"]["PATH_INFO"] == "/env"


def test_live_socket_is_not_stolen(sockdir: Path) -> None:
    path = sockdir / "live.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen(8)
        inode = path.lstat().st_ino
        code, log = run_to_exit(APP, "--socket", str(path))
        assert code != 0, log
        assert "another server is listening" in log, log
        assert str(path) in log
        assert path.lstat().st_ino == inode, "the live server's socket file was replaced"
        # Still ours: a client reaches the original listener.
        with connect(str(path)):
            accepted, _ = live.accept()
            accepted.close()


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_path_that_is_not_a_socket_is_refused(sockdir: Path, kind: str) -> None:
    path = sockdir / "not-a-socket"
    if kind == "file":
        path.write_bytes(b"precious data")
    else:
        path.mkdir()
    code, log = run_to_exit(APP, "--http-socket", str(path))
    assert code != 0, log
    assert "not a socket" in log, log
    if kind == "file":
        assert path.read_bytes() == b"precious data"
    else:
        assert path.is_dir()


def test_socket_file_replaced_by_someone_else_is_not_removed(sockdir: Path, servers) -> None:
    path = sockdir / "r.sock"
    server = Rwsgi(APP, "--socket", str(path))
    servers.append(server)
    path.unlink()
    path.write_text("someone else's file")
    assert server.stop() == 0
    assert path.read_text() == "someone else's file"


def test_abstract_sockets(servers) -> None:
    name = f"rwsgi-test-{uuid.uuid4().hex[:12]}"
    server = Rwsgi(APP, "--socket", f"@{name}", "--http-socket", f"@{name}-http")
    servers.append(server)
    assert f"uwsgi+unix://@{name}" in server.listeners
    assert f"http+unix://@{name}-http" in server.listeners
    assert uwsgi_env("\0" + name)["environ"]["PATH_INFO"] == "/env"
    status, report = http_over_unix("\0" + name + "-http")
    assert status == 200 and report["environ"]["PATH_INFO"] == "/env"
    assert server.stop() == 0


def test_unix_socket_path_with_unix_prefix(sockdir: Path, servers) -> None:
    path = sockdir / "p.sock"
    server = Rwsgi(APP, "--socket", f"unix:{path}")
    servers.append(server)
    assert server.listeners == [f"uwsgi+unix://{path}"]
    assert uwsgi_env(str(path))["environ"]["PATH_INFO"] == "/env"
