"""``rwsgi --ini``: the uWSGI ini reader, and real servers started from ini files."""

from __future__ import annotations

import http.client
import os
import re
import stat
import sys
from pathlib import Path

import pytest
from rwsgi.ini import IniConfig, IniError, read_ini, split_spec
from rwsgi.options import OptionError
from support.process import (
    ANY_LISTENING_RE,
    TESTS_DIR,
    Rwsgi,
    Server,
    ServerFactory,
    short_tmpdir,
    wait_until,
)
from support.uwsgi import request_vars, uwsgi_exchange, uwsgi_packet

INI_DIR = TESTS_DIR / "ini"


def own_notes(ini: IniConfig) -> list[str]:
    """The notes of the file's lines, without the one every file lacking
    ``disable-logging`` gets (its access log is on, as uWSGI's is)."""
    return [note for note in ini.notes if "no disable-logging" not in note]


def write(tmp_path: Path, text: str, name: str = "app.ini") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- the reader ------------------------------------------------------------


def test_keys_map_onto_options_with_their_types(tmp_path: Path) -> None:
    ini = read_ini(
        write(
            tmp_path,
            "[uwsgi]\nprocesses = 4\nthreads=2\nharakiri = 30\nlisten = 128\nlimit-post = 99\n"
            "max-requests-delta = 7\nmax-worker-lifetime = 3600\nworker-reload-mercy = 5\n"
            "reload-on-rss = 300\nchown-socket = 0:0\nhttp-socket = :9090\n",
        )
    )
    assert ini.options == {
        "workers": 4,
        "threads": 2,
        "harakiri": 30.0,
        "backlog": 128,
        "max_body_size": 99,
        "max_requests_jitter": 7,
        "max_lifetime": 3600.0,
        "graceful_timeout": 5.0,
        "reload_on_rss": 300,
        "chown_socket": "0:0",
        "http_socket": [":9090"],
    }
    assert own_notes(ini) == []


def test_repeated_keys_are_lists_and_the_last_single_value_wins(tmp_path: Path) -> None:
    ini = read_ini(
        write(
            tmp_path,
            "[uwsgi]\nsocket = /a.sock\nuwsgi-socket = 127.0.0.1:3031\npythonpath = one\n"
            "pythonpath = two\nhttp = 127.0.0.1:1\nhttp = 127.0.0.1:2\nworkers = 1\nworkers = 3\n"
            "env = A=1\nenv = B=x=y\n",
        )
    )
    assert ini.options["socket"] == ["/a.sock", "127.0.0.1:3031"]
    assert ini.options["pythonpath"] == ["one", "two"]
    assert ini.options["http"] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert ini.options["workers"] == 3
    assert ini.env == [("A", "1"), ("B", "x=y")]


def test_interpolation_is_recursive_and_variables_are_not_unknown_keys(tmp_path: Path) -> None:
    ini = read_ini(
        write(
            tmp_path,
            "[uwsgi]\nproject = mysite\nbase = /srv\nroot = %(base)/%(project)\n"
            "module = %(project).wsgi\nsocket = %(root)/%(project).sock\n",
        )
    )
    assert ini.app == "mysite.wsgi:application"
    assert ini.options["socket"] == ["/srv/mysite/mysite.sock"]


def test_interpolation_cycle_and_missing_key_are_errors_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[uwsgi]\na = %(b)\nb = %(a)\n")
    with pytest.raises(IniError, match=r"app\.ini:2: a: %\(a\) refers to itself \(a -> b -> a\)"):
        read_ini(path)
    path = write(tmp_path, "[uwsgi]\n\nchdir = %(nowhere)\n")
    with pytest.raises(IniError, match=r"app\.ini:3: chdir: %\(nowhere\): no key 'nowhere'"):
        read_ini(path)


def test_magic_variables(tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    path = write(
        folder,
        "[uwsgi]\nhttp-socket = @d=%d\nsocket = @n=%n\nsocket = @c=%c\nsocket = @p=%p\n"
        "socket = @s=%s\nsocket = @pc=100%%\n",
        name="site.ini",
    )
    ini = read_ini(path)
    assert ini.options["http_socket"] == [f"@d={folder}/"]
    assert ini.options["socket"] == ["@n=site", "@c=proj", f"@p={path}", "@s=site.ini", "@pc=100%"]


def test_unknown_magic_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IniError, match=r":2: chdir: unknown magic variable %q"):
        read_ini(write(tmp_path, "[uwsgi]\nchdir = %q\n"))


def test_environment_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INI_PORT", "8123")
    ini = read_ini(write(tmp_path, "[uwsgi]\nhttp = 127.0.0.1:$(INI_PORT)\n"))
    assert ini.options["http"] == ["127.0.0.1:8123"]
    monkeypatch.delenv("INI_PORT")
    with pytest.raises(IniError, match=r"app\.ini:2: http: \$\(INI_PORT\): .*INI_PORT is not set"):
        read_ini(write(tmp_path, "[uwsgi]\nhttp = 127.0.0.1:$(INI_PORT)\n"))


def test_comments_and_spacing(tmp_path: Path) -> None:
    ini = read_ini(
        write(
            tmp_path,
            "# top\n; also\n[uwsgi]\n  # indented comment\nworkers=2  # two of them\n"
            "module = a.b:app ;not a comment marker\nenv = A=1#nospace\n",
        )
    )
    assert ini.options["workers"] == 2
    assert ini.app == "a.b:app ;not a comment marker"
    assert ini.env == [("A", "1#nospace")]


@pytest.mark.parametrize("text", ["true", "1", "yes", "on", "True", ""])
def test_booleans_true(tmp_path: Path, text: str) -> None:
    assert read_ini(write(tmp_path, f"[uwsgi]\nlazy-apps = {text}\n")).options == {"preload": False}


@pytest.mark.parametrize("text", ["false", "0", "no", "off"])
def test_booleans_false(tmp_path: Path, text: str) -> None:
    assert read_ini(write(tmp_path, f"[uwsgi]\nlazy-apps = {text}\n")).options == {}


def test_bad_boolean_and_bad_number_name_line_and_key(tmp_path: Path) -> None:
    with pytest.raises(IniError, match=r":3: lazy-apps: 'maybe' is not a boolean"):
        read_ini(write(tmp_path, "[uwsgi]\nmaster = 1\nlazy-apps = maybe\n"))
    with pytest.raises(IniError, match=r":2: processes: workers: 'four' is not a valid int"):
        read_ini(write(tmp_path, "[uwsgi]\nprocesses = four\n"))
    with pytest.raises(IniError, match=r":2: chdir: chdir: '/no/such/dir' is not a directory"):
        read_ini(write(tmp_path, "[uwsgi]\nchdir = /no/such/dir\n"))
    assert isinstance(IniError("x"), OptionError)


def test_section_selection(tmp_path: Path) -> None:
    path = write(tmp_path, "[uwsgi]\nworkers = 1\n[staging]\nworkers = 5\n[uwsgi]\nthreads = 3\n")
    assert read_ini(path).options == {"workers": 1, "threads": 3}
    assert read_ini(*split_spec(path + ":staging")).options == {"workers": 5}
    assert split_spec(path) == (path, "uwsgi")
    with pytest.raises(IniError, match=r"no \[prod\] section"):
        read_ini(path, "prod")


def test_unknown_key_is_an_error_unless_lenient(tmp_path: Path) -> None:
    path = write(tmp_path, "[uwsgi]\nworkers = 2\nfrobnicate = 1\n")
    with pytest.raises(IniError, match=r"app\.ini:3: frobnicate: unknown uWSGI key"):
        read_ini(path)
    ini = read_ini(path, lenient=True)
    assert ini.options == {"workers": 2}
    assert own_notes(ini) == [f"{path}:3: frobnicate: unknown uWSGI key, skipped (--ini-lenient)"]


def test_meaningless_and_unhonoured_keys_are_one_note_each(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[uwsgi]\nmaster = true\nvacuum = true\ndie-on-term = true\nenable-threads = true\n"
        "reload-on-as = 1024\ncheaper = 2\nstats = 127.0.0.1:9191\n"
        "buffer-size = 32768\ndisable-logging = true\n",
    )
    ini = read_ini(path)
    notes = ini.notes
    assert [note.split(": ", 2)[1] for note in notes] == [
        "enable-threads",
        "reload-on-as",
        "cheaper",
        "buffer-size",
    ]
    assert ini.options["stats"] == "127.0.0.1:9191", "stats is an option now, not a note"
    assert "--reload-on-rss" in notes[1]
    assert notes[0].startswith(f"{path}:5: ")


def test_chmod_socket_alone_means_666(tmp_path: Path) -> None:
    assert read_ini(write(tmp_path, "[uwsgi]\nchmod-socket\n")).options == {"chmod_socket": "666"}
    assert read_ini(write(tmp_path, "[uwsgi]\nchmod-socket = 660\n")).options == {
        "chmod_socket": "660"
    }


def test_static_expires_plain_and_regex_forms(tmp_path: Path) -> None:
    for text in ("600", ".* 600"):
        ini = read_ini(write(tmp_path, f"[uwsgi]\nstatic-expires = {text}\n"))
        assert ini.options == {"static_expires": 600}
    with pytest.raises(IniError, match=r":2: static-expires: .*applies to every static file"):
        read_ini(write(tmp_path, "[uwsgi]\nstatic-expires = /srv/(.*)\\.jpg 600\n"))


def test_static_map_relative_folder_is_under_chdir(tmp_path: Path) -> None:
    ini = read_ini(write(tmp_path, f"[uwsgi]\nchdir = {tmp_path}\nstatic-map = /s=static\n"))
    assert ini.options["static_map"] == [f"/s={tmp_path}/static"]


def test_wsgi_file_becomes_a_module_spec(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "run.py").write_text("application = None\n")
    ini = read_ini(write(tmp_path, f"[uwsgi]\nchdir = {tmp_path}\nwsgi-file = site/run.py\n"))
    assert ini.app == "run:application"
    assert ini.options["pythonpath"] == [str(tmp_path / "site")]
    ini = read_ini(
        write(tmp_path, f"[uwsgi]\nwsgi-file = {tmp_path}/site/run.py\ncallable = app\n")
    )
    assert ini.app == "run:app"
    with pytest.raises(IniError, match=r":2: wsgi-file: .*missing\.py' is not a file"):
        read_ini(write(tmp_path, "[uwsgi]\nwsgi-file = missing.py\n"))


def test_home_must_be_the_running_venv(tmp_path: Path) -> None:
    assert read_ini(write(tmp_path, f"[uwsgi]\nvenv = {sys.prefix}\n")).options == {}
    path = write(tmp_path, "[uwsgi]\nhome = /opt/other-venv\n")
    with pytest.raises(IniError) as raised:
        read_ini(path)
    assert "app.ini:2: home: '/opt/other-venv' is not the virtualenv" in str(raised.value)
    assert f"/opt/other-venv/bin/rwsgi --ini {path}" in str(raised.value)


def test_uid_and_gid_are_the_options_that_switch_the_workers(tmp_path: Path) -> None:
    ini = read_ini(write(tmp_path, "[uwsgi]\nuid = nobody\ngid = 0\n"))
    assert (ini.options["uid"], ini.options["gid"]) == ("nobody", "0")
    assert own_notes(ini) == []


def test_logto_is_made_absolute(tmp_path: Path) -> None:
    ini = read_ini(write(tmp_path, f"[uwsgi]\nlogto = {tmp_path}/site.log\n"))
    assert ini.options["log_file"] == f"{tmp_path}/site.log"
    assert "goes to" in ini.notes[0]


# -- real servers ------------------------------------------------------------


class IniServer(Rwsgi):
    """``python -m rwsgi --ini FILE ...``, ready once its listeners and workers are."""

    def __init__(self, *args: str, listeners: int, workers: int, env: dict[str, str]) -> None:
        self.listeners = []
        argv = [sys.executable, "-m", "rwsgi", *args]
        Server.__init__(self, argv, listeners=listeners, workers=workers, env=env, wait=False)

    def wait_ready(self, timeout: float = 30.0) -> None:
        super().wait_ready(timeout)
        http_urls = [url for url in self.listeners if url.startswith("http://")]
        self.addresses = [self.tcp("http", index) for index in range(len(http_urls))]


@pytest.fixture
def ini_env() -> dict[str, str]:
    return {"INI_TEST_TMP": short_tmpdir(), "INI_TEST_VENV": sys.prefix}


@pytest.fixture
def serve_ini(start_server: ServerFactory, ini_env: dict[str, str]):  # type: ignore[no-untyped-def]
    def start(*args: str, listeners: int = 1, workers: int = 1) -> IniServer:
        server = IniServer(*args, listeners=listeners, workers=workers, env=ini_env)
        start_server.servers.append(server)
        server.wait_ready()
        return server

    return start


def test_classic_django_file_serves_on_its_uwsgi_socket(serve_ini, ini_env) -> None:  # type: ignore[no-untyped-def]
    base = Path(ini_env["INI_TEST_TMP"])
    package = base / "mysite" / "mysite"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "wsgi.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'django says ' + environ['PATH_INFO'].encode()]\n"
    )
    server = serve_ini("--ini", str(INI_DIR / "django_classic.ini"), workers=2)
    sock = base / "mysite.sock"
    assert server.unix("uwsgi") == str(sock)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o664
    assert (base / "mysite-master.pid").read_text().strip() == str(server.pid)
    response = uwsgi_exchange(str(sock), uwsgi_packet(request_vars(path="/admin/")))
    assert response.status == 200 and response.body == b"django says /admin/"
    logs = server.logs()
    assert "rwsgi: ini " in logs and "django_classic.ini:18: reload-on-as:" in logs
    assert "django_classic.ini:15: buffer-size:" in logs
    server.stop()
    assert not sock.exists() and not (base / "mysite-master.pid").exists()


def test_flask_file_with_http_socket(serve_ini) -> None:  # type: ignore[no-untyped-def]
    server = serve_ini("--ini", str(INI_DIR / "flask.ini"), workers=2)
    host, port = server.tcp("http")
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/hello")
    assert connection.getresponse().read() == b"hello"
    connection.close()
    assert server.logs().count("means nothing to rwsgi") == 3


def test_django_file_with_home_and_env(serve_ini) -> None:  # type: ignore[no-untyped-def]
    server = serve_ini("--ini", str(INI_DIR / "django_home.ini"))
    assert server.get("/").body == b"mysite.settings.production"


def test_file_with_magic_variables(serve_ini, ini_env) -> None:  # type: ignore[no-untyped-def]
    server = serve_ini("--ini", str(INI_DIR / "magic.ini"))
    assert server.get("/").body == b"magic"
    pidfile = Path(ini_env["INI_TEST_TMP"]) / "magic.pid"
    assert pidfile.read_text().strip() == str(server.pid)


def test_file_with_static_map_and_expires(serve_ini, ini_env) -> None:  # type: ignore[no-untyped-def]
    (Path(ini_env["INI_TEST_TMP"]) / "upload.txt").write_text("uploaded")
    server = serve_ini("--ini", str(INI_DIR / "static.ini"))
    response = server.get("/static/hello.txt")
    assert response.status == 200 and response.body == b"static hello\n"
    assert response.header("Cache-Control") == "public, max-age=3600"
    assert server.get("/media/upload.txt").body == b"uploaded"
    assert server.get("/other").body == b"-"


def test_file_with_stats_and_logto(start_server: ServerFactory, ini_env) -> None:  # type: ignore[no-untyped-def]
    log = Path(ini_env["INI_TEST_TMP"]) / "stats_logto.log"
    server = IniServer(
        "--ini", str(INI_DIR / "stats_logto.ini"), listeners=0, workers=0, env=ini_env
    )
    start_server.servers.append(server)
    text = wait_until(lambda: log.exists() and "ready" in log.read_text() and log.read_text(), 30)
    assert re.search(r"stats on 127\.0\.0\.1:\d+", text), text
    assert "ready" not in server.logs()
    found = ANY_LISTENING_RE.search(text)
    assert found is not None, text
    host, _, port = found.group(1).removeprefix("http://").rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/")
    assert connection.getresponse().read() == b"-"
    connection.close()


def test_unknown_key_refused_with_its_line_then_lenient(serve_ini, ini_env) -> None:  # type: ignore[no-untyped-def]
    path = str(INI_DIR / "unknown.ini")
    refused = IniServer("--ini", path, listeners=0, workers=0, env=ini_env)
    status = refused.wait_exit()
    assert status != 0
    assert f"{path}:4: frobnicate: unknown uWSGI key" in refused.logs()
    server = serve_ini("--ini", path, "--ini-lenient")
    assert server.get("/").body == b"-"
    assert "unknown.ini:4: frobnicate: unknown uWSGI key, skipped" in server.logs()


def test_command_line_wins_over_the_file(serve_ini) -> None:  # type: ignore[no-untyped-def]
    server = serve_ini(
        "apps.core:application",
        "--ini",
        str(INI_DIR / "django_home.ini"),
        "--chdir",
        str(TESTS_DIR),
        "--http",
        "127.0.0.1:0",
    )
    assert server.get("/hello").body == b"hello"


def test_print_config_names_the_ini_lines(ini_env) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "rwsgi", "--ini", str(INI_DIR / "flask.ini"), "--print-config"],
        capture_output=True,
        text=True,
        cwd=TESTS_DIR,
        env={**os.environ, **ini_env, "PYTHONPATH": ""},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "flask.ini:9)" in done.stdout  # threads = 2
    assert "flask.ini:4)" in done.stdout  # module = apps.core
