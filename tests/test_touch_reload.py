"""``--touch-reload FILE`` (uWSGI's ``touch-reload``): touching the file loads
the code again as SIGHUP does, the sockets staying open."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import ServerFactory, short_tmpdir
from rwsgi.ini import read_ini
from support.transports import LISTENER_KINDS


def touch_later(path: Path) -> None:
    """Move the file's mtime surely past what the watcher saw."""
    later = path.stat().st_mtime_ns + 2_000_000_000
    os.utime(path, ns=(later, later))


def test_touching_the_file_reloads(start_server: ServerFactory) -> None:
    trigger = Path(short_tmpdir()) / "reload.trigger"
    trigger.write_text("")
    server = start_server.mixed(
        "apps.core", "--http", "127.0.0.1:0", "--touch-reload", str(trigger)
    )
    direct = LISTENER_KINDS["direct"](server)
    assert direct.request("GET", "/echo").status == 200
    touch_later(trigger)
    server.wait_for_log(r"reload\.trigger changed, reloading", timeout=15)
    server.wait_for_log(r"generation 2: app loaded", timeout=15)
    server.wait_for_log(r"worker 1 \(pid \d+\) ready", timeout=15, count=2)
    assert direct.request("GET", "/echo").status == 200


def test_a_trigger_created_later_reloads_too(start_server: ServerFactory) -> None:
    trigger = Path(short_tmpdir()) / "created.trigger"
    server = start_server.mixed(
        "apps.core", "--http", "127.0.0.1:0", "--touch-reload", str(trigger)
    )
    trigger.write_text("")
    server.wait_for_log(r"created\.trigger changed, reloading", timeout=15)


def test_the_ini_key_sets_the_option(tmp_path: Path) -> None:
    ini = tmp_path / "app.ini"
    ini.write_text("[uwsgi]\ntouch-reload = %dreload.txt\n")
    assert read_ini(ini).options == {"touch_reload": [str(tmp_path / "reload.txt")]}
