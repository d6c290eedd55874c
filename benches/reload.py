"""Reloads and max-requests recycling under load: rwsgi against its peers.

    python benches/reload.py [--scenarios reload,recycle]
                             [--servers rwsgi,rwsgi-lazy,gunicorn,granian,uwsgi,uwsgi-chain]
                             [--duration 10] [--rate 400] [--output FILE [--append]]

Every server runs ``reload_app.py`` (10 ms per request, answers its code
version and worker pid) with 2 workers x 4 threads on 127.0.0.1, loaded by the
generator below: 16 clients, half keeping their connection, half opening a new
one per request, paced to ``--rate`` requests/s in all. ``reload``: steady
load for ``--duration`` s, then three times: rewrite ``VERSION`` in the
server's copy of the app and reload it (a signal, or uWSGI's touch file),
``--reload-gap`` s apart, then ``--tail`` s more. ``recycle``: the servers'
max-requests (500, jitter 50 where there is one) under 1.5 x ``--duration``
s of load. Every failed request is counted by kind (refused, reset, closed,
timeout, non-2xx, wrong body). README.md explains the columns.

The generator (``Load``) is also what ``fleet.py`` drives inside a network
namespace (``--generate``). Only the standard library.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import recorded
from compare import stop_server

BENCHES = Path(__file__).resolve().parent
HOST = "127.0.0.1"
KINDS = ("refused", "reset", "closed", "timeout", "status", "body", "other")
KIND_TITLES = {
    "refused": "refused",
    "reset": "reset",
    "closed": "closed",
    "timeout": "timeout",
    "status": "non-2xx",
    "body": "wrong body",
    "other": "other",
}
# A flag the installed rwsgi does not know: argparse's words, or rwsgi's own.
UNKNOWN_FLAG = re.compile(r"unrecognized arguments?: (.*)|unknown option '?([^' ]+)")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The load generator
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    """What to send, how often, and what a right answer looks like.

    ``answer`` is a regex the whole body must match; ``post_share`` of the
    requests are POSTs of ``post_bytes`` (their answer must say ``read N``).
    ``rate`` is requests/s over all clients (0: each client as fast as it is
    answered); ``keepalive_share`` of the clients keep their connection.
    """

    host: str
    port: int
    path: str = "/"
    answer: str = r"reload_app v(?P<version>\d+) pid (?P<pid>\d+)\n"
    clients: int = 16
    keepalive_share: float = 0.5
    rate: float = 400.0
    timeout: float = 5.0
    post_share: float = 0.0
    post_bytes: int = 0


class _Closed(Exception):
    """The server closed the connection before the whole answer."""


def _read_answer(sock: socket.socket, buf: bytearray) -> tuple[int, bytes, bool, int]:
    """One HTTP/1.x answer: (status, body, server wants close, bytes seen)."""
    seen = 0

    def more() -> None:
        nonlocal seen
        chunk = sock.recv(65536)
        if not chunk:
            raise _Closed(seen)
        seen += len(chunk)
        buf.extend(chunk)

    while b"\r\n\r\n" not in buf:
        more()
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[: end + 4]
    parts = lines[0].split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    close = headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            while b"\r\n" not in buf:
                more()
            size_end = buf.index(b"\r\n")
            size = int(bytes(buf[:size_end]).split(b";")[0], 16)
            while len(buf) < size_end + 2 + size + 2:
                more()
            body += buf[size_end + 2 : size_end + 2 + size]
            del buf[: size_end + 2 + size + 2]
            if size == 0:
                return status, bytes(body), close, seen
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(buf) < length:
            more()
        body = bytes(buf[:length])
        del buf[:length]
        return status, body, close, seen
    try:  # no length: the body ends when the server closes
        while True:
            more()
    except _Closed:
        body = bytes(buf)
        buf.clear()
        return status, body, True, seen


class Load:
    """``spec.clients`` threads sending requests until ``stop()``.

    Each request becomes one record ``[t, kind, reused, method, fields]``:
    ``t`` the monotonic time it ended, ``kind`` "ok" or one of ``KINDS``,
    ``reused`` whether it went on a kept-alive connection, ``fields`` the
    answer's named groups (version, pid, host...) when ok, else what went
    wrong. ``time.monotonic`` is the machine's, the same in every network
    namespace, so records line up with the harness's own clock.
    """

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.records: list[list] = []
        self._stop = threading.Event()
        self._answer = re.compile(spec.answer)
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True)
            for i in range(spec.clients)
        ]
        self.started = 0.0
        self.stopped = 0.0

    def start(self) -> Load:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[list]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.spec.timeout + 2)
        self.stopped = time.monotonic()
        return self.records

    def _request(self, post: bool, keep: bool) -> bytes:
        spec = self.spec
        head = (
            f"{'POST' if post else 'GET'} {spec.path} HTTP/1.1\r\n"
            f"Host: {spec.host}:{spec.port}\r\n" + ("" if keep else "Connection: close\r\n")
        )
        if post:
            head += (
                f"Content-Type: application/octet-stream\r\nContent-Length: {spec.post_bytes}\r\n"
            )
        return (head + "\r\n").encode() + (b"p" * spec.post_bytes if post else b"")

    def _client(self, index: int) -> None:
        spec = self.spec
        keep = index < round(spec.clients * spec.keepalive_share)
        interval = spec.clients / spec.rate if spec.rate > 0 else 0.0
        rng = random.Random(index)
        # Spread the clients' first requests over one interval.
        next_at = time.monotonic() + interval * index / max(spec.clients, 1)
        sock: socket.socket | None = None
        buf = bytearray()
        while not self._stop.is_set():
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    if self._stop.wait(delay):
                        break
                elif delay < -1.0:
                    next_at = time.monotonic()  # a long stall: no burst to catch up
                next_at += interval
            post = rng.random() < spec.post_share
            reused = sock is not None
            kind, fields = "ok", ""
            try:
                if sock is None:
                    sock = socket.create_connection((spec.host, spec.port), timeout=spec.timeout)
                    buf.clear()
                sock.sendall(self._request(post, keep))
                status, body, close, _ = _read_answer(sock, buf)
                if close or not keep:
                    sock.close()
                    sock = None
                if not 200 <= status < 300:
                    kind, fields = "status", str(status)
                else:
                    match = self._answer.fullmatch(body.decode("latin-1"))
                    want_read = f"{spec.post_bytes}" if post else None
                    if match is None or match.groupdict().get("read") != want_read:
                        kind, fields = "body", body[:60].decode("latin-1")
                    else:
                        fields = {k: v for k, v in match.groupdict().items() if v is not None}
            except ConnectionRefusedError:
                kind = "refused"
            except (ConnectionResetError, BrokenPipeError) as error:
                kind, fields = "reset", type(error).__name__
            except _Closed as closed:
                kind, fields = "closed", f"after {closed.args[0]} bytes"
            except TimeoutError:
                kind = "timeout"
            except (OSError, ValueError) as error:
                kind, fields = "other", f"{type(error).__name__}: {error}"
            if kind != "ok" and sock is not None:
                sock.close()
                sock = None
            self.records.append([time.monotonic(), kind, reused, "POST" if post else "GET", fields])
        if sock is not None:
            sock.close()


def generate_main(spec_json: str) -> int:
    """``--generate SPEC``: run a ``Load`` until stdin closes (or SIGTERM),
    then print its records as one JSON line (fleet.py runs this in a
    network namespace)."""
    spec = LoadSpec(**json.loads(spec_json))
    load = Load(spec).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print("generating", flush=True)
    done.wait(3600)
    records = load.stop()
    print(json.dumps({"started": load.started, "stopped": load.stopped, "records": records}))
    return 0


# --------------------------------------------------------------------------
# What the records say
# --------------------------------------------------------------------------


def failures(records: list[list]) -> dict[str, int]:
    counts = dict.fromkeys(KINDS, 0)
    for record in records:
        if record[1] != "ok":
            counts[record[1]] += 1
    return counts


def per_second(records: list[list], start: float, end: float) -> list[int]:
    """Answered requests in each whole second from ``start`` (the last,
    partial second left out)."""
    seconds = int(end - start)
    counts = [0] * max(seconds, 0)
    for record in records:
        if record[1] == "ok":
            second = int(record[0] - start)
            if 0 <= second < seconds:
                counts[second] += 1
    return counts


def worst_window(
    records: list[list], start: float, end: float, step: float = 0.1
) -> tuple[int, float]:
    """The fewest answers in any 1 s window from ``start`` to ``end``, the
    windows sliding by ``step`` (a dip across two whole seconds still shows
    whole), and where that window starts (s after ``start``)."""
    times = sorted(r[0] for r in records if r[1] == "ok")
    worst, worst_at = None, 0.0
    at = start
    while at + 1.0 <= end:
        count = bisect.bisect_left(times, at + 1.0) - bisect.bisect_left(times, at)
        if worst is None or count < worst:
            worst, worst_at = count, at - start
        at += step
    return worst or 0, worst_at


def throughput(records: list[list], origin: float, end: float) -> dict:
    """Per-second figures of the load that began at ``origin``, from
    ``RAMP_S`` after it (``worst_at`` is from ``origin``)."""
    start = origin + RAMP_S
    counts = per_second(records, start, end)
    if not counts:
        return {"median": 0.0, "worst": 0, "worst_at": None, "dip": 0.0, "seconds": []}
    median = statistics.median(counts)
    worst, worst_at = worst_window(records, start, end)
    return {
        "median": median,
        "worst": worst,
        "worst_at": round(worst_at + start - origin, 1),
        "dip": worst / median if median else 0.0,
        "seconds": counts,
    }


def first_new(records: list[list], since: float, version: int) -> float | None:
    """Seconds from ``since`` to the first answer of ``version`` or later."""
    for record in records:
        if record[0] >= since and record[1] == "ok" and int(record[4]["version"]) >= version:
            return record[0] - since
    return None


def last_old(records: list[list], since: float, version: int) -> float | None:
    """Seconds from ``since`` to the last answer older than ``version``."""
    last = None
    for record in records:
        if record[0] >= since and record[1] == "ok" and int(record[4]["version"]) < version:
            last = record[0] - since
    return last


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


# --------------------------------------------------------------------------
# The servers
# --------------------------------------------------------------------------

WORKERS = 2
# The clients' first requests are spread over the first interval, and new
# connections warm up: the per-second figures start after this.
RAMP_S = 1.0
THREADS = 4


@dataclasses.dataclass(frozen=True)
class Server:
    """How to start one server on the app in ``appdir``, reload it, and
    recycle its workers.

    ``reload`` is a signal name, or "touch" (uWSGI's --touch-chain-reload
    file); ``recycle`` the flags that turn on max-requests, None where the
    server has none; ``ready`` a regex its log matches once per started worker.
    """

    name: str
    base: Callable[[Path, int, Path], list[str]]
    ready: str
    reload: str
    recycle: list[str] | None
    binary: str  # what must be in the venv's bin/
    note: str = ""


def _py(venv: Path) -> str:
    return str(venv / "bin" / "python")


def _rwsgi(lazy: bool) -> Callable[[Path, int, Path], list[str]]:
    def command(venv: Path, port: int, tmp: Path) -> list[str]:
        return [
            _py(venv), "-m", "rwsgi", "reload_app:app", "--http", f"{HOST}:{port}",
            "--workers", str(WORKERS), "--threads", str(THREADS), *(["--lazy"] if lazy else []),
        ]  # fmt: skip

    return command


def _gunicorn(venv: Path, port: int, tmp: Path) -> list[str]:
    return [
        str(venv / "bin" / "gunicorn"), "--bind", f"{HOST}:{port}", "--workers", str(WORKERS),
        "--worker-class", "gthread", "--threads", str(THREADS), "--backlog", "1024",
        "reload_app:app",
    ]  # fmt: skip


def _granian(venv: Path, port: int, tmp: Path) -> list[str]:
    return [
        str(venv / "bin" / "granian"), "--interface", "wsgi", "--host", HOST, "--port", str(port),
        "--workers", str(WORKERS), "--blocking-threads", str(THREADS), "--http", "1", "--no-ws",
        "reload_app:app",
    ]  # fmt: skip


def _uwsgi(chain: bool) -> Callable[[Path, int, Path], list[str]]:
    def command(venv: Path, port: int, tmp: Path) -> list[str]:
        extra = ["--lazy-apps", "--touch-chain-reload", str(tmp / "chain-reload")] if chain else []
        return [
            str(venv / "bin" / "uwsgi"), "--http-socket", f"{HOST}:{port}", "--master",
            "--processes", str(WORKERS), "--threads", str(THREADS), "--module", "reload_app:app",
            "--listen", "1024", "--disable-logging", "--die-on-term", "--need-app", "--strict",
            "--add-header", "Connection: close", *extra,
        ]  # fmt: skip

    return command


RECYCLE = ["--max-requests", "500", "--max-requests-jitter", "50"]
SERVERS = {
    s.name: s
    for s in (
        Server(
            "rwsgi", _rwsgi(False), r"worker \d+ \(pid \d+\) ready", "SIGHUP", RECYCLE, "python"
        ),
        Server(
            "rwsgi-lazy",
            _rwsgi(True),
            r"worker \d+ \(pid \d+\) ready",
            "SIGHUP",
            RECYCLE,
            "python",
            note="--lazy: each worker imports the app",
        ),
        Server(
            "gunicorn",
            _gunicorn,
            r"Booting worker with pid",
            "SIGHUP",
            RECYCLE,
            "gunicorn",
            note="gthread; HUP",
        ),
        Server(
            "granian",
            _granian,
            r"Started worker-\d+",
            "SIGHUP",
            None,
            "granian",
            note="no max-requests",
        ),
        Server(
            "uwsgi",
            _uwsgi(False),
            r"spawned uWSGI worker \d+",
            "SIGHUP",
            ["--max-requests", "500"],
            "uwsgi",
            note="--http-socket closes every connection: --add-header says so, and the "
            "keep-alive clients reconnect (--http11-socket pins a thread to each kept "
            "connection, and the 8 kept ones starve the others); max-requests has no jitter",
        ),
        Server(
            "uwsgi-chain",
            _uwsgi(True),
            r"spawned uWSGI worker \d+",
            "touch",
            None,
            "uwsgi",
            note="--lazy-apps --touch-chain-reload: workers replaced one at a time; recycling "
            "is the uwsgi row's",
        ),
    )
}


def display(command: list[str], tmp: Path) -> str:
    out = []
    for part in command:
        part = part.replace(str(tmp), "TMP")
        part = re.sub(r".*/\.venv[^/]*/bin/", "", part)
        out.append(part)
    text = (
        " ".join(f"'{p}'" if " " in p else p for p in out)
        .replace(f"{HOST}:0", f"{HOST}:PORT")
        .replace("--port 0", "--port PORT")
    )
    return f"`{text}`"


# --------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------


class RunFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 4) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "(no output)"


def get(port: int, timeout: float = 2.0) -> str:
    """One GET on a new connection: the body, or raises OSError / RunFailed."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        status, body, _, _ = _read_answer(sock, bytearray())
    if status != 200:
        raise RunFailed(f"status {status}")
    return body.decode("latin-1")


def wait_ready(proc: subprocess.Popen[bytes], logfile: Path, port: int, server: Server,
               timeout: float) -> float:  # fmt: skip
    """Until every worker said it is ready and a GET gets the app's v1 answer."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() < start + timeout:
        text = logfile.read_text(errors="replace")
        if proc.poll() is not None:
            unknown = UNKNOWN_FLAG.search(text)
            if unknown:
                raise RunFailed(
                    "not supported by this build: it rejects "
                    + (unknown.group(1) or unknown.group(2))
                )
            raise RunFailed(f"exited with status {proc.returncode}: {tail(logfile)}")
        seen = len(re.findall(server.ready, text))
        if seen >= WORKERS:
            try:
                body = get(port)
            except (OSError, RunFailed, _Closed, ValueError) as error:
                last = f"{type(error).__name__}: {error}"
            else:
                if not body.startswith("reload_app v1 "):
                    raise RunFailed(f"wrong answer when ready: {body[:60]!r}")
                return time.monotonic() - start
        else:
            last = f"{seen} of {WORKERS} workers ready"
        time.sleep(0.1)
    raise RunFailed(f"not ready after {timeout:.0f} s ({last}): {tail(logfile)}")


def write_version(appfile: Path, version: int) -> None:
    """The source change before a reload: the app's ``VERSION`` line."""
    text = appfile.read_text()
    appfile.write_text(re.sub(r"^VERSION = \d+$", f"VERSION = {version}", text, flags=re.M))


def import_time(venv: Path) -> float:
    """Seconds the app's import takes (measured in a fresh interpreter)."""
    done = subprocess.run(
        [_py(venv), "-c", "import time; t = time.perf_counter(); import reload_app; "
         "print(time.perf_counter() - t)"],
        cwd=BENCHES, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    try:
        return float(done.stdout.strip())
    except ValueError:
        return 0.0


def run_one(server: Server, scenario: str, args: argparse.Namespace) -> dict:
    """Start, load (with reloads or recycling), stop; the run's figures."""
    result: dict = {"server": server.name, "scenario": scenario}
    tmp = Path(tempfile.mkdtemp(prefix=f"rwsgi-reload-{server.name}-"))
    appfile = tmp / "reload_app.py"
    shutil.copy(BENCHES / "reload_app.py", appfile)
    (tmp / "chain-reload").touch()
    port = free_port()
    command = server.base(args.venv, port, tmp) + (
        server.recycle or [] if scenario == "recycle" else []
    )
    result["command"] = display(
        server.base(args.venv, 0, tmp) + (server.recycle or [] if scenario == "recycle" else []),
        tmp,
    )
    logfile = args.logs / f"reload-{scenario}-{server.name}.log"
    env = dict(os.environ, PYTHONPATH=str(tmp), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    proc: subprocess.Popen[bytes] | None = None
    load: Load | None = None
    try:
        with open(logfile, "wb") as out:
            proc = subprocess.Popen(
                command, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        result["ready_s"] = wait_ready(proc, logfile, port, server, args.start_timeout)
        booted = len(re.findall(server.ready, logfile.read_text(errors="replace")))
        spec = LoadSpec(HOST, port, clients=args.clients, rate=args.rate, timeout=args.timeout)
        load = Load(spec).start()
        reloads: list[dict] = []
        if scenario == "reload":
            time.sleep(args.duration)
            for number in (2, 3, 4):
                if proc.poll() is not None:
                    break
                write_version(appfile, number)
                at = time.monotonic()
                if server.reload == "touch":
                    os.utime(tmp / "chain-reload")
                else:
                    os.kill(proc.pid, getattr(signal, server.reload))
                reloads.append({"version": number, "at": at})
                time.sleep(args.reload_gap if number < 4 else args.tail)
        else:
            time.sleep(args.duration * 1.5)
        alive = proc.poll() is None
        records = load.stop()
        end = load.stopped
        last_pids = {
            int(r[4]["pid"]) for r in records if r[1] == "ok" and r[0] > end - 1.0
        }  # the workers answering at the end
        result.update(
            requests=len(records),
            failed=failures(records),
            reused_closed=sum(1 for r in records if r[1] in ("closed", "reset") and r[2]),
            throughput=throughput(records, load.started, end),
            seconds=end - load.started,
            master_alive=alive,
            workers_are_children=bool(last_pids)
            and all(parent_pid(pid) == proc.pid for pid in last_pids),
            pids_seen=len({int(r[4]["pid"]) for r in records if r[1] == "ok"}),
            worker_starts_logged=len(re.findall(server.ready, logfile.read_text(errors="replace")))
            - booted,
            failure_times=[round(r[0] - load.started, 2) for r in records if r[1] != "ok"][:50],
        )
        result["reloads"] = [
            {
                "version": r["version"],
                "at_s": round(r["at"] - load.started, 2),
                "new_after_s": first_new(records, r["at"], r["version"]),
                "old_until_s": last_old(records, r["at"], r["version"]),
            }
            for r in reloads
        ]
    except RunFailed as error:
        result["failed_run"] = str(error)
    finally:
        if load is not None and not load.stopped:
            load.stop()
        if proc is not None:
            note = stop_server(proc, args.stop_grace)[1]
            if note:
                result["stop_note"] = note
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def progress(run: dict) -> str:
    if "failed_run" in run:
        return f"FAILED {run['failed_run']}"
    t = run["throughput"]
    failed = {k: v for k, v in run["failed"].items() if v}
    text = (
        f"{run['requests']:,} requests, failed {failed or 0}, {t['median']:.0f} req/s median, "
        f"worst second {t['worst']} ({t['dip']:.2f}), pids seen {run['pids_seen']}, "
        f"master alive {run['master_alive']}"
    )
    for r in run.get("reloads", []):
        new = r["new_after_s"]
        text += f"; v{r['version']} after {'-' if new is None else f'{new:.2f} s'}"
    return text


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def table(runs: list[dict], scenario: str, status: dict[str, str], budget: float) -> str:
    kinds = " | ".join(KIND_TITLES[k] for k in KINDS)
    if scenario == "reload":
        extra_head, extra_rule = (
            "new version answering after reloads 1 / 2 / 3 | master pid kept",
            "---|---",
        )
    else:
        extra_head, extra_rule = "worker pids seen | worker starts logged", "---:|---:"
    lines = [
        f"| server | requests | failed | {kinds} | req/s median | worst second | worst / median | "
        f"{extra_head} |",
        "|---|---:|---:|" + "---:|" * len(KINDS) + "---:|---:|---:|" + extra_rule + "|",
    ]
    by_name = {r["server"]: r for r in runs}
    for name, why in status.items():
        run = by_name.get(name)
        if why or run is None:
            lines.append(f"| {name} | {why or 'not run'} |")
            continue
        if "failed_run" in run:
            lines.append(f"| {name} | failed: {run['failed_run'][:200]} |")
            continue
        t = run["throughput"]
        cells = [
            name, f"{run['requests']:,}", f"{sum(run['failed'].values()):,}",
            *(f"{run['failed'][k]:,}" for k in KINDS),
            f"{t['median']:.0f}", f"{t['worst']}", f"{t['dip']:.2f}",
        ]  # fmt: skip
        if scenario == "reload":
            cells.append(" / ".join(_s(r["new_after_s"]) for r in run["reloads"]))
            kept = run["master_alive"] and run["workers_are_children"]
            cells.append("yes" if kept else "no")
        else:
            cells += [str(run["pids_seen"]), str(run["worker_starts_logged"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(runs: list[dict], scenario: str, budget: float) -> list[str]:
    out = []
    for run in runs:
        if "failed_run" in run:
            continue
        name = run["server"]
        if run["reused_closed"]:
            out.append(
                f"{name}: {run['reused_closed']} of the reset/closed requests were on a kept-alive "
                "connection the server closed (a client that retries idempotent requests on a "
                "reused connection, as urllib3 does, would have retried them)"
            )
        if run["failure_times"]:
            out.append(
                f"{name}: failures at (s into the load): "
                + ", ".join(str(t) for t in run["failure_times"][:12])
                + (" ..." if len(run["failure_times"]) > 12 else "")
            )
        if scenario == "reload":
            old = [r["old_until_s"] for r in run["reloads"]]
            out.append(
                f"{name}: last answer of the old code after each reload: "
                + " / ".join(_s(v) for v in old)
            )
            late = [
                r for r in run["reloads"] if r["new_after_s"] is None or r["new_after_s"] > budget
            ]
            failed = sum(run["failed"].values())
            verdict = (
                failed == 0
                and run["failed"]["refused"] == 0
                and run["master_alive"]
                and run["workers_are_children"]
                and not late
                and run["throughput"]["median"] >= 200
            )
            out.append(
                f"{name}: acceptance (0 failed, 0 refused, master kept, each new version within "
                f"{budget:.2f} s, >= 200 req/s): {'met' if verdict else 'NOT met'}"
            )
        if "stop_note" in run:
            out.append(f"{name}: {run['stop_note']}")
        worst_at = run["throughput"]["worst_at"]
        if worst_at is not None:
            out.append(f"{name}: the worst 1 s window began {worst_at:.1f} s into the load")
    return out


def render(data: dict) -> str:
    args = data["args"]
    parts = [
        "## Reloads and recycling under load (benches/reload.py)",
        "",
        f"- date: {data['date']}; nproc {os.cpu_count()}; versions: {data['versions']}",
        f"- app `reload_app:app` (10 ms sleep, answers its VERSION and pid), {WORKERS} workers x "
        f"{THREADS} threads; load: {args['clients']} clients ({args['clients'] // 2} keep-alive, "
        f"{args['clients'] - args['clients'] // 2} a new connection per request), "
        + (f"paced to {args['rate']:.0f} req/s in all" if args["rate"] else "closed loop")
        + f", {args['timeout']:.0f} s timeout per request; the generator shares the "
        "machine's cores",
        "- failure kinds: refused (connect refused), reset (ECONNRESET/EPIPE), closed (EOF before "
        "the whole answer), timeout, non-2xx, wrong body; req/s median: the median whole second "
        f"from {RAMP_S:.0f} s after the load began; worst second: the fewest answers in any 1 s "
        "window (sliding by 0.1 s), and its share of the median",
    ]
    for scenario in data["scenarios"]:
        runs = [r for r in data["runs"] if r["scenario"] == scenario]
        if scenario == "reload":
            parts += [
                "",
                f"### reload: three reloads {args['reload_gap']:.0f} s apart, each after a source "
                f"change, after {args['duration']:.0f} s of steady load, then "
                f"{args['tail']:.0f} s more",
                "",
                "A reload is SIGHUP to the master (gunicorn's HUP, granian's and uWSGI's "
                "SIGHUP), or touching uWSGI's --touch-chain-reload file. \"new version "
                'answering after": from the '
                'signal (or touch) to the first answer of the new code; "master pid kept": the '
                "process started is alive at the end and is the parent of the workers answering in "
                "the last second. The acceptance budget is 1 s + the app's import time "
                f"({data['import_s'] * 1000:.1f} ms).",
            ]
        else:
            parts += [
                "",
                f"### recycle: max-requests 500 (jitter 50 where the server has it), "
                f"{args['duration'] * 1.5:.0f} s of load",
                "",
                '"worker pids seen": distinct worker pids in the answers (2: no recycling); '
                '"worker starts logged": workers the log says were started after the first '
                f"{WORKERS}.",
            ]
        parts += ["", table(runs, scenario, data["status"][scenario], data["budget_s"]), ""]
        parts += ["<details><summary>commands</summary>", ""]
        for run in runs:
            note = SERVERS[run["server"]].note
            parts.append(f"- {run['server']}: {run['command']}" + (f" ({note})" if note else ""))
        parts += ["", "</details>", ""]
        found = notes(runs, scenario, data["budget_s"])
        if found:
            parts += ["Notes:", ""] + [f"- {n}" for n in found] + [""]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def versions(venv: Path) -> str:
    done = subprocess.run(
        [_py(venv), "-c", "import importlib.metadata as m\n"
         "for n in ('rwsgi', 'gunicorn', 'granian', 'uWSGI'):\n"
         "    try: print(n, m.version(n))\n"
         "    except Exception: print(n, 'missing')"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return ", ".join(done.stdout.split("\n")[:-1]) or "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="reload,recycle", help="comma-separated")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument(
        "--duration", type=float, default=10,
        help="seconds of steady load before the first reload; recycle loads 1.5 x this",
    )  # fmt: skip
    parser.add_argument("--reload-gap", type=float, default=3, help="seconds between reloads")
    parser.add_argument("--tail", type=float, default=3, help="seconds of load after the last")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=400, help="req/s in all; 0: closed loop")
    parser.add_argument("--timeout", type=float, default=5, help="per request, s")
    parser.add_argument("--start-timeout", type=float, default=30)
    parser.add_argument("--stop-grace", type=float, default=10)
    parser.add_argument("--venv", type=Path, default=BENCHES / ".venv")
    parser.add_argument("--logs", type=Path, default=BENCHES / ".logs")
    parser.add_argument("--output", type=Path, help="also write the report (markdown) here")
    parser.add_argument("--append", action="store_true", help="add to the end of --output")
    parser.add_argument("--json", type=Path, help="write every run's raw figures here")
    parser.add_argument("--from-json", type=Path, help="run nothing: render a --json file again")
    parser.add_argument("--generate", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.servers = [s for s in args.servers.split(",") if s]
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r} (known: {', '.join(SERVERS)})")
    for name in args.scenarios:
        if name not in ("reload", "recycle"):
            parser.error(f"unknown scenario {name!r} (known: reload, recycle)")
    return args


def collect(args: argparse.Namespace) -> dict:
    args.logs.mkdir(parents=True, exist_ok=True)
    imported = import_time(args.venv)
    data: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": versions(args.venv),
        "args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, list))},
        "scenarios": args.scenarios,
        "import_s": imported,
        "budget_s": 1.0 + imported,
        "status": {},
        "runs": [],
    }
    for scenario in args.scenarios:
        status: dict[str, str] = {}
        for name in args.servers:
            server = SERVERS[name]
            if not (args.venv / "bin" / server.binary).exists():
                status[name] = f"not installed (no {server.binary} in {args.venv}/bin)"
            elif scenario == "recycle" and server.recycle is None:
                status[name] = "n/a: " + ("no max-requests" if name == "granian" else "see uwsgi")
            else:
                status[name] = ""
        data["status"][scenario] = status
        for name in args.servers:
            if status[name]:
                continue
            run = run_one(SERVERS[name], scenario, args)
            data["runs"].append(run)
            log(f"[{scenario}] {name}: {progress(run)}")
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.generate:
        return generate_main(args.generate)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        data = collect(args)
        if args.json:
            args.json.write_text(json.dumps(data, indent=1))
    publish(render(data), args.output, args.append, bench="reload", data=data)
    return 0


def publish(
    report: str, output: Path | None, append: bool, *, bench: str = "", data: dict | None = None
) -> None:
    """Print the report and, with --output, write it (--append: after what is
    there); when that is RESULTS.md, ``data`` is recorded as results/BENCH.json."""
    print(report, flush=True)
    if output:
        if append and output.exists():
            output.write_text(output.read_text().rstrip("\n") + "\n\n" + report)
        else:
            output.write_text(report)
        log(f"wrote {output}")
        if bench and data is not None and recorded.is_results(output):
            recorded.record(bench, data, {})


if __name__ == "__main__":
    sys.exit(main())
