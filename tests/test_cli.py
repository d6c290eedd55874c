"""Configuration errors at the front doors: the CLI exits 2 naming the option,
``rwsgi.serve()`` raises TypeError/ValueError naming it, before anything is
bound or forked. Every command runs as a subprocess the fixtures stop."""

from __future__ import annotations

import json
import re
import sys
import textwrap

import pytest
from conftest import TESTS_DIR, Server

pytestmark = pytest.mark.timeout(60)

APP = "apps.environ:application"


def run(start_server, *args: str, timeout: float = 20.0) -> tuple[int, Server]:
    """Run ``python -m rwsgi ARGS`` to completion; the fixture stops it if it does not end."""
    server = start_server.argv([sys.executable, "-m", "rwsgi", *args], wait=False)
    try:
        code = server.wait(timeout)
    except Exception:
        pytest.fail(f"rwsgi {' '.join(args)} did not exit:\n{server.logs()}")
    server.stop()
    return code, server


BASE = [APP, "--http", "127.0.0.1:0", "--chdir", str(TESTS_DIR)]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--workers", "0"], "--workers"),
        (["--workers", "x"], "--workers"),
        (["--workers", "-3"], "--workers"),
        (["--threads", "0"], "--threads"),
        (["--threads", "1.5"], "--threads"),
        (["--http", "nonsense"], "--http"),
        (["--http", "127.0.0.1:99999"], "--http"),
        (["--http", "example.invalid:80"], "--http"),
        (["--http-socket", "unix:"], "--http-socket:"),
        (["--socket", "@"], "--socket:"),
        (["--backlog", "0"], "--backlog"),
        (["--graceful-timeout", "-1"], "--graceful-timeout"),
        (["--header-timeout", "soon"], "--header-timeout"),
        (["--body-timeout", "-2"], "--body-timeout"),
        # past the one-year cap a deadline could overflow the clock
        (["--graceful-timeout", "1e19"], "--graceful-timeout"),
        (["--graceful-timeout", "inf"], "--graceful-timeout"),
        (["--graceful-timeout", "nan"], "--graceful-timeout"),
        (["--header-timeout", "1e19"], "--header-timeout"),
        (["--body-timeout", "31536001"], "--body-timeout"),
        (["--max-body-size", "0"], "--max-body-size"),
        (["--chdir", "/nonexistent/rwsgi/dir"], "--chdir"),
        (["--post-buffering", "-1"], "--post-buffering"),
        (["--post-buffering", "1M"], "--post-buffering"),
        (["--spool-dir", "/nonexistent/rwsgi/spool"], "--spool-dir"),
        (["--spool-dir", str(TESTS_DIR / "conftest.py")], "--spool-dir"),
        (["--spool-dir", "/proc/self"], "--spool-dir"),  # a folder not even root can write
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_bad_argument_exits_2_naming_the_option(start_server, args: list[str], option: str) -> None:
    code, server = run(start_server, *BASE, *args)
    assert code == 2, server.logs()
    assert option in server.logs()
    assert "listening on" not in server.logs()


def test_spool_options_are_accepted(start_server, tmp_path) -> None:
    server = start_server(
        "apps.body:application", "--post-buffering", "0", "--spool-dir", str(tmp_path)
    )
    assert server.request("POST", "/?mode=hash", body=b"abc").json()["size"] == 3


def test_spool_dir_defaults_to_the_temp_folder_made_absolute(tmp_path, monkeypatch) -> None:
    import os
    import tempfile

    from rwsgi.options import normalize

    config = normalize({"http": "127.0.0.1:0"})
    assert config["spool_dir"] == os.path.abspath(tempfile.gettempdir())
    assert config["post_buffering"] == 1 << 20
    monkeypatch.chdir(tmp_path.parent)
    config = normalize({"http": "127.0.0.1:0", "spool_dir": tmp_path.name, "post_buffering": 0})
    # made absolute, so that --chdir does not move it
    assert os.path.isabs(config["spool_dir"]) and os.path.samefile(config["spool_dir"], tmp_path)
    assert config["post_buffering"] == 0


def test_missing_app_exits_2(start_server) -> None:
    code, server = run(start_server, "--http", "127.0.0.1:0")
    assert code == 2
    assert "usage" in server.logs().lower()


def test_missing_listener_exits_2(start_server) -> None:
    code, server = run(start_server, APP, "--chdir", str(TESTS_DIR))
    assert code == 2
    assert "--http" in server.logs()


def test_uwsgi_socket_on_a_public_address_is_refused(start_server) -> None:
    # the uwsgi protocol trusts its peer (REMOTE_ADDR, HTTPS...): never exposed by mistake
    code, server = run(start_server, *BASE, "--socket", "0.0.0.0:0")
    assert code == 2
    assert "--socket" in server.logs()
    assert "listening on" not in server.logs()


def test_port_in_use_fails_naming_the_address(start_server) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, server = run(
            start_server, APP, "--http", f"127.0.0.1:{port}", "--chdir", str(TESTS_DIR)
        )
    assert code != 0
    assert str(port) in server.logs()


def test_port_held_by_another_rwsgi_fails_too(start_server) -> None:
    # Each worker binds with SO_REUSEPORT, which would let a second server of
    # the same user share the port silently: it must be refused instead.
    first = start_server("apps.environ:application")
    code, second = run(
        start_server, APP, "--http", f"127.0.0.1:{first.port}", "--chdir", str(TESTS_DIR)
    )
    assert code != 0
    assert "in use" in second.logs()
    assert first.get("/").status == 200


def test_version(start_server) -> None:
    code, server = run(start_server, "--version")
    assert code == 0
    assert re.search(r"rwsgi \d+\.\d+\.\d+", server.stdout() + server.logs())


def test_help_lists_the_options(start_server) -> None:
    code, server = run(start_server, "--help")
    assert code == 0
    text = server.stdout()
    for flag in (
        "--http",
        "--workers",
        "--threads",
        "--backlog",
        "--graceful-timeout",
        "--header-timeout",
        "--body-timeout",
        "--max-body-size",
        "--post-buffering",
        "--spool-dir",
        "--chdir",
        "--pythonpath",
        "--preload",
        "--lazy",
    ):
        assert flag in text, flag


# -- rwsgi.serve() --------------------------------------------------------------

SERVE_SCRIPT = """
import json, sys
import rwsgi

def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]

target, kwargs = json.loads(sys.argv[1])
try:
    rwsgi.serve(app if target is None else target, **kwargs)
except BaseException as error:
    print(json.dumps({
        "type": type(error).__name__,
        "value_error": isinstance(error, ValueError),
        "type_error": isinstance(error, TypeError),
        "message": str(error),
    }), flush=True)
else:
    print(json.dumps({"type": None}), flush=True)
"""


@pytest.mark.parametrize(
    ("kwargs", "kind", "words"),
    [
        ({"workers": 0}, "value_error", ["workers"]),
        ({"workers": "2"}, "type_error", ["workers"]),
        ({"workers": 2.0}, "type_error", ["workers"]),
        ({"threads": True}, "type_error", ["threads"]),
        ({"threads": -1}, "value_error", ["threads"]),
        ({"bogus": 1}, "type_error", ["bogus"]),
        ({"http": "nonsense"}, "value_error", ["http"]),
        ({"http": 8000}, "type_error", ["http"]),
        ({"socket": "0.0.0.0:9000"}, "value_error", ["socket", "loopback"]),
        ({"socket": ""}, "value_error", ["socket"]),
        ({"graceful_timeout": -1}, "value_error", ["graceful_timeout"]),
        ({"graceful_timeout": 1e19}, "value_error", ["graceful_timeout", "one year"]),
        ({"graceful_timeout": float("inf")}, "value_error", ["graceful_timeout"]),
        ({"graceful_timeout": float("nan")}, "value_error", ["graceful_timeout"]),
        ({"header_timeout": 10**30}, "value_error", ["header_timeout"]),
        ({"body_timeout": 1e19}, "value_error", ["body_timeout"]),
        ({"header_timeout": "10"}, "type_error", ["header_timeout"]),
        ({"max_body_size": 0}, "value_error", ["max_body_size"]),
        ({"chdir": "/nonexistent/rwsgi/dir"}, "value_error", ["chdir"]),
        ({"post_buffering": -1}, "value_error", ["post_buffering"]),
        ({"post_buffering": "65536"}, "type_error", ["post_buffering"]),
        ({"spool_dir": "/nonexistent/rwsgi/spool"}, "value_error", ["spool_dir"]),
        ({"spool_dir": 5}, "type_error", ["spool_dir"]),
        ({"preload": "yes"}, "type_error", ["preload"]),
        ({"http": []}, "value_error", ["http"]),
    ],
)
def test_serve_rejects_bad_options(start_server, kwargs: dict, kind: str, words: list[str]) -> None:
    options = {"http": "127.0.0.1:0", **kwargs}
    server = start_server.argv(
        [sys.executable, "-c", SERVE_SCRIPT, json.dumps([None, options])], wait=False
    )
    try:
        server.wait(20)
    except Exception:
        pytest.fail(f"serve(**{options}) did not raise:\n{server.logs()}")
    server.stop()
    result = json.loads(server.stdout().strip().splitlines()[-1])
    assert result["type"] is not None, f"serve(**{options}) returned"
    assert result[kind], result
    for word in words:
        assert word in result["message"], result
    assert "listening on" not in server.logs()


def test_serve_rejects_a_non_callable_app(start_server) -> None:
    server = start_server.argv(
        [sys.executable, "-c", SERVE_SCRIPT, json.dumps([42, {"http": "127.0.0.1:0"}])], wait=False
    )
    server.wait(20)
    server.stop()
    result = json.loads(server.stdout().strip().splitlines()[-1])
    assert result["type_error"], result


def test_option_error_is_exported() -> None:
    code = textwrap.dedent(
        """
        import rwsgi
        assert issubclass(rwsgi.OptionError, ValueError)
        assert callable(rwsgi.serve)
        print(rwsgi.__version__)
        """
    )
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=TESTS_DIR
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*\n", result.stdout)
