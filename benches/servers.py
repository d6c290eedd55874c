"""What compare.py runs: the scenarios, and how each server is started for one.

Every server gets the same app from ``apps.py`` with the same workers and
threads; ``Server.command`` is the whole difference between them.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import apps

BENCHES = Path(__file__).resolve().parent
HOST = "127.0.0.1"
POST_BODY = b"x" * apps.ONE_MIB  # what wrk.lua sends: string.rep("x", n)
# wrk.lua frames a chunked body in chunks of this size (a streaming client's).
CHUNK_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    app: str
    workers: int
    threads: int
    connections: int
    post_bytes: int = 0
    chunked: bool = False  # the POST body is sent with Transfer-Encoding: chunked
    wrk_timeout: int | None = None  # wrk's --timeout, s, when --wrk-timeout is too short
    idle: bool = False  # held idle connections around the load (compare.py's measure_idle)
    module: str = "apps"  # where ``app`` is: a module of benches/
    path: str = "/"  # what wrk, the readiness check and the probes request
    # The body is the framework's: held to the app's own answer in-process
    # (``load_reference``), not to a constant here.
    reference: bool = False
    # Only these servers run it (the others are left out of its table, not
    # shown as n/a): a pair of one server's configurations, like hello_observed.
    servers: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        """The app as every server is told it: ``module:callable``."""
        return f"{self.module}:{self.app}"

    def expected(self) -> bytes:
        """The exact body of the answer to wrk's request."""
        if self.reference:
            return _REFERENCE[self.name]
        if self.app == "drain":
            return str(self.post_bytes).encode()
        return {"get1m": apps.BIG, "post1m": POST_BODY}.get(self.app, apps.HELLO)

    def post_body(self) -> bytes:
        return POST_BODY if self.post_bytes == apps.ONE_MIB else b"x" * self.post_bytes

    def probe_request(self, port: int) -> bytes:
        """What a fresh-connection probe sends: wrk's GET, or for a POST
        scenario a bodyless GET to the same app (it answers without reading:
        the probe times the wait for a connection, not the upload)."""
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
        ).encode()

    def probe_expected(self) -> bytes:
        """The body of the answer to ``probe_request``."""
        if not self.post_bytes:
            return self.expected()
        return b"0" if self.app == "drain" else b""


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("hello", "hello world", "hello", workers=2, threads=1, connections=100),
        # Issue 16's cost: the same hello on rwsgi with its access log and
        # metrics off, then on, in one run; the notes give the ratio.
        Scenario(
            "hello_observed",
            "hello world, rwsgi with the access log and metrics off vs on",
            "hello",
            workers=2,
            threads=1,
            connections=100,
            servers=("rwsgi", "rwsgi-observed"),
        ),
        Scenario("sleep", "time.sleep(0.01) app", "sleep", workers=2, threads=8, connections=200),
        Scenario("get1m", "GET, 1 MiB response", "get1m", workers=2, threads=1, connections=100),
        Scenario(
            "post1m",
            "POST 1 MiB, app reads all of wsgi.input and echoes it",
            "post1m",
            workers=2,
            threads=1,
            connections=100,
            post_bytes=apps.ONE_MIB,
        ),
        Scenario(
            "post_chunked_1m",
            "POST 1 MiB with Transfer-Encoding: chunked (64 KiB chunks), app reads it all",
            "drain",
            workers=2,
            threads=1,
            connections=100,
            post_bytes=apps.ONE_MIB,
            chunked=True,
        ),
        Scenario(
            "post_64m",
            "POST 64 MiB, app reads it in 64 KiB reads and discards it",
            "drain",
            workers=2,
            threads=1,
            connections=8,
            post_bytes=64 * apps.ONE_MIB,
            wrk_timeout=30,
        ),
        Scenario(
            "idle_keepalive",
            "hello world while many idle keep-alive connections are held open",
            "hello",
            workers=2,
            threads=1,
            connections=100,
            idle=True,
        ),
        Scenario(
            "flask_hello",
            "Flask app, GET / returns Hello, world!",
            "app",
            workers=2,
            threads=1,
            connections=100,
            module="flask_app",
            reference=True,
        ),
        Scenario(
            "django_hello",
            "Django project (startproject's middleware), HttpResponse('Hello, world!')",
            "application",
            workers=2,
            threads=1,
            connections=100,
            module="djangoproject.wsgi",
            path="/hello/",
            reference=True,
        ),
        Scenario(
            "django_json",
            "Django project, JsonResponse of a 20-key dict with a nested list",
            "application",
            workers=2,
            threads=1,
            connections=100,
            module="djangoproject.wsgi",
            path="/json/",
            reference=True,
        ),
        Scenario(
            "django_template",
            "Django project, a 200-row table page from a template that extends a base",
            "application",
            workers=2,
            threads=1,
            connections=100,
            module="djangoproject.wsgi",
            path="/template/",
            reference=True,
        ),
    )
}

# Scenario name -> the body its app answers in-process (``load_reference``).
_REFERENCE: dict[str, bytes] = {}


def load_reference(venv: Path, scenario: Scenario) -> str | None:
    """For a ``reference`` scenario, run its app once in-process with the
    venv's Python (``reference.py``) and keep the body as the one every server
    must answer; None when done (or not needed), else why it could not be."""
    if not scenario.reference or scenario.name in _REFERENCE:
        return None
    if not venv_bin(venv, "python").exists():
        return f"not installed (no venv at {venv}; run benches/setup.sh)"
    done = subprocess.run(
        [venv_python(venv), "reference.py", scenario.target, scenario.path],
        cwd=BENCHES,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        return f"no reference answer from the app ({why[-1] if why else done.returncode})"
    _REFERENCE[scenario.name] = done.stdout
    return None


@dataclasses.dataclass(frozen=True)
class Server:
    """How to start one server for a scenario, and how it says it is ready.

    ``ready`` is a regex matched against the server's log; the run starts once
    it has matched ``workers`` times (or once, when ``ready_once``) and a probe
    request got the right answer.
    """

    name: str
    command: Callable[[Path, Scenario, int], list[str]]
    installed: Callable[[Path], str | None]
    ready: str | None = None
    ready_once: bool = False
    only: tuple[str, ...] = ()  # scenarios it can run; empty means all
    note: Callable[[Scenario], str] = lambda s: ""
    # False: left out of the tables of scenarios it does not run (instead of
    # an n/a row), for a variant that exists for one scenario only.
    listed: bool = True

    def runs_in(self, scenario: Scenario) -> bool:
        """Whether its row belongs in ``scenario``'s table at all (it may
        still be n/a there: see ``only``)."""
        if scenario.servers:
            return self.name in scenario.servers
        return self.listed or not self.only or scenario.name in self.only


def venv_bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def venv_python(venv: Path) -> str:
    return str(venv_bin(venv, "python"))


def _needs_import(module: str) -> Callable[[Path], str | None]:
    def check(venv: Path) -> str | None:
        if not venv_bin(venv, "python").exists():
            return f"not installed (no venv at {venv}; run benches/setup.sh)"
        probe = subprocess.run(
            [venv_python(venv), "-c", f"import {module}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if probe.returncode != 0:
            return "not installed"
        return None

    return check


def _needs_file(path: Callable[[Path], Path]) -> Callable[[Path], str | None]:
    def check(venv: Path) -> str | None:
        return None if path(venv).exists() else "not installed"

    return check


HYPER_BIN = BENCHES / "hyper_bare" / "target" / "release" / "hyper_bare"


def _rwsgi(venv: Path, s: Scenario, port: int) -> list[str]:
    argv = [
        venv_python(venv), "-m", "rwsgi", s.target, "--http", f"{HOST}:{port}",
        "--workers", str(s.workers), "--threads", str(s.threads),
    ]  # fmt: skip
    if s.idle:
        # The held connections stay idle longer than the 5 s default
        # --keepalive-timeout; the peers measured beside it keep them too.
        argv += ["--keepalive-timeout", "300"]
    return argv


# What rwsgi-observed turns on: "access-log" (a real file, so the cost of
# writing it counts) and "stats" (the metrics endpoint, issue 16; compare.py's
# --observed-flags auto adds it when the installed rwsgi lists --stats-http).
OBSERVED_FLAGS = ("access-log", "stats")

_scratch_root: Path | None = None


def scratch(port: int) -> Path:
    """The directory of one run's files (rwsgi-observed's access log), under
    the harness's temp dir; ``remove_scratch`` deletes it after the run."""
    global _scratch_root
    if _scratch_root is None:
        _scratch_root = Path(tempfile.mkdtemp(prefix="rwsgi-bench-"))
    path = _scratch_root / f"run-{port}"
    path.mkdir(exist_ok=True)
    return path


def scratch_sizes(port: int) -> dict[str, int]:
    """The bytes each of a run's scratch files holds (what was really written)."""
    if _scratch_root is None or not (_scratch_root / f"run-{port}").is_dir():
        return {}
    return {f.name: f.stat().st_size for f in sorted((_scratch_root / f"run-{port}").iterdir())}


def remove_scratch(port: int | None = None) -> None:
    """Delete one run's scratch files (or, with no port, the whole temp dir)."""
    global _scratch_root
    if _scratch_root is None:
        return
    if port is None:
        shutil.rmtree(_scratch_root, ignore_errors=True)
        _scratch_root = None
    else:
        shutil.rmtree(_scratch_root / f"run-{port}", ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def observed_server(flags: tuple[str, ...]) -> Server:
    """rwsgi's command plus the observability ``flags`` (of ``OBSERVED_FLAGS``)."""

    def command(venv: Path, s: Scenario, port: int) -> list[str]:
        argv = _rwsgi(venv, s, port)
        if "access-log" in flags:
            log = scratch(port) / "access.log" if port else Path("TMP/access.log")
            argv += ["--access-log", str(log)]
        if "stats" in flags:
            stats = f"{HOST}:{_free_port()}" if port else f"{HOST}:STATS_PORT"
            argv += ["--stats", stats, "--stats-http"]
        return argv

    shown = " and ".join(f for f in OBSERVED_FLAGS if f in flags) or "nothing"
    return Server(
        "rwsgi-observed",
        command,
        _needs_import("rwsgi._rwsgi"),
        ready=r"worker \d+ \(pid \d+\) ready",
        only=("hello_observed",),
        listed=False,
        note=lambda s: f"rwsgi with {shown} on; the access log is a file in the run's temp dir",
    )


def _bjoern(venv: Path, s: Scenario, port: int) -> list[str]:
    return [
        venv_python(venv),
        "prefork.py",
        "bjoern",
        s.target,
        HOST,
        str(port),
        str(s.workers),
    ]


def _granian(venv: Path, s: Scenario, port: int) -> list[str]:
    return [
        str(venv_bin(venv, "granian")), "--interface", "wsgi", "--host", HOST, "--port", str(port),
        "--workers", str(s.workers), "--blocking-threads", str(s.threads),
        "--http", "1", "--no-ws", s.target,
    ]  # fmt: skip


def _gunicorn(venv: Path, s: Scenario, port: int) -> list[str]:
    worker = ["--worker-class", "gthread", "--threads", str(s.threads)] if s.threads > 1 else []
    return [
        str(venv_bin(venv, "gunicorn")), "--bind", f"{HOST}:{port}", "--workers", str(s.workers),
        *worker, "--backlog", "1024", s.target,
    ]  # fmt: skip


def _uwsgi(venv: Path, s: Scenario, port: int) -> list[str]:
    threads = ["--threads", str(s.threads)] if s.threads > 1 else []
    return [
        str(venv_bin(venv, "uwsgi")), "--http-socket", f"{HOST}:{port}", "--master",
        "--processes", str(s.workers), *threads, "--module", s.target,
        "--listen", "1024", "--disable-logging", "--die-on-term", "--need-app", "--strict",
    ]  # fmt: skip


def _waitress(venv: Path, s: Scenario, port: int) -> list[str]:
    return [
        venv_python(venv), "prefork.py", "waitress", s.target, HOST, str(port),
        str(s.workers), str(s.threads),
    ]  # fmt: skip


def _hyper(venv: Path, s: Scenario, port: int) -> list[str]:
    return [str(HYPER_BIN), f"{HOST}:{port}", str(s.workers)]


SERVERS = {
    s.name: s
    for s in (
        Server(
            "rwsgi", _rwsgi, _needs_import("rwsgi._rwsgi"), ready=r"worker \d+ \(pid \d+\) ready"
        ),
        # The default; compare.py replaces it with its --observed-flags.
        observed_server(("access-log",)),
        Server(
            "hyper",
            _hyper,
            _needs_file(lambda venv: HYPER_BIN),
            ready=r"hyper_bare listening",
            ready_once=True,
            only=("hello", "idle_keepalive"),
            note=lambda s: f"bare hyper, no Python: 1 process, {s.workers} tokio threads",
        ),
        Server(
            "bjoern",
            _bjoern,
            _needs_import("bjoern"),
            ready=r"bjoern worker \(pid \d+\) ready",
            note=lambda s: (
                "prefork.py: SO_REUSEPORT listener per process"
                + ("; bjoern has no threads, so 1 per process" if s.threads > 1 else "")
            ),
        ),
        Server(
            "granian",
            _granian,
            _needs_file(lambda v: venv_bin(v, "granian")),
            ready=r"Started worker-\d+",
        ),
        Server(
            "gunicorn",
            _gunicorn,
            _needs_file(lambda v: venv_bin(v, "gunicorn")),
            ready=r"Booting worker with pid",
            note=lambda s: "gthread" if s.threads > 1 else "sync",
        ),
        Server(
            "uwsgi",
            _uwsgi,
            _needs_file(lambda v: venv_bin(v, "uwsgi")),
            ready=r"spawned uWSGI worker \d+",
            note=lambda s: "listen raised from 100 to 1024 to match the others",
        ),
        Server(
            "waitress",
            _waitress,
            _needs_import("waitress"),
            ready=r"waitress worker \(pid \d+\) ready",
            note=lambda s: "prefork.py: one listener bound before fork, shared",
        ),
    )
}


def display_command(command: list[str]) -> list[str]:
    """The command with the venv and checkout paths cut, for the report."""
    out = []
    for part in command:
        part = part.replace(str(BENCHES) + "/", "benches/")
        part = re.sub(r".*/\.venv[^/]*/bin/", "", part)
        out.append(part[:-2] + ":PORT" if part.endswith(":0") else part)
    return ["PORT" if p == "0" else p for p in out]
