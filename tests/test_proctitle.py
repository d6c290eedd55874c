"""Process titles: ``rwsgi: master [APP]``, ``rwsgi: loader GENERATION [APP]``
and ``rwsgi: worker N [APP]`` in
/proc/PID/cmdline (what ps aux shows) and, cut to 15 bytes, /proc/PID/comm."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ServerFactory, _is_rwsgi_process

pytestmark = pytest.mark.timeout(60)

APP = "apps.core:application"


def cmdline(pid: int) -> bytes:
    """The argument area as the kernel shows it, without the NUL padding."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0")


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().rstrip("\n")


def test_master_and_workers_carry_their_titles(start_server: ServerFactory) -> None:
    server = start_server(APP, workers=2)
    assert cmdline(server.pid) == f"rwsgi: master [{APP}]".encode()
    assert comm(server.pid) == "rwsgi: master ["
    for number, pid in server.worker_pids.items():
        assert cmdline(pid) == f"rwsgi: worker {number} [{APP}]".encode()
        assert comm(pid) == f"rwsgi: worker {number}"
        assert _is_rwsgi_process(pid)
    assert _is_rwsgi_process(server.pid)
    assert server.get("/hello").status == 200
    loader = int(re.findall(r"generation 1: loader pid (\d+)", server.logs())[0])
    assert cmdline(loader) == f"rwsgi: loader 1 [{APP}]".encode()


def test_a_respawned_worker_gets_its_title(start_server: ServerFactory) -> None:
    import os
    import signal

    server = start_server(APP, workers=1)
    old = server.worker_pids[1]
    os.kill(old, signal.SIGKILL)
    new = server.wait_for_respawn(1, old, timeout=15)
    assert cmdline(new) == f"rwsgi: worker 1 [{APP}]".encode()
