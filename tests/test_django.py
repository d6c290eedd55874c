"""``manage.py rwsgi_serve`` on the small real project in tests/djangoproject:
runserver's checks, messages and address forms, development and production
modes, the admin through a real CSRF-protected POST, static and media files
served by rwsgi, and development autoreload (edits made in a copy of the
project, never in the repo) with a client sending requests throughout."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import TESTS_DIR, Server, ServerFactory, wait_until
from django.core.management.base import CommandError
from rwsgi.django.management.commands.rwsgi_serve import parse_addrport
from support.http import ipv6_loopback_works

pytestmark = pytest.mark.timeout(180)

PROJECT = TESTS_DIR / "djangoproject"
RELOAD_WAIT = 60.0
SUPERUSER = {"username": "admin", "password": "rwsgi-test-password", "email": "a@example.com"}


# -- helpers -------------------------------------------------------------------


def project_env(data: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env.update({"RWSGI_TEST_DATA": str(data), "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def manage(
    project: Path, data: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a manage.py command to its end (one that is expected to end)."""
    return subprocess.run(
        [sys.executable, str(project / "manage.py"), *args],
        env={**project_env(data), **(env or {})},
        cwd=str(project),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def serve(
    start_server: ServerFactory,
    project: Path,
    data: Path,
    *args: str,
    addrport: str = "127.0.0.1:0",
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Server:
    """``manage.py rwsgi_serve`` running, ready (every worker announced)."""
    argv = [sys.executable, str(project / "manage.py"), "rwsgi_serve", addrport, *args]
    return start_server.argv(argv, workers=workers, env={**project_env(data), **(env or {})})


def write(path: Path, text: str) -> None:
    """Rewrite ``path`` with a modification time surely different from before."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    later = max(before + 2_000_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(later, later))


def body_of(server: Server, path: str = "/") -> tuple[int, str]:
    response = server.get(path)
    return response.status, response.body.decode("utf-8", "replace")


def header(response: object, name: str) -> str | None:
    for key, value in response.headers:  # type: ignore[attr-defined]
        if key.lower() == name.lower():
            return str(value)
    return None


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated sqlite database with a superuser, copied by ``data``."""
    folder = tmp_path_factory.mktemp("migrated")
    result = manage(PROJECT, folder, "migrate", "--noinput", "-v0")
    assert result.returncode == 0, result.stderr
    result = manage(
        PROJECT,
        folder,
        "createsuperuser",
        "--noinput",
        env={f"DJANGO_SUPERUSER_{key.upper()}": value for key, value in SUPERUSER.items()},
    )
    assert result.returncode == 0, result.stderr
    return folder / "db.sqlite3"


@pytest.fixture
def data(tmp_path: Path, migrated: Path) -> Path:
    """This test's data folder (RWSGI_TEST_DATA), with the migrated database."""
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(migrated, folder / "db.sqlite3")
    return folder


@pytest.fixture
def project_copy(tmp_path: Path) -> Iterator[Path]:
    """A copy of the project that a test may edit."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    yield copy


# -- addrport ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("addrport", "ipv6", "shown", "ip", "port"),
    [
        (None, False, "127.0.0.1", "127.0.0.1", 8000),
        (None, True, "::1", "::1", 8000),
        ("8001", False, "127.0.0.1", "127.0.0.1", 8001),
        ("0.0.0.0:8002", False, "0.0.0.0", "0.0.0.0", 8002),
        ("0:8003", False, "0.0.0.0", "0.0.0.0", 8003),
        ("[::1]:8004", False, "::1", "::1", 8004),
        ("localhost:8005", False, "localhost", "127.0.0.1", 8005),
    ],
)
def test_addrport_forms(addrport: str | None, ipv6: bool, shown: str, ip: str, port: int) -> None:
    address = parse_addrport(addrport, ipv6)
    assert (address.shown, address.ip, address.port) == (shown, ip, port)


def test_addrport_banner_url_and_option() -> None:
    address = parse_addrport("[::1]:8000", False)
    assert address.url() == "http://[::1]:8000/"
    assert address.option == "[::1]:8000"
    assert parse_addrport("0:8000", False).url() == "http://0.0.0.0:8000/"


@pytest.mark.parametrize(
    ("addrport", "ipv6", "message"),
    [
        ("abc:xyz", False, '"abc:xyz" is not a valid port number or address:port pair.'),
        ("1.2.3.4:8000", True, '"1.2.3.4" is not a valid IPv6 address.'),
        ("99999", False, "'99999' is not a valid port number."),
    ],
)
def test_addrport_refused_with_runservers_messages(addrport: str, ipv6: bool, message: str) -> None:
    with pytest.raises(CommandError) as raised:
        parse_addrport(addrport, ipv6)
    assert str(raised.value) == message


@pytest.mark.skipif(not ipv6_loopback_works(), reason="no ::1 here")
def test_serves_on_ipv6_loopback(start_server: ServerFactory, data: Path) -> None:
    server = serve(start_server, PROJECT, data, addrport="[::1]:0")
    assert server.host == "::1"
    assert body_of(server) == (200, "hello v0")
    assert "Starting development server at http://[::1]:" in server.stdout()


# -- start-up: checks, messages, refusals ------------------------------------


def test_development_serves_pages_with_runservers_banner(
    start_server: ServerFactory, data: Path
) -> None:
    server = serve(start_server, PROJECT, data)
    assert body_of(server) == (200, "hello v0")
    status, page = body_of(server, "/page/")
    assert status == 200 and "template page v0" in page
    out = server.stdout()
    assert out.startswith("Performing system checks...\n\nSystem check identified no issues")
    assert re.search(r"Django version \d+\.\d+.*, using settings 'project.settings'", out)
    assert f"Starting development server at http://127.0.0.1:{server.port}/" in out
    assert "Quit the server with CONTROL-C." in out
    assert "development mode, autoreload on (checks every 1 s), 1 worker x 4 threads" in out
    assert "unapplied migration" not in out
    assert "WARNING: This is a development server" not in out
    # The command's process became the rwsgi master (exec), same PID.
    assert re.search(rf"\[rwsgi {server.pid}\] INFO master pid {server.pid}", server.logs())
    # runserver's request lines, from the server's access log.
    wait_until(lambda: '"GET /page/ HTTP/1.1" 200' in server.stdout(), 10)
    assert re.search(
        r'^\[\d\d/[A-Z][a-z]{2}/\d{4} \d\d:\d\d:\d\d\] "GET / HTTP/1\.1" 200 \d+$',
        server.stdout(),
        re.MULTILINE,
    )


def test_production_with_noreload_serves_with_two_workers(
    start_server: ServerFactory, data: Path
) -> None:
    server = serve(start_server, PROJECT, data, "--noreload", "--workers", "2", workers=2)
    assert len(server.worker_pids) == 2
    assert body_of(server) == (200, "hello v0")
    assert body_of(server, "/items/") == (200, "")
    out = server.stdout()
    assert "Starting production server at" in out
    assert "production mode, 2 workers x 4 threads, no reload on code change" in out
    assert "autoreload" not in server.logs()
    assert '"GET / HTTP/1.1"' not in server.stdout(), "production logs no requests by default"


def test_disable_access_log_silences_the_development_mode(
    start_server: ServerFactory, data: Path
) -> None:
    server = serve(start_server, PROJECT, data, "--disable-access-log")
    assert body_of(server) == (200, "hello v0")
    server.stop()  # the access log is flushed at exit: nothing was there to write
    assert '"GET / HTTP/1.1"' not in server.stdout()


def test_nothreading_is_one_thread(start_server: ServerFactory, data: Path) -> None:
    server = serve(start_server, PROJECT, data, "--nothreading")
    assert "1 worker x 1 thread." in server.stdout()
    assert body_of(server)[0] == 200


def test_unapplied_migrations_print_djangos_notice(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = serve(start_server, PROJECT, tmp_path)  # a fresh sqlite file, never migrated
    out = server.stdout()
    assert re.search(
        r"You have \d+ unapplied migration\(s\)\. Your project may not work properly until "
        r"you apply the migrations for app\(s\): admin, auth, contenttypes, sessions, shop\.",
        out,
    ), out
    assert "Run 'python manage.py migrate' to apply them." in out
    assert body_of(server) == (200, "hello v0")


def test_a_failing_system_check_stops_it(tmp_path: Path) -> None:
    result = manage(
        PROJECT,
        tmp_path,
        "rwsgi_serve",
        "127.0.0.1:0",
        env={"DJANGO_SETTINGS_MODULE": "project.settings_badcheck"},
    )
    assert result.returncode == 1, result
    assert "SystemCheckError: System check identified some issues" in result.stderr
    assert "staticfiles.E001" in result.stderr
    assert "Starting" not in result.stdout


def test_debug_false_without_allowed_hosts_is_refused(tmp_path: Path) -> None:
    result = manage(PROJECT, tmp_path, "rwsgi_serve", "127.0.0.1:0", env={"RWSGI_TEST_DEBUG": "0"})
    assert result.returncode == 1
    assert "CommandError: You must set settings.ALLOWED_HOSTS if DEBUG is False." in result.stderr


def test_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = manage(PROJECT, tmp_path, "rwsgi_serve", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: That port is already in use."
    assert "Starting" not in result.stdout


def test_address_not_available_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = manage(PROJECT, tmp_path, "rwsgi_serve", "192.0.2.1:8000")  # TEST-NET-1
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: That IP address can't be assigned to."


def test_a_bad_rwsgi_option_names_its_flag(tmp_path: Path) -> None:
    result = manage(PROJECT, tmp_path, "rwsgi_serve", "--workers", "0", "--skip-checks")
    assert result.returncode == 1
    assert "CommandError: --workers must be at least 1, got 0" in result.stderr


def test_help_lists_runserver_and_rwsgi_options(tmp_path: Path) -> None:
    result = manage(PROJECT, tmp_path, "help", "rwsgi_serve")
    assert result.returncode == 0
    for flag in ("--noreload", "--nothreading", "--nostatic", "--insecure", "--ipv6"):
        assert flag in result.stdout
    for flag in ("--workers", "--threads", "--socket", "--harakiri", "--static-map"):
        assert flag in result.stdout
    assert "--http " not in result.stdout  # addrport is the HTTP listener


# -- the admin, through a real CSRF-protected POST ---------------------------


def test_admin_login_with_csrf(start_server: ServerFactory, data: Path) -> None:
    server = serve(start_server, PROJECT, data)
    login = server.get("/admin/login/?next=/admin/")
    assert login.status == 200
    cookies = SimpleCookie()
    for key, value in login.headers:
        if key.lower() == "set-cookie":
            cookies.load(value)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', login.body)
    assert token is not None and "csrftoken" in cookies
    form = urlencode(
        {
            "csrfmiddlewaretoken": token.group(1).decode(),
            "username": SUPERUSER["username"],
            "password": SUPERUSER["password"],
            "next": "/admin/",
        }
    ).encode()
    posted = server.request(
        "POST",
        "/admin/login/?next=/admin/",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookies['csrftoken'].value}",
        },
    )
    assert posted.status == 302, posted.body[:2000]
    assert header(posted, "Location") == "/admin/"
    for key, value in posted.headers:
        if key.lower() == "set-cookie":
            cookies.load(value)
    assert "sessionid" in cookies
    admin = server.get("/admin/", headers={"Cookie": f"sessionid={cookies['sessionid'].value}"})
    assert admin.status == 200
    assert b"Site administration" in admin.body


# -- static and media files ----------------------------------------------------


def test_debug_static_files_come_from_the_finders(start_server: ServerFactory, data: Path) -> None:
    server = serve(start_server, PROJECT, data)
    assert "/static/ from the staticfiles finders (3 folders)" in server.stdout()
    app_css = server.get("/static/shop/app.css")  # shop/static/ (AppDirectoriesFinder)
    assert app_css.status == 200, app_css
    assert app_css.body == (PROJECT / "shop/static/shop/app.css").read_bytes()
    assert header(app_css, "ETag") is not None  # rwsgi's static server, not Django's view
    site_js = server.get("/static/site.js")  # STATICFILES_DIRS (FileSystemFinder)
    assert site_js.status == 200, site_js
    assert site_js.body == (PROJECT / "assets/site.js").read_bytes()
    admin_css = server.get("/static/admin/css/base.css")  # django.contrib.admin's static/
    assert admin_css.status == 200


def test_nostatic_serves_no_static_files(start_server: ServerFactory, data: Path) -> None:
    server = serve(start_server, PROJECT, data, "--nostatic")
    assert "Static files" not in server.stdout()
    assert server.get("/static/site.js").status == 404  # Django's answer


def test_production_serves_collectstatic_output_and_media(
    start_server: ServerFactory, data: Path
) -> None:
    env = {"RWSGI_TEST_DEBUG": "0", "RWSGI_TEST_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    result = manage(PROJECT, data, "collectstatic", "--noinput", "-v0", env=env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((data / "static_root" / "staticfiles.json").read_text())
    hashed = manifest["paths"]["shop/app.css"]
    assert re.fullmatch(r"shop/app\.[0-9a-f]{12}\.css", hashed)
    (data / "media").mkdir()
    (data / "media" / "upload.txt").write_text("an uploaded file\n")

    server = serve(start_server, PROJECT, data, env=env)
    out = server.stdout()
    assert "production mode" in out
    assert f"/static/ from STATIC_ROOT {data / 'static_root'}" in out
    status, page = body_of(server, "/page/")
    assert status == 200 and f"/static/{hashed}" in page  # the manifest is used
    css = server.get(f"/static/{hashed}")
    assert css.status == 200, css
    assert css.body == (PROJECT / "shop/static/shop/app.css").read_bytes()
    assert "immutable" in (header(css, "Cache-Control") or "")
    media = server.get("/media/upload.txt")
    assert media.status == 200, media
    assert media.body == b"an uploaded file\n"


# -- development autoreload -----------------------------------------------------

VIEWS = """\
from django.http import HttpResponse
from django.shortcuts import render

VERSION = {version!r}


def hello(request):
    return HttpResponse(f"hello {{VERSION}}", content_type="text/plain")


def page(request):
    return render(request, "shop/page.html", {{"version": VERSION}})


def items(request):
    return HttpResponse("")
"""


WATCHER_SCRIPT = """
import json, os, sys
project, touched = sys.argv[1], sys.argv[2:]
sys.path.insert(0, project)
os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
from rwsgi.autoreload import Watcher, load_for_development
from rwsgi.loader import load_app
app = load_for_development(lambda: load_app("rwsgi.django.wsgi:application"))()
watcher = Watcher()
before = watcher.changed()
for path in touched:
    later = os.stat(path).st_mtime_ns + 2_000_000_000
    os.utime(path, ns=(later, later))
print(json.dumps({"django": watcher.uses_django, "app": type(app).__name__,
                  "watched": watcher.watched(), "before": before, "after": watcher.changed()}))
"""


def loader_watcher(project: Path, data: Path, *touched: Path) -> dict[str, object]:
    """What the loader's Watcher sees, as the Rust loader builds it: after loading."""
    result = subprocess.run(
        [sys.executable, "-c", WATCHER_SCRIPT, str(project), *map(str, touched)],
        env=project_env(data),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_loader_watcher_watches_views_models_and_templates(data: Path, project_copy: Path) -> None:
    template = project_copy / "shop/templates/shop/page.html"
    report = loader_watcher(project_copy, data, template)
    assert report["django"] is True and report["app"] == "WSGIHandler"
    watched = {os.path.realpath(path) for path in report["watched"]}  # type: ignore[attr-defined]
    for name in ("shop/views.py", "shop/models.py", "project/urls.py", "project/settings.py"):
        assert os.path.realpath(project_copy / name) in watched, name
    assert os.path.realpath(template) in watched
    assert report["before"] is None
    assert os.path.realpath(str(report["after"])) == os.path.realpath(template)


def test_loader_watcher_watches_a_view_that_failed_to_import(
    data: Path, project_copy: Path
) -> None:
    views = project_copy / "shop/views.py"
    write(views, "def hello(request):\n    return (\n")
    report = loader_watcher(project_copy, data, views)
    assert report["app"] == "ErrorApp"
    assert os.path.realpath(str(report["after"])) == os.path.realpath(views)


class ClientLoop:
    """Requests on fresh connections, one after another, until stopped;
    every answer other than a 200 and every connection error is kept."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30)
                try:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    response.read()
                finally:
                    conn.close()
            except OSError as error:
                self.failures.append(repr(error))
                continue
            if response.status == 200:
                self.ok += 1
            else:
                self.failures.append(f"status {response.status}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def test_autoreload_three_view_edits_none_refused(
    start_server: ServerFactory, data: Path, project_copy: Path
) -> None:
    server = serve(start_server, project_copy, data)
    views = project_copy / "shop" / "views.py"
    loop = ClientLoop(server)
    try:
        for version in ("v1", "v2", "v3"):
            before = loop.ok
            write(views, VIEWS.format(version=version))
            wait_until(lambda v=version: body_of(server) == (200, f"hello {v}"), RELOAD_WAIT)
            wait_until(lambda b=before: loop.ok > b, RELOAD_WAIT)
    finally:
        loop.stop()
    print(f"{loop.ok} requests answered 200 across 3 reloads, {len(loop.failures)} failed")
    assert loop.failures == [], loop.failures
    assert loop.ok > 3
    server.wait_for_log(r"autoreload: .*views\.py changed, reloading", count=3)


def test_autoreload_syntax_error_is_shown_then_fixed(
    start_server: ServerFactory, data: Path, project_copy: Path
) -> None:
    server = serve(start_server, project_copy, data)
    views = project_copy / "shop" / "views.py"
    write(views, "def hello(request):\n    return (\n")
    _, body = wait_until(lambda: (got := body_of(server))[0] == 500 and got, RELOAD_WAIT)
    assert "SyntaxError" in body and "views.py" in body
    assert body_of(server, "/page/")[0] == 500  # still listening, still explaining
    write(views, VIEWS.format(version="fixed"))
    wait_until(lambda: body_of(server) == (200, "hello fixed"), RELOAD_WAIT)


def test_autoreload_picks_up_a_template_change(
    start_server: ServerFactory, data: Path, project_copy: Path
) -> None:
    server = serve(start_server, project_copy, data)
    template = project_copy / "shop" / "templates" / "shop" / "page.html"
    assert "template page v0" in body_of(server, "/page/")[1]
    write(template, template.read_text().replace("template page", "edited template"))
    wait_until(lambda: "edited template v0" in body_of(server, "/page/")[1], RELOAD_WAIT)


def test_environment_options_apply_below_the_command_line(
    start_server: ServerFactory, data: Path
) -> None:
    """RWSGI_<NAME> variables set rwsgi_serve's options as they set the CLI's,
    above the command's own defaults (4 threads) and below its flags."""
    server = serve(
        start_server,
        PROJECT,
        data,
        "--noreload",
        "--backlog",
        "64",
        env={"RWSGI_THREADS": "2", "RWSGI_BACKLOG": "99"},
    )
    assert "1 worker x 2 threads" in server.stdout()
    assert "backlog 64" in server.logs()
