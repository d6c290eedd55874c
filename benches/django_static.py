"""Django and its static files (issue 14): rwsgi against runserver, gunicorn +
whitenoise, uWSGI, granian and nginx, in one session.

    python benches/django_static.py [--scenarios django_hello,django_template,static_4k,...]
                                    [--servers rwsgi,runserver,gunicorn+whitenoise,uwsgi,...]
                                    [--rwsgi-mode auto|cli|command] [--duration 6] [--rounds 3]
                                    [--ab-requests 10000 --ab-concurrency 1000] [--publish]

Four rows: the Django hello view, the template page (the project of
compare.py's django_* scenarios), a 4 KiB CSS file and a 1 MiB file under
``/static/`` (``djangoproject/static/``); every server with 2 workers, each
run made by compare.py's machinery (start in a new session, wait for its
workers and one right answer, warm-up, measured wrk run with /proc around it
and fresh-connection probes, stop by PID; rounds interleaved, the order
rotated). Then the classic ``ab -n 10000 -c 1000`` on the hello view, once per
server (``--ab-rounds``): its success rate and how long it took. README.md
says what each server is given.

Only the standard library: the harness runs under any Python 3.10+.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from compare import (
    RunFailed,
    _progress,
    check_args,
    free_port,
    interleave,
    log,
    measure_quietly,
    start_server,
    stop_server,
    wait_ready,
)
from holdconn import raise_nofile
from procstat import read_text
from recorded import RESULTS, publish, record, rerender_charts
from report import (
    COLUMNS,
    UWSGI_READ_ERRORS,
    _cell,
    _ms,
    _num,
    machine_header,
    notes,
    probe_cells,
    server_table,
)
from report import summarize as summarize_wrk
from servers import (
    BENCHES,
    HOST,
    Scenario,
    Server,
    _granian,
    _gunicorn,
    _uwsgi,
    display_command,
    load_reference,
    venv_bin,
    venv_python,
)
from servers import (
    SCENARIOS as COMPARE_SCENARIOS,
)

PROJECT = BENCHES / "djangoproject"
STATIC_DIR = PROJECT / "static"
STATIC_URL = "/static"
NGINX = Path("/usr/sbin/nginx")
MIME_TYPES = Path("/etc/nginx/mime.types")
TITLE = "## Django and static files (benches/django_static.py)"

# --------------------------------------------------------------------------
# The static files: the CSS the template page links to, and a 1 MiB bundle
# --------------------------------------------------------------------------

CSS_NAME, CSS_BYTES = "shop.css", 4096
BUNDLE_NAME, BUNDLE_BYTES = "bundle-1m.js", 2**20


def _css() -> bytes:
    """``shop.css``: 4 KiB of rules, the same bytes every time."""
    rules = [
        "/* shop.css: the stylesheet base.html links to (benches/django_static.py) */\n",
        "body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#222;background:#fafafa}\n",
        "nav{display:flex;gap:1rem;padding:.5rem 1rem;background:#123}\n",
        "nav a{color:#fff;text-decoration:none}\n",
        "table{border-collapse:collapse;width:100%}\n",
        "th,td{padding:.25rem .5rem;text-align:left}\n",
        "tr.odd{background:#fff}tr.even{background:#f0f3f6}\n",
    ]
    n = 0
    while sum(map(len, rules)) < CSS_BYTES:
        color = f"{n * 37 % 4096:03x}"
        rules.append(f".col-{n}{{width:{n % 12 + 1}em;margin-left:{n % 7}px;color:#{color}}}\n")
        n += 1
    return "".join(rules).encode()[: CSS_BYTES - 1] + b"\n"


def _bundle() -> bytes:
    """``bundle-1m.js``: 1 MiB of script-like lines, the same bytes every time."""
    lines = []
    size = 0
    n = 0
    while size < BUNDLE_BYTES:
        line = f'export const item{n} = {{id: {n}, name: "item {n}", price: {n % 97 + 0.5}}};\n'
        lines.append(line)
        size += len(line)
        n += 1
    return "".join(lines).encode()[: BUNDLE_BYTES - 1] + b"\n"


STATIC_FILES = {CSS_NAME: _css, BUNDLE_NAME: _bundle}


def make_static() -> dict[str, bytes]:
    """Write the static files that are missing or differ; their bytes by name."""
    STATIC_DIR.mkdir(exist_ok=True)
    out = {}
    for name, make in STATIC_FILES.items():
        body = make()
        path = STATIC_DIR / name
        if not path.exists() or path.read_bytes() != body:
            path.write_bytes(body)
            log(f"wrote {path.relative_to(BENCHES.parent)} ({len(body):,} bytes)")
        out[name] = body
    return out


@dataclasses.dataclass(frozen=True)
class StaticScenario(Scenario):
    """A GET of a file under ``/static/``; the answer must be its bytes."""

    body: bytes = b""

    def expected(self) -> bytes:
        return self.body

    def probe_request(self, port: int) -> bytes:
        """HTTP/1.0: the fresh-connection probe reads a Content-Length or a
        close-delimited body, and granian answers a file to an HTTP/1.1
        request chunked (no Content-Length)."""
        return f"GET {self.path} HTTP/1.0\r\nHost: {HOST}:{port}\r\n\r\n".encode()


def scenarios(files: dict[str, bytes]) -> dict[str, Scenario]:
    """The four rows: compare.py's two Django scenarios (their bodies are the
    app's in-process answer) and the two files."""
    common = dict(
        app="application", workers=2, threads=1, connections=100, module="djangoproject.wsgi"
    )
    return {
        "django_hello": COMPARE_SCENARIOS["django_hello"],
        "django_template": COMPARE_SCENARIOS["django_template"],
        "static_4k": StaticScenario(
            "static_4k",
            f"a 4 KiB static CSS file ({CSS_NAME})",
            path=f"{STATIC_URL}/{CSS_NAME}",
            body=files[CSS_NAME],
            **common,
        ),
        "static_1m": StaticScenario(
            "static_1m",
            f"a 1 MiB static file ({BUNDLE_NAME})",
            path=f"{STATIC_URL}/{BUNDLE_NAME}",
            body=files[BUNDLE_NAME],
            **common,
        ),
    }


# --------------------------------------------------------------------------
# The servers: each one as its users deploy Django with static files
# --------------------------------------------------------------------------


def _env(settings: str) -> list[str]:
    """``env`` execs the server, so the PID we started is still the server's."""
    return ["env", f"DJANGO_SETTINGS_MODULE=djangoproject.{settings}"]


def _manage(venv: Path) -> list[str]:
    return [venv_python(venv), str(PROJECT / "manage.py")]


def has_rwsgi_command(venv: Path) -> bool:
    """Whether the installed rwsgi has the Django command (``rwsgi_serve``)."""
    done = subprocess.run(
        [venv_python(venv), "-c", "import rwsgi.django.management.commands.rwsgi_serve"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return done.returncode == 0


def rwsgi_server(mode: str) -> Server:
    """rwsgi as the CLI (``--static-map``) or as ``manage.py rwsgi_serve
    --noreload`` (STATIC_ROOT under STATIC_URL, from the settings)."""

    def cli(venv: Path, s: Scenario, port: int) -> list[str]:
        return [
            *_env("settings"), venv_python(venv), "-m", "rwsgi", s.target,
            "--http", f"{HOST}:{port}", "--workers", str(s.workers), "--threads", str(s.threads),
            "--static-map", f"{STATIC_URL}={STATIC_DIR}",
        ]  # fmt: skip

    def command(venv: Path, s: Scenario, port: int) -> list[str]:
        return [
            *_env("settings_rwsgi"), *_manage(venv), "rwsgi_serve", "--noreload",
            f"{HOST}:{port}", "--workers", str(s.workers), "--threads", str(s.threads),
        ]  # fmt: skip

    def installed(venv: Path) -> str | None:
        done = subprocess.run(
            [venv_python(venv), "-c", "import rwsgi._rwsgi"], capture_output=True, check=False
        )
        if done.returncode != 0:
            return "not installed"
        if mode == "command" and not has_rwsgi_command(venv):
            return "no rwsgi_serve command in the installed rwsgi (use --rwsgi-mode cli)"
        return None

    return Server(
        "rwsgi",
        command if mode == "command" else cli,
        installed,
        ready=r"worker \d+ \(pid \d+\) ready",
        note=lambda s: (
            "manage.py rwsgi_serve, settings_rwsgi: STATIC_ROOT under STATIC_URL"
            if mode == "command"
            else "the CLI, --static-map"
        ),
    )


def _runserver(venv: Path, s: Scenario, port: int) -> list[str]:
    return [*_env("settings_debug"), *_manage(venv), "runserver", "--noreload", f"{HOST}:{port}"]


def _gunicorn_whitenoise(venv: Path, s: Scenario, port: int) -> list[str]:
    return [*_env("settings_whitenoise"), *_gunicorn(venv, s, port)]


def _uwsgi_static(venv: Path, s: Scenario, port: int) -> list[str]:
    # compare.py's uWSGI, but --http11-socket: --http-socket closes every
    # connection, which half of wrk's keep-alive requests pay as read errors.
    # uWSGI's docs on static files: offload the transfers to threads (the
    # workers stay 2; without them a 4 KiB file over keep-alive ran at 45
    # requests/s here). An offloaded file still closes its connection.
    command = _uwsgi(venv, s, port)
    command[command.index("--http-socket")] = "--http11-socket"
    return [
        *_env("settings"), *command,
        "--static-map", f"{STATIC_URL}={STATIC_DIR}", "--offload-threads", "2",
    ]  # fmt: skip


def _granian_static(venv: Path, s: Scenario, port: int) -> list[str]:
    return [
        *_env("settings"), *_granian(venv, s, port)[:-1],
        "--static-path-route", STATIC_URL, "--static-path-mount", str(STATIC_DIR), s.target,
    ]  # fmt: skip


NGINX_CONF = """\
daemon off;
worker_processes {workers};
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    include {mime};
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=1000 inactive=60s;
    keepalive_timeout 65;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {host}:{port};
        location {url}/ {{
            alias {root}/;
        }}
    }}
}}
"""


def _nginx(venv: Path, s: Scenario, port: int) -> list[str]:
    """nginx with ``s.workers`` worker processes, serving STATIC_DIR under
    ``/static/`` (its config written into the logs folder, per port)."""
    tmp = BENCHES / ".logs" / f"nginx-static-{port}"
    if port:
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "nginx.conf").write_text(
            NGINX_CONF.format(
                workers=s.workers,
                tmp=tmp,
                mime=MIME_TYPES,
                host=HOST,
                port=port,
                url=STATIC_URL,
                root=STATIC_DIR,
            )
        )
    return [str(NGINX), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")]


def _nginx_version() -> str:
    if not NGINX.exists():
        return "not installed"
    done = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().replace("nginx version: ", "")


def _needs(path: Callable[[Path], Path], module: str = "") -> Callable[[Path], str | None]:
    def check(venv: Path) -> str | None:
        if not path(venv).exists():
            return "not installed"
        if module:
            done = subprocess.run(
                [venv_python(venv), "-c", f"import {module}"], capture_output=True, check=False
            )
            if done.returncode != 0:
                return f"not installed ({module}: run benches/setup.sh)"
        return None

    return check


STATIC_ONLY = ("static_4k", "static_1m")


def servers(rwsgi_mode: str) -> dict[str, Server]:
    return {
        s.name: s
        for s in (
            rwsgi_server(rwsgi_mode),
            Server(
                "runserver",
                _runserver,
                _needs(lambda v: venv_bin(v, "python"), "django"),
                ready=r"Quit the server with CONTROL-C",
                ready_once=True,
                note=lambda s: (
                    "settings_debug: DEBUG on, staticfiles' handler; one process, "
                    "a thread per connection (runserver has no workers)"
                ),
            ),
            Server(
                "gunicorn+whitenoise",
                _gunicorn_whitenoise,
                _needs(lambda v: venv_bin(v, "gunicorn"), "whitenoise"),
                ready=r"Booting worker with pid",
                note=lambda s: "sync worker; settings_whitenoise (WhiteNoiseMiddleware)",
            ),
            Server(
                "uwsgi",
                _uwsgi_static,
                _needs(lambda v: venv_bin(v, "uwsgi")),
                ready=r"spawned uWSGI worker \d+",
                note=lambda s: "--http11-socket (keep-alive), --static-map, 2 offload threads",
            ),
            Server(
                "granian",
                _granian_static,
                _needs(lambda v: venv_bin(v, "granian")),
                ready=r"Started worker-\d+",
                note=lambda s: "--static-path-mount",
            ),
            Server(
                "nginx",
                _nginx,
                lambda v: None if NGINX.exists() else "not installed",
                ready=None,
                only=STATIC_ONLY,
                note=lambda s: f"{s.workers} worker processes, sendfile, open_file_cache",
            ),
        )
    }


# --------------------------------------------------------------------------
# The 10,000 requests at 1,000 concurrency (ab)
# --------------------------------------------------------------------------


AB_FAILURES = ("connect", "receive", "length", "exceptions")


def run_ab(scenario: Scenario, port: int, args: argparse.Namespace) -> dict:
    """``ab -n N -c C -r`` (go on after receive errors, so every request is
    counted); its counters and percentiles. ab gives up on the whole run when
    one request has no answer within ``-s`` (``apr_pollset_poll: The timeout
    specified has expired``) and prints no summary: then the run says how
    many requests had completed by its last progress line."""
    total = args.ab_requests
    command = [
        "ab", "-n", str(total), "-c", str(args.ab_concurrency), "-r",
        "-s", str(args.ab_timeout), f"http://{HOST}:{port}{scenario.path}",
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=args.ab_timeout * 4 + 120, check=False
    )
    wall = time.monotonic() - started
    out = done.stdout

    def number(label: str, default: float | None = None) -> float | None:
        match = re.search(rf"^{label}:?\s+([\d.]+)", out, re.MULTILINE)
        return float(match.group(1)) if match else default

    result: dict = {"requests": total, "wall_s": wall, "returncode": done.returncode}
    if number("Complete requests") is None:
        progress = re.findall(r"^Completed (\d+) requests", done.stderr, re.MULTILINE)
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        if not progress:
            raise RunFailed(f"ab failed ({done.returncode}): {_cell(last[0], 400)}")
        return result | {"aborted": last[0], "completed_at_least": int(progress[-1])}
    failed = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", out)
    percentiles = {
        int(m.group(1)): float(m.group(2))
        for m in re.finditer(r"^\s+(\d+)%\s+(\d+)", out, re.MULTILINE)
    }
    complete = int(number("Complete requests") or 0)
    non2xx = int(number("Non-2xx responses", 0) or 0)
    bad = int(number("Failed requests", 0) or 0)
    return result | {
        "complete": complete,
        "failed_requests": bad,
        "failed_kinds": (
            dict(zip(AB_FAILURES, map(int, failed.groups()), strict=True)) if failed else {}
        ),
        "non2xx": non2xx,
        "ok": complete - bad - non2xx,
        "duration_s": number("Time taken for tests"),
        "rps": number("Requests per second"),
        "p50_ms": percentiles.get(50),
        "p99_ms": percentiles.get(99),
        "max_ms": percentiles.get(100),
    }


def measure_ab(server: Server, scenario: Scenario, args: argparse.Namespace, logfile: Path) -> dict:
    """Start the server (as for wrk), one ab run, stop it."""
    port = free_port()
    proc = start_server(server, scenario, args, logfile, port)
    result: dict = {"server": server.name, "scenario": "ab_hello", "loadavg": _loadavg()}
    try:
        result["ready_s"] = wait_ready(server, scenario, proc, logfile, port, args.start_timeout)
        result.update(run_ab(scenario, port, args))
        if proc.poll() is not None:
            result["note"] = f"server exited during the run ({proc.returncode})"
    except (RunFailed, OSError, subprocess.TimeoutExpired) as error:
        result["failed"] = str(error)
    finally:
        result["stop_s"], note = stop_server(proc, args.stop_grace)
        if note:
            result["stop_note"] = note
    return result


def _ab_progress(run: dict) -> str:
    if "failed" in run:
        return f"FAILED {run['failed']}"
    if "aborted" in run:
        return f"ab gave up after {run['wall_s']:.1f} s ({run['aborted']}), {_ab_success(run)}"
    return (
        f"{_ab_success(run)}, {run['duration_s']:.2f} s, {run['rps']:,.0f} req/s, "
        f"p99 {run['p99_ms']} ms, failed {run['failed_kinds']}, non-2xx {run['non2xx']}"
    )


def _ab_success(run: dict) -> str:
    if "aborted" in run:
        return "< 100 %"  # at least one request unanswered; how many, ab does not say
    return f"{100.0 * run['ok'] / run['requests']:.2f} % ({run['ok']:,})"


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------


def _loadavg() -> str:
    return " ".join((read_text("/proc/loadavg") or "? ? ?").split()[:3])


def summarize(runs: list[dict]) -> dict | None:
    """compare.py's summary plus the success rate: right answers over every
    request wrk sent or tried to (its socket errors count as failures)."""
    s = summarize_wrk(runs)
    if s is None:
        return None
    ok = [r for r in runs if "failed" not in r]
    kinds = ("connect", "read", "write", "timeout")
    tried = sum(r["wrk"]["requests"] + sum(r["wrk"][k] for k in kinds) for r in ok)
    good = sum(r["wrk"]["requests"] - r["wrk"]["status"] for r in ok)
    s["success"] = 100.0 * good / tried if tried else 0.0
    return s


def _success_cell(s: dict, against: dict | None) -> list[str]:
    return [*probe_cells(s, against), f"{s['success']:.2f} %"]


def wrk_section(
    scenario: Scenario, status: dict, results: dict[str, list[dict]], commands: dict,
    noise_cores: float,
) -> str:  # fmt: skip
    lines = [
        f"### {scenario.name}: {scenario.title}",
        "",
        f"`GET {scenario.path}`, {scenario.connections} wrk connections, 2 workers each "
        "(runserver: one process). Ratios in parentheses are to rwsgi.",
        "",
        server_table(
            results, status, (*COLUMNS, "success"), summarize, extra=(), tail=_success_cell
        ),
        "",
        "<details><summary>commands</summary>",
        "",
        *(f"- {name}: {command}" for name, command in commands.items()),
        "",
        "</details>",
        "",
    ]
    # compare.py's note on uWSGI's read errors is about --http-socket; here
    # they come from the offloaded static files.
    extra = [n.replace(UWSGI_READ_ERRORS, UWSGI_OFFLOAD_READS) for n in notes(results, noise_cores)]
    if extra:
        lines += ["Notes:", "", *(f"- {n}" for n in extra), ""]
    return "\n".join(lines)


UWSGI_OFFLOAD_READS = (
    " (uWSGI closes the connection after a file its offload threads sent, without a "
    "Connection: close header, so wrk's next request on it fails: see README)"
)


def ab_section(data: dict) -> str:
    runs = data["ab_runs"]
    requests, concurrency = data["ab"]["requests"], data["ab"]["concurrency"]
    lines = [
        f"### {requests:,} requests at {concurrency:,} concurrency on the hello view (ab)",
        "",
        f"`ab -n {requests} -c {concurrency} -r -s {data['ab']['timeout']}` on `/hello/`: a new "
        "connection per request (HTTP/1.0, no keep-alive), all 1,000 at once from the start. "
        "success = 2xx answers of the right length / requests; ab's failures by kind.",
        "",
        "| server | success | duration | requests/s | p50 | p99 | max | failed (connect, "
        "receive, length, exceptions) | non-2xx | loadavg before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        if "failed" in run:
            lines.append(f"| {run['server']} | failed: {_cell(run['failed'])} |" + " — |" * 8)
            continue
        if "aborted" in run:
            lines.append(
                f"| {run['server']} | {_ab_success(run)} | ab gave up after {run['wall_s']:.1f} s "
                f"(`{run['aborted']}`; {run['completed_at_least']:,} had completed) |"
                + " — |" * 6
                + f" {run['loadavg']} |"
            )
            continue
        kinds = run["failed_kinds"]
        by_kind = ", ".join(str(kinds.get(k, 0)) for k in AB_FAILURES)
        failed = f"{run['failed_requests']:,} ({by_kind})" if run["failed_requests"] else "0"

        def ms(key: str, run: dict = run) -> str:
            return "—" if run[key] is None else _ms(run[key])

        lines.append(
            f"| {run['server']} | {_ab_success(run)} | "
            f"{run['duration_s']:.2f} s | {_num(run['rps'] or 0)} | {ms('p50_ms')} | "
            f"{ms('p99_ms')} | {ms('max_ms')} | {failed} | {run['non2xx']:,} | {run['loadavg']} |"
        )
    lines.append("")
    return "\n".join(lines)


def header(data: dict) -> str:
    return "\n".join(
        [
            data["header"],
            f"- also: {data['versions']}",
            f"- rwsgi run as: {data['rwsgi_mode']}",
            f"- loadavg (1, 5, 15 min) at the start: {data['load_start']}; at the end: "
            f"{data['load_end']} (2 cores; other helpers' builds share them)",
        ]
    )


def render(data: dict, scenario_defs: dict[str, Scenario]) -> str:
    report = [TITLE, "", header(data), ""]
    for name in data["scenarios"]:
        status = data["status"][name]
        results: dict[str, list[dict]] = {s: [] for s in status if not status[s]}
        for run in sorted(data["runs"], key=lambda r: r["round"]):
            if run["scenario"] == name and run["server"] in results:
                results[run["server"]].append(run)
        report.append(
            wrk_section(
                scenario_defs[name], status, results, data["commands"][name], data["noise_cores"]
            )
        )
    if data.get("ab_runs"):
        report.append(ab_section(data))
    return "\n".join(report)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

SCENARIO_NAMES = ("django_hello", "django_template", "static_4k", "static_1m")
SERVER_NAMES = ("rwsgi", "runserver", "gunicorn+whitenoise", "uwsgi", "granian", "nginx")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIO_NAMES), help="comma-separated")
    parser.add_argument("--servers", default=",".join(SERVER_NAMES), help="comma-separated")
    parser.add_argument(
        "--rwsgi-mode",
        choices=("auto", "cli", "command"),
        default="auto",
        help="rwsgi as `manage.py rwsgi_serve --noreload` (command) or the CLI with "
        "--static-map (cli); auto: the command when the installed rwsgi has it",
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds of each measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load before measuring")
    parser.add_argument("--ab-requests", type=int, default=10_000)
    parser.add_argument("--ab-concurrency", type=int, default=1_000)
    parser.add_argument("--ab-timeout", type=int, default=30, help="ab's -s, s")
    parser.add_argument("--ab-rounds", type=int, default=1, help="ab runs per server; 0: none")
    parser.add_argument(
        "--publish",
        action="store_true",
        help=f"put the report in {RESULTS}, its figures in benches/results/django_static.json, "
        "and redraw benches/charts/",
    )
    parser.add_argument(
        "--make-static", action="store_true", help="only write the static files (setup.sh)"
    )
    parser.add_argument("--json", type=Path, help="write every run's raw figures here")
    parser.add_argument("--from-json", type=Path, help="run nothing: render a --json file again")
    parser.add_argument("--venv", type=Path, default=BENCHES / ".venv")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--wrk-timeout", type=int, default=2, help="wrk's per-request timeout, s")
    parser.add_argument("--start-timeout", type=float, default=30.0)
    parser.add_argument("--stop-grace", type=float, default=10.0)
    parser.add_argument(
        "--wait-idle", type=float, default=3.0,
        help="before each run, wait up to this many s for the machine to be idle (0: don't)",
    )  # fmt: skip
    parser.add_argument("--noise-cores", type=float, default=0.2)
    parser.add_argument("--noise-retries", type=int, default=1)
    parser.add_argument("--rwsgi-label", help="how the installed rwsgi was built, for the report")
    parser.add_argument("--logs", type=Path, default=BENCHES / ".logs", help="server logs")
    args = check_args(parser, parser.parse_args(argv), SCENARIO_NAMES, SERVER_NAMES)
    return args


_VERSIONS = """
from importlib import metadata
out = []
for name in ("Django", "whitenoise"):
    try:
        out.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        out.append(f"{name} not installed")
print(", ".join(out))
"""


def collect(args: argparse.Namespace, scenario_defs: dict[str, Scenario]) -> dict:
    mode = args.rwsgi_mode
    if mode == "auto":
        mode = "command" if has_rwsgi_command(args.venv) else "cli"
    table = servers(mode)
    names = sorted(args.servers, key=lambda n: n != "rwsgi")
    missing = {name: table[name].installed(args.venv) for name in names}
    for name, why in missing.items():
        if why:
            log(f"{name}: {why}")
    versions = subprocess.run(
        [venv_python(args.venv), "-c", _VERSIONS], capture_output=True, text=True, check=False
    ).stdout.strip()
    data: dict = {
        "header": machine_header(args),
        "versions": f"{versions}, nginx {_nginx_version()}",
        "rwsgi_mode": (
            "`manage.py rwsgi_serve --noreload`" if mode == "command" else "the CLI, `--static-map`"
        ),
        "load_start": _loadavg(),
        "scenarios": args.scenarios,
        "noise_cores": args.noise_cores,
        "status": {},
        "commands": {},
        "runs": [],
        "ab": {
            "requests": args.ab_requests,
            "concurrency": args.ab_concurrency,
            "timeout": args.ab_timeout,
        },
        "ab_runs": [],
    }
    for name in args.scenarios:
        scenario = scenario_defs[name]
        unanswered = load_reference(args.venv, scenario)
        if unanswered:
            log(f"{name}: {unanswered}")
        status = {
            s: missing[s]
            or unanswered
            or (
                f"n/a: {', '.join(table[s].only)} only"
                if table[s].only and name not in table[s].only
                else None
            )
            for s in names
        }
        runnable = [s for s in names if not status[s]]
        data["status"][name] = status
        data["commands"][name] = {
            s: f"`{' '.join(display_command(table[s].command(args.venv, scenario, 0)))}`"
            + (f" ({table[s].note(scenario)})" if table[s].note(scenario) else "")
            for s in runnable
        }

        def one(server: str, round_no: int, scenario: Scenario = scenario) -> dict:
            load = _loadavg()
            logfile = args.logs / f"{scenario.name}-{server}-r{round_no}.log"
            run = measure_quietly(table[server], scenario, args, logfile)
            run["loadavg"] = load
            return run

        data["runs"] += interleave(runnable, scenario, args, one, _progress)
    hello = scenario_defs["django_hello"]
    if args.ab_rounds and not load_reference(args.venv, hello):
        ab_names = [s for s in names if not missing[s] and not table[s].only]
        ab_args = argparse.Namespace(**{**vars(args), "rounds": args.ab_rounds})
        data["ab_runs"] = interleave(
            ab_names,
            dataclasses.replace(hello, name="ab_hello"),  # for interleave's progress lines
            ab_args,
            lambda s, r: measure_ab(table[s], hello, args, args.logs / f"ab_hello-{s}-r{r}.log"),
            _ab_progress,
        )
    data["load_end"] = _loadavg()
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenario_defs = scenarios(make_static())
    if args.make_static:
        return 0
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        for tool in ("wrk", "ab"):
            if subprocess.run(["which", tool], capture_output=True, check=False).returncode:
                log(f"{tool} is not installed: run benches/setup.sh")
                return 2
        args.logs.mkdir(parents=True, exist_ok=True)
        nofile = raise_nofile(4096)
        if nofile < args.ab_concurrency + 256:
            log(f"RLIMIT_NOFILE is {nofile}: ab's {args.ab_concurrency} connections may fail")
        data = collect(args, scenario_defs)
        if args.json:
            args.json.write_text(json.dumps(data, indent=1))
    report = render(data, scenario_defs)
    print(report, flush=True)
    if args.publish:
        publish(report, TITLE)
        titles = {name: scenario_defs[name].title for name in data["scenarios"]}
        record("django_static", data, titles)
        rerender_charts(args.venv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
