"""Development autoreload: ``rwsgi.autoreload``'s Watcher and load error page
in this process, then a plain WSGI app served with ``--autoreload 0.5`` whose
files (copied to a tmp folder, so edits never touch the repo) are edited
while it serves: a change is served, a syntax error is a 500 page with the
traceback, and the fix is served again."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, ServerFactory, wait_until
from rwsgi.autoreload import ErrorApp, Watcher, failed_files, load_for_development
from rwsgi.loader import load_app

RELOAD_WAIT = 60.0

APP_SOURCE = '''\
"""A plain WSGI app whose text lives in a helper module."""

import helper


def application(environ, start_response):
    body = helper.TEXT.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def write(path: Path, text: str) -> None:
    """Rewrite ``path`` with a modification time surely different from before
    (two writes in one mtime tick would otherwise look unchanged)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    later = max(before + 2_000_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(later, later))


def helper_source(text: str) -> str:
    return f"TEXT = {text!r}\n"


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder importable as the app's: ``plainapp.py`` and ``helper.py``."""
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "plainapp.py").write_text(APP_SOURCE, encoding="utf-8")
    write(folder / "helper.py", helper_source("v0"))
    sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for name in ("plainapp", "helper", "broken_here"):
            sys.modules.pop(name, None)


def same(a: str, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


# -- in this process ----------------------------------------------------------


def test_watcher_sees_an_imported_module_change(app_dir: Path) -> None:
    load_app("plainapp:application")
    watcher = Watcher()
    helper = app_dir / "helper.py"
    assert any(same(path, helper) for path in watcher.watched())
    assert watcher.changed() is None
    write(helper, helper_source("v1"))
    changed = watcher.changed()
    assert changed is not None and same(changed, helper)
    assert watcher.changed() is None  # reported once


def test_a_failed_load_is_a_500_page_and_its_file_is_watched(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = app_dir / "broken_here.py"
    write(broken, "def application(environ, start_response):\n    return [b'<' +\n")
    app = load_for_development(lambda: load_app("broken_here:application"))()
    assert isinstance(app, ErrorApp)
    assert "SyntaxError" in capsys.readouterr().err
    assert any(same(path, broken) for path in failed_files())

    statuses: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(app({}, lambda status, headers: statuses.append((status, headers))))
    assert statuses[0][0] == "500 Internal Server Error"
    assert ("Content-Type", "text/html; charset=utf-8") in statuses[0][1]
    text = body.decode()
    assert "SyntaxError" in text and "broken_here.py" in text
    assert "[b&#x27;&lt;&#x27; +" in text  # the source line, escaped
    assert "<pre>" in text

    watcher = Watcher()
    assert any(same(path, broken) for path in watcher.watched())
    write(broken, "def application(environ, start_response):\n    return [b'ok']\n")
    changed = watcher.changed()
    assert changed is not None and same(changed, broken)


def test_an_import_error_names_the_importing_file(app_dir: Path) -> None:
    importer = app_dir / "broken_here.py"
    write(importer, "import no_such_module_for_rwsgi\n")
    app = load_for_development(lambda: load_app("broken_here:application"))()
    assert isinstance(app, ErrorApp)
    assert b"ModuleNotFoundError" in app.body
    assert any(same(path, importer) for path in failed_files())


def test_a_working_load_is_returned_as_it_is(app_dir: Path) -> None:
    app = load_for_development(lambda: load_app("plainapp:application"))()
    assert app is sys.modules["plainapp"].application


# -- served ------------------------------------------------------------------


def text_of(server: Server, path: str = "/") -> tuple[int, str]:
    response = server.get(path)
    return response.status, response.body.decode("utf-8", "replace")


def serve_plain(start_server: ServerFactory, folder: Path) -> Server:
    argv = [
        sys.executable,
        "-m",
        "rwsgi",
        "plainapp:application",
        "--chdir",
        str(folder),
        "--http",
        "127.0.0.1:0",
        "--autoreload",
        "0.5",
    ]
    return start_server.argv(argv)


def test_plain_app_reloads_on_change(start_server: ServerFactory, app_dir: Path) -> None:
    server = serve_plain(start_server, app_dir)
    assert text_of(server) == (200, "v0")
    write(app_dir / "helper.py", helper_source("v1"))
    wait_until(lambda: text_of(server) == (200, "v1"), RELOAD_WAIT)
    server.wait_for_log(r"autoreload: .*helper\.py changed, reloading")


def test_plain_app_syntax_error_then_fix(start_server: ServerFactory, app_dir: Path) -> None:
    server = serve_plain(start_server, app_dir)
    assert text_of(server) == (200, "v0")
    helper = app_dir / "helper.py"
    write(helper, "TEXT = 'unclosed\n")
    _, body = wait_until(lambda: (got := text_of(server))[0] == 500 and got, RELOAD_WAIT)
    assert "SyntaxError" in body and "helper.py" in body
    assert text_of(server, "/any/other/path")[0] == 500  # still listening, still explaining
    write(helper, helper_source("fixed"))
    wait_until(lambda: text_of(server) == (200, "fixed"), RELOAD_WAIT)


def test_app_failing_at_start_is_shown_then_fixed(
    start_server: ServerFactory, app_dir: Path
) -> None:
    helper = app_dir / "helper.py"
    write(helper, textwrap.dedent("raise RuntimeError('not yet <configured>')\n"))
    server = serve_plain(start_server, app_dir)
    status, body = text_of(server)
    assert status == 500
    assert "RuntimeError: not yet &lt;configured&gt;" in body
    write(helper, helper_source("started"))
    wait_until(lambda: text_of(server) == (200, "started"), RELOAD_WAIT)
