"""The server log (``--log-file``, ``--log-level``, ``--log-format``) and
SIGUSR1: master and worker lines, the app's ``logging`` records and its
``wsgi.errors`` lines in one place and one format; logrotate's rename then
SIGUSR1 moves every later line, access log included, to the new files."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

from conftest import ServerFactory, short_tmpdir, wait_until
from support.process import Server

TEXT_LINE = re.compile(r"^\[rwsgi \d+\] (DEBUG|INFO|WARNING|ERROR) ")


def get(sock_path: Path, target: str) -> bytes:
    """One HTTP/1.1 GET over the ``--http-socket`` unix listener; the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(str(sock_path))
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: log.test\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return answer


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def wait_for_text(path: Path, pattern: str, count: int = 1) -> str:
    """The file's text once ``pattern`` matches ``count`` of its lines (it is polled)."""
    regex = re.compile(pattern, re.MULTILINE)
    return wait_until(lambda: len(regex.findall(text := text_of(path))) >= count and text, 30)


def start_logging_to_files(
    start_server: ServerFactory, tmp: Path, *args: str, workers: int = 1
) -> Server:
    """A server on a unix HTTP socket whose log goes to ``tmp/server.log``,
    ready once every worker's ``ready`` line is in that file."""
    argv = [
        sys.executable, "-m", "rwsgi", "apps.logging_app",
        "--http-socket", str(tmp / "h.sock"),
        "--chdir", str(Path(__file__).parent),
        "--workers", str(workers),
        "--log-file", str(tmp / "server.log"),
        *args,
    ]  # fmt: skip
    server = start_server.argv(argv, listeners=0, workers=0, wait=False)
    wait_for_text(tmp / "server.log", r"worker \d+ \(pid \d+\) ready", count=workers)
    return server


def test_log_file_gets_master_worker_and_app_lines_in_one_format(
    start_server: ServerFactory,
) -> None:
    tmp = Path(short_tmpdir())
    server = start_logging_to_files(start_server, tmp)
    get(tmp / "h.sock", "/warn?m=careful")
    get(tmp / "h.sock", "/errors?m=broken+thing")
    log = tmp / "server.log"
    text = wait_for_text(log, r"wsgi\.errors: broken thing$")
    assert re.search(rf"^\[rwsgi {server.pid}\] INFO master pid {server.pid}", text, re.M), text
    assert re.search(r"^\[rwsgi \d+\] INFO worker 1 \(pid \d+\) ready$", text, re.M), text
    assert re.search(r"^\[rwsgi \d+\] WARNING apps\.logging_app: app says careful$", text, re.M)
    assert re.search(r"^\[rwsgi \d+\] ERROR wsgi\.errors: broken thing$", text, re.M), text
    # Nothing of it on stderr: fd 2 itself points at the file.
    assert "ready" not in server.logs()
    assert all(TEXT_LINE.match(line) for line in text.splitlines() if line.startswith("[")), text


def test_json_log_lines_parse(start_server: ServerFactory) -> None:
    tmp = Path(short_tmpdir())
    start_logging_to_files(start_server, tmp, "--log-format", "json")
    get(tmp / "h.sock", "/warn?m=j")
    text = wait_for_text(tmp / "server.log", r"app says j")
    records = [json.loads(line) for line in text.splitlines()]
    master = next(r for r in records if r["message"].startswith("master pid"))
    assert master["level"] == "INFO" and master["source"] == "rwsgi" and "worker" not in master
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$", master["time"])
    app = next(r for r in records if r["message"] == "app says j")
    assert app["level"] == "WARNING" and app["source"] == "apps.logging_app"
    assert app["worker"] == 1 and app["pid"] != master["pid"]


def test_log_level_warning_hides_info_lines(start_server: ServerFactory) -> None:
    tmp = Path(short_tmpdir())
    argv = [
        sys.executable, "-m", "rwsgi", "apps.logging_app",
        "--http-socket", str(tmp / "h.sock"),
        "--chdir", str(Path(__file__).parent),
        "--workers", "1",
        "--log-level", "warning",
    ]  # fmt: skip
    server = start_server.argv(argv, listeners=0, workers=0, wait=False)
    wait_until((tmp / "h.sock").exists, 30)
    get(tmp / "h.sock", "/info?m=hidden")
    get(tmp / "h.sock", "/warn?m=shown")
    server.wait_for_log(r"WARNING apps\.logging_app: app says shown")
    server.stop()
    assert " INFO " not in server.logs(), server.logs()
    assert "hidden" not in server.logs()


def test_sigusr1_reopens_the_log_file_and_the_access_log(start_server: ServerFactory) -> None:
    tmp = Path(short_tmpdir())
    log, access = tmp / "server.log", tmp / "access.log"
    server = start_logging_to_files(
        start_server, tmp, "--access-log", str(access), "--pidfile", str(tmp / "rwsgi.pid"),
        workers=2,
    )  # fmt: skip
    master = int((tmp / "rwsgi.pid").read_text())
    assert master == server.pid
    get(tmp / "h.sock", "/warn?m=before")
    wait_for_text(access, r"GET /warn\?m=before ")
    wait_for_text(log, r"app says before$")
    # logrotate's "create": move the files away, signal, expect new ones.
    old_log, old_access = tmp / "server.log.1", tmp / "access.log.1"
    os.rename(log, old_log)
    os.rename(access, old_access)
    os.kill(master, signal.SIGUSR1)
    wait_for_text(log, r"SIGUSR1: log files reopened$")
    wait_for_text(log, r"worker \d+: log files reopened$", count=2)
    before = (text_of(old_log), text_of(old_access))
    for index in range(4):  # both workers are likely to answer some
        get(tmp / "h.sock", f"/warn?m=after{index}")
    wait_for_text(access, r"GET /warn\?m=after\d ", count=4)
    wait_for_text(log, r"app says after\d$", count=4)
    assert (text_of(old_log), text_of(old_access)) == before
    assert "after" not in before[0] and "after" not in before[1]
    # logrotate's "copytruncate": emptied in place, the files are written
    # on from their new end (appending), with no hole before it.
    os.truncate(access, 0)
    os.truncate(log, 0)
    get(tmp / "h.sock", "/warn?m=truncated")
    assert wait_for_text(access, r"GET /warn\?m=truncated ").startswith("- - - [")
    assert wait_for_text(log, r"app says truncated$").startswith("[rwsgi ")
    server.stop()
    assert (text_of(old_log), text_of(old_access)) == before


def test_a_log_file_in_a_missing_folder_is_refused_naming_the_option() -> None:
    from support.process import run_to_exit

    code, err = run_to_exit(
        "apps.core", "--http", "127.0.0.1:0", "--log-file", "/no/such/folder/server.log"
    )
    assert code != 0
    assert "--log-file" in err and "does not exist" in err, err


def test_an_app_that_configured_logging_keeps_it() -> None:
    import logging

    from rwsgi.logs import install

    root = logging.getLogger()
    own = logging.NullHandler()
    root.addHandler(own)
    try:
        before = list(root.handlers)
        assert install() is False
        assert root.handlers == before
    finally:
        root.removeHandler(own)
