"""--pidfile: written with the master's pid once listening, removed at exit,
refused when another running rwsgi holds it, replaced when stale."""

from __future__ import annotations

import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TESTS_DIR, ServerFactory, short_tmpdir
from support.process import run_to_exit

pytestmark = pytest.mark.timeout(60)

APP = "apps.core:application"


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(short_tmpdir())
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_written_with_the_master_pid_and_removed_at_exit(
    start_server: ServerFactory, folder: Path
) -> None:
    pidfile = folder / "app.pid"
    server = start_server(APP, "--pidfile", str(pidfile), workers=2)
    assert pidfile.read_text() == f"{server.pid}\n"
    assert stat.S_IMODE(pidfile.stat().st_mode) == 0o644
    assert sorted(path.name for path in folder.iterdir()) == ["app.pid"], "no temporary left"
    assert server.stop() == 0
    assert not pidfile.exists()


def test_a_relative_path_is_taken_from_the_starting_folder(
    start_server: ServerFactory, folder: Path
) -> None:
    # The server starts in tests/ and --chdir moves it to `folder` before it writes.
    name = f"rwsgi-test-{uuid.uuid4().hex}.pid"
    expected = TESTS_DIR / name
    try:
        server = start_server(
            APP, "--pidfile", name, "--chdir", str(folder), "--pythonpath", str(TESTS_DIR)
        )
        assert expected.read_text() == f"{server.pid}\n"
        assert not (folder / name).exists()
        server.stop()
        assert not expected.exists()
    finally:
        expected.unlink(missing_ok=True)


def test_a_second_server_with_the_same_pidfile_refuses(
    start_server: ServerFactory, folder: Path
) -> None:
    pidfile = folder / "app.pid"
    first = start_server(APP, "--pidfile", str(pidfile))
    code, logs = run_to_exit(APP, "--http", "127.0.0.1:0", "--pidfile", str(pidfile))
    assert code != 0
    assert "--pidfile" in logs and str(pidfile) in logs and str(first.pid) in logs, logs
    assert "listening on" not in logs and "ready" not in logs
    assert pidfile.read_text() == f"{first.pid}\n", "the first server keeps its file"
    assert first.get("/hello").status == 200


def test_a_stale_pidfile_is_replaced(start_server: ServerFactory, folder: Path) -> None:
    pidfile = folder / "app.pid"
    dead = subprocess.Popen(["true"])
    dead.wait()
    pidfile.write_text(f"{dead.pid}\n")
    server = start_server(APP, "--pidfile", str(pidfile))
    assert pidfile.read_text() == f"{server.pid}\n"
    assert "replacing a stale pid file" in server.logs()


def test_a_pidfile_naming_another_program_is_replaced(
    start_server: ServerFactory, folder: Path
) -> None:
    pidfile = folder / "app.pid"
    other = subprocess.Popen(["sleep", "30"])
    try:
        pidfile.write_text(f"{other.pid}\n")
        server = start_server(APP, "--pidfile", str(pidfile))
        assert pidfile.read_text() == f"{server.pid}\n"
        assert f"pid {other.pid} is not an rwsgi" in server.logs()
    finally:
        other.kill()
        other.wait()


def test_an_unwritable_place_is_an_error_naming_the_option_before_forking() -> None:
    # /proc exists but takes no new file, even for root.
    code, logs = run_to_exit(APP, "--http", "127.0.0.1:0", "--pidfile", "/proc/rwsgi-test.pid")
    assert code != 0
    assert "cannot write --pidfile /proc/rwsgi-test.pid" in logs, logs
    assert "ready" not in logs


def test_a_missing_folder_is_refused_by_the_option_table(folder: Path) -> None:
    code, logs = run_to_exit(
        APP, "--http", "127.0.0.1:0", "--pidfile", str(folder / "no-such" / "app.pid")
    )
    assert code != 0
    assert "--pidfile" in logs and "does not exist" in logs, logs
