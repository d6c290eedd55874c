"""Options from a config file (rwsgi.toml, or [tool.rwsgi] in pyproject.toml),
the environment (RWSGI_<NAME>) and the command line, in that order of
precedence, and ``--print-config`` saying where each value came from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TESTS_DIR, ServerFactory


def rwsgi(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m rwsgi ARGS`` in ``cwd``, with the test apps importable."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RWSGI_")}
    full_env.update(env, PYTHONPATH=str(TESTS_DIR))
    return subprocess.run(
        [sys.executable, "-m", "rwsgi", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def origins(output: str) -> dict[str, tuple[str, str]]:
    """``name = value  (origin)`` lines as name -> (value, origin)."""
    found = {}
    for line in output.splitlines():
        if line.startswith("#"):
            continue
        setting, _, origin = line.rpartition("  (")
        name, _, value = setting.partition(" = ")
        found[name.strip()] = (value.strip(), origin.rstrip(")"))
    return found


def test_cli_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    (tmp_path / "rwsgi.toml").write_text(
        'app = "apps.core"\nworkers = 3\nthreads = 2\nhttp = ["127.0.0.1:0"]\nmax-requests = 50\n'
    )
    done = rwsgi(tmp_path, "--threads", "4", "--print-config", RWSGI_WORKERS="2")
    assert done.returncode == 0, done.stderr
    seen = origins(done.stdout)
    toml = str(tmp_path / "rwsgi.toml")
    assert seen["app"] == ("'apps.core'", f"{toml}:1")
    assert seen["workers"] == ("2", "env RWSGI_WORKERS")
    assert seen["threads"] == ("4", "cli")
    assert seen["max_requests"] == ("50", f"{toml}:5")
    assert seen["backlog"] == ("1024", "default")


def test_pyproject_tool_table_is_found_from_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "site"\n\n[tool.rwsgi]\napp = "apps.core"\nhttp = ["127.0.0.1:0"]\n'
    )
    (tmp_path / "sub").mkdir()
    done = rwsgi(tmp_path / "sub", "--print-config")
    assert done.returncode == 0, done.stderr
    assert origins(done.stdout)["http"][1] == f"{tmp_path / 'pyproject.toml'}:6"


def test_a_pyproject_without_the_table_sets_nothing(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "site"\n')
    done = rwsgi(tmp_path, "apps.core", "--http", "127.0.0.1:0", "--print-config")
    assert done.returncode == 0, done.stderr
    assert all(origin in ("cli", "default") for _, origin in origins(done.stdout).values())


def test_environment_lists_and_booleans(tmp_path: Path) -> None:
    done = rwsgi(
        tmp_path,
        "apps.core",
        "--print-config",
        RWSGI_HTTP="127.0.0.1:0, [::1]:0",
        RWSGI_STATIC_STRICT="yes",
        RWSGI_UNKNOWN_THING="1",
    )
    assert done.returncode == 0, done.stderr
    seen = origins(done.stdout)
    assert seen["http"] == ("['127.0.0.1:0', '[::1]:0']", "env RWSGI_HTTP")
    assert seen["static_strict"] == ("True", "env RWSGI_STATIC_STRICT")
    assert "# ignored: RWSGI_UNKNOWN_THING names no option" in done.stdout


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('workers = "x"\n', {}, "rwsgi.toml:1: workers must be an int, not str"),
        ("wrkers = 2\n", {}, "rwsgi.toml:1: unknown option 'wrkers'"),
        ("workers = [\n", {}, "rwsgi.toml: "),
        ("", {"RWSGI_WORKERS": "four"}, "env RWSGI_WORKERS: workers: 'four' is not a valid int"),
        ("", {"RWSGI_WORKERS": "0"}, "env RWSGI_WORKERS: workers must be at least 1, got 0"),
    ],
)
def test_bad_values_name_where_they_were_written(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "rwsgi.toml").write_text(toml)
    done = rwsgi(tmp_path, "apps.core", "--http", "127.0.0.1:0", **env)
    assert done.returncode == 2
    assert message in done.stderr, done.stderr


def test_config_none_reads_no_file(tmp_path: Path) -> None:
    (tmp_path / "rwsgi.toml").write_text("wrkers = 2\n")
    done = rwsgi(
        tmp_path, "apps.core", "--http", "127.0.0.1:0", "--config", "none", "--print-config"
    )
    assert done.returncode == 0, done.stderr


def test_a_server_takes_its_options_from_the_environment(start_server: ServerFactory) -> None:
    # The fixture passes --threads 1 on the command line: that one wins.
    server = start_server("apps.core", env={"RWSGI_BACKLOG": "77", "RWSGI_THREADS": "3"})
    assert "1 worker(s) x 1 thread(s)" in server.logs()
    assert "backlog 77" in server.logs()
