"""``--uid`` / ``--gid``: the app's processes run as the given user and group
while the master, started as root, binds, supervises and cleans up.

The app is copied into a folder the switched-to user can read (a checkout may
sit in a folder private to root) and the server is started as root, as an
operator would; a machine where that cannot happen skips these tests."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import rwsgi
from conftest import _pid_alive, short_tmpdir, wait_until
from rwsgi.options import OptionError, normalize
from support.process import Server, ServerFactory, run_to_exit

PROBE = "import json, sys; print(json.__file__, sys.version_info >= (3, 10))"

HERE = Path(__file__).resolve().parent

try:
    NOBODY: pwd.struct_passwd | None = pwd.getpwnam("nobody")
except KeyError:  # pragma: no cover - every Debian has it
    NOBODY = None


def _readable_by_anyone(path: Path) -> bool:
    """Whether a user with no rights of its own can read ``path`` (every folder above it too)."""
    path = path.resolve()
    if not path.stat().st_mode & stat.S_IROTH:
        return False
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in path.parents)


def _interpreter() -> str | None:
    """A Python >= 3.10 whose standard library the switched-to user can read:
    this one, else the system's (a pyenv build under /root is private to root)."""
    candidates = [sys.executable, "/usr/bin/python3"]
    for candidate in candidates:
        if not os.path.exists(candidate):
            continue
        probe = subprocess.run(
            [candidate, "-c", PROBE],
            capture_output=True,
            text=True,
            check=False,
        )
        words = probe.stdout.split()
        if probe.returncode == 0 and words[1:] == ["True"] and _readable_by_anyone(Path(words[0])):
            return candidate
    return None


PYTHON = _interpreter() if os.geteuid() == 0 else None
needs_root = pytest.mark.skipif(
    PYTHON is None or NOBODY is None,
    reason="needs root, a 'nobody' user and a Python whose standard library 'nobody' can read",
)


@pytest.fixture
def app_folder() -> Iterator[Path]:
    """A folder anyone can read, holding the app, the socket and the pidfile."""
    folder = Path(short_tmpdir())
    folder.chmod(0o755)
    shutil.copy(HERE / "run_as" / "whoami.py", folder / "whoami.py")
    (folder / "whoami.py").chmod(0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start(factory: ServerFactory, folder: Path, *args: str, workers: int = 2) -> Server:
    """rwsgi as root under ``PYTHON``, importing this checkout's build (already
    loaded by the master when the workers switch user)."""
    assert PYTHON is not None
    argv = [PYTHON, "-m", "rwsgi", "whoami", "--http", "127.0.0.1:0", "--chdir", str(folder)]
    argv += ["--pidfile", str(folder / "master.pid"), "--workers", str(workers), *args]
    package = Path(rwsgi.__file__).resolve().parent.parent
    return factory.argv(argv, workers=workers, env={"PYTHONPATH": str(package)})


def ids(pid: int) -> dict[str, list[int]]:
    """The real/effective/saved/fs uids and gids and the groups of ``pid``, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            fields[key] = [int(part) for part in value.split()]
    return fields


def unix_get(path: Path) -> bytes:
    client = socket.socket(socket.AF_UNIX)
    with client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    return data


@needs_root
def test_workers_run_as_the_user_and_the_master_stays_root(
    start_server: ServerFactory, app_folder: Path
) -> None:
    assert NOBODY is not None
    sock = app_folder / "app.sock"
    server = start(start_server, app_folder, "--uid", "nobody", "--http-socket", str(sock))
    answer = server.get_json("/")
    assert (answer["uid"], answer["gid"]) == (NOBODY.pw_uid, NOBODY.pw_gid), (
        "the user, and its primary group by default"
    )
    assert 0 not in answer["groups"], "root's groups are dropped"
    for pid in server.worker_pids.values():
        status = ids(pid)
        assert status["Uid"] == [NOBODY.pw_uid] * 4, "real, effective, saved and fs uid alike"
        assert status["Gid"] == [NOBODY.pw_gid] * 4
        assert 0 not in status["Groups"]
    assert ids(server.pid)["Uid"][0] == 0, "the master stays root"
    assert f'"uid": {NOBODY.pw_uid}'.encode() in unix_get(sock)
    assert (app_folder / "master.pid").read_text().strip() == str(server.pid)
    assert server.stop() == 0
    assert not (app_folder / "master.pid").exists(), "the master removed its pidfile"
    assert not sock.exists(), "and its unix socket"


@needs_root
def test_a_reload_switches_the_new_generation_too(
    start_server: ServerFactory, app_folder: Path
) -> None:
    assert NOBODY is not None
    group = (
        grp.getgrnam("daemon").gr_gid if "daemon" in {g.gr_name for g in grp.getgrall()} else None
    )
    gid_args = ("--gid", "daemon") if group is not None else ()
    server = start(start_server, app_folder, "--uid", "nobody", *gid_args, workers=1)
    old = set(server.worker_pids.values())
    server.send_signal(signal.SIGHUP)
    # The old worker answers until its replacement is ready, then retires.
    wait_until(lambda: not any(_pid_alive(pid) for pid in old), timeout=30)
    answer = server.get_json("/")
    assert answer["pid"] not in old
    assert answer["uid"] == NOBODY.pw_uid
    assert answer["gid"] == (NOBODY.pw_gid if group is None else group)


def test_an_unknown_user_or_group_is_refused_naming_the_option() -> None:
    with pytest.raises(OptionError, match=r"^uid: no user named 'no-such-user-here'"):
        normalize({"http": ["127.0.0.1:0"], "uid": "no-such-user-here"})
    with pytest.raises(OptionError, match=r"^gid: no group named 'no-such-group-here'"):
        normalize({"http": ["127.0.0.1:0"], "gid": "no-such-group-here"})
    status, logs = run_to_exit("whoami", "--http", "127.0.0.1:0", "--uid", "no-such-user-here")
    assert status == 2
    assert "no user named 'no-such-user-here'" in logs


def test_switching_without_root_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 1000)
    with pytest.raises(
        OptionError, match=r"uid: switching to user '0' needs the server to start as root"
    ):
        normalize({"http": ["127.0.0.1:0"], "uid": "0"})
    config = normalize({"http": ["127.0.0.1:0"], "uid": "1000", "gid": 1000})
    assert (config["uid"], config["gid"]) == (1000, 1000)


@needs_root
def test_an_access_log_the_user_cannot_write_stops_the_start(
    start_server: ServerFactory, app_folder: Path
) -> None:
    private = Path(short_tmpdir())  # 0700, root's: nobody cannot create files in it
    try:
        log = private / "access.log"
        assert PYTHON is not None
        argv = [PYTHON, "-m", "rwsgi", "whoami", "--http", "127.0.0.1:0", "--chdir"]
        argv += [str(app_folder), "--uid", "nobody", "--access-log", str(log)]
        package = Path(rwsgi.__file__).resolve().parent.parent
        server = start_server.argv(argv, env={"PYTHONPATH": str(package)}, wait=False)
        assert server.wait(timeout=30) != 0
        assert f"--access-log {log}: the --uid/--gid user cannot open it" in server.logs()
    finally:
        shutil.rmtree(private, ignore_errors=True)


@needs_root
def test_a_user_number_without_an_entry_needs_a_group(
    start_server: ServerFactory, app_folder: Path
) -> None:
    unknown = next(
        uid for uid in range(40_000, 60_000) if uid not in {u.pw_uid for u in pwd.getpwall()}
    )
    assert PYTHON is not None
    argv = [PYTHON, "-m", "rwsgi", "whoami", "--http", "127.0.0.1:0", "--chdir"]
    argv += [str(app_folder), "--uid", str(unknown)]
    package = Path(rwsgi.__file__).resolve().parent.parent
    server = start_server.argv(argv, env={"PYTHONPATH": str(package)}, wait=False)
    assert server.wait(timeout=30) != 0
    assert f"find the primary group of user {unknown}" in server.logs()
    assert "give --gid" in server.logs()


@needs_root
def test_a_server_started_as_the_user_itself_accepts_its_own_uid(app_folder: Path) -> None:
    # An ini file naming the user systemd already runs it as: nothing to switch.
    assert NOBODY is not None and PYTHON is not None
    package = app_folder / "pkg"
    shutil.copytree(Path(rwsgi.__file__).resolve().parent, package / "rwsgi")
    for path in [package, *package.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    become = (
        "import os, sys; os.setgroups([]); os.setgid(int(sys.argv[1])); "
        "os.setuid(int(sys.argv[2])); os.execv(sys.argv[3], sys.argv[3:])"
    )
    argv = [PYTHON, "-c", become, str(NOBODY.pw_gid), str(NOBODY.pw_uid)]
    argv += [PYTHON, "-m", "rwsgi", "whoami", "--http", "127.0.0.1:0", "--chdir", str(app_folder)]
    argv += ["--uid", "nobody", "--gid", str(NOBODY.pw_gid)]
    server = Server(argv, env={"PYTHONPATH": str(package)})
    try:
        answer = server.get_json("/")
        assert (answer["uid"], answer["gid"]) == (NOBODY.pw_uid, NOBODY.pw_gid)
    finally:
        server.stop()
