"""rwsgi against its peers: one wrk run per server and scenario, in one session.

    python benches/compare.py [--scenarios hello,sleep,get1m,post1m]
                              [--servers rwsgi,hyper,bjoern,granian,gunicorn,uwsgi,waitress]
                              [--duration 8] [--rounds 3] [--output FILE]

Every server runs the same app from ``apps.py`` with the same workers and
threads, on 127.0.0.1, from the venv that ``setup.sh`` makes. For each scenario
the servers are interleaved over the rounds (the order rotates each round), and
each run is: start the server in a new session, wait until all its workers say
they are ready and one request gets the right answer, a short warm-up, then the
measured wrk run with /proc sampled around it, then stop the server by its PID
(its process group after a grace period). README.md explains every column.

Only the standard library: the harness runs under any Python 3.10+.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import http.client
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

BENCHES = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHES))
import apps  # noqa: E402  (the expected answers come from the apps themselves)

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
POST_BODY = b"x" * apps.ONE_MIB  # what wrk.lua sends: string.rep("x", n)


# --------------------------------------------------------------------------
# Scenarios and servers
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    app: str
    workers: int
    threads: int
    connections: int
    post_bytes: int = 0

    def expected(self) -> bytes:
        return {"get1m": apps.BIG, "post1m": POST_BODY}.get(self.name, apps.HELLO)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("hello", "hello world", "hello", workers=2, threads=1, connections=100),
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
    )
}


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


def _bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def _python(venv: Path) -> str:
    return str(_bin(venv, "python"))


def _needs_import(module: str) -> Callable[[Path], str | None]:
    def check(venv: Path) -> str | None:
        if not _bin(venv, "python").exists():
            return f"not installed (no venv at {venv}; run benches/setup.sh)"
        probe = subprocess.run(
            [_python(venv), "-c", f"import {module}"],
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
    return [
        _python(venv), "-m", "rwsgi", f"apps:{s.app}", "--http", f"{HOST}:{port}",
        "--workers", str(s.workers), "--threads", str(s.threads),
    ]  # fmt: skip


def _bjoern(venv: Path, s: Scenario, port: int) -> list[str]:
    return [_python(venv), "prefork.py", "bjoern", f"apps:{s.app}", HOST, str(port), str(s.workers)]


def _granian(venv: Path, s: Scenario, port: int) -> list[str]:
    return [
        str(_bin(venv, "granian")), "--interface", "wsgi", "--host", HOST, "--port", str(port),
        "--workers", str(s.workers), "--blocking-threads", str(s.threads),
        "--http", "1", "--no-ws", f"apps:{s.app}",
    ]  # fmt: skip


def _gunicorn(venv: Path, s: Scenario, port: int) -> list[str]:
    worker = ["--worker-class", "gthread", "--threads", str(s.threads)] if s.threads > 1 else []
    return [
        str(_bin(venv, "gunicorn")), "--bind", f"{HOST}:{port}", "--workers", str(s.workers),
        *worker, "--backlog", "1024", f"apps:{s.app}",
    ]  # fmt: skip


def _uwsgi(venv: Path, s: Scenario, port: int) -> list[str]:
    threads = ["--threads", str(s.threads)] if s.threads > 1 else []
    return [
        str(_bin(venv, "uwsgi")), "--http-socket", f"{HOST}:{port}", "--master",
        "--processes", str(s.workers), *threads, "--module", f"apps:{s.app}",
        "--listen", "1024", "--disable-logging", "--die-on-term", "--need-app", "--strict",
    ]  # fmt: skip


def _waitress(venv: Path, s: Scenario, port: int) -> list[str]:
    return [
        _python(venv), "prefork.py", "waitress", f"apps:{s.app}", HOST, str(port),
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
        Server(
            "hyper",
            _hyper,
            _needs_file(lambda venv: HYPER_BIN),
            ready=r"hyper_bare listening",
            ready_once=True,
            only=("hello",),
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
            _needs_file(lambda v: _bin(v, "granian")),
            ready=r"Started worker-\d+",
        ),
        Server(
            "gunicorn",
            _gunicorn,
            _needs_file(lambda v: _bin(v, "gunicorn")),
            ready=r"Booting worker with pid",
            note=lambda s: "gthread" if s.threads > 1 else "sync",
        ),
        Server(
            "uwsgi",
            _uwsgi,
            _needs_file(lambda v: _bin(v, "uwsgi")),
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


# --------------------------------------------------------------------------
# /proc: the server's process tree, its CPU, context switches and memory
# --------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # comm may hold spaces or parentheses: the fields start after the last ")".
    return text[text.rindex(")") + 2 :].split()


def session_pids(sid: int) -> list[int]:
    """Every process of the session the server was started in (master + workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            # fields[0] is field 3 (state): session is field 6.
            if fields is not None and int(fields[3]) == sid:
                pids.append(int(entry))
    return pids


def cpu_ticks(pids: Iterable[int]) -> int:
    """utime+stime of the processes, plus what their reaped children used."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # fields 14-17: utime, stime, cutime, cstime
            total += sum(int(x) for x in fields[11:15])
    return total


def context_switches(pids: Iterable[int]) -> int:
    """Voluntary + nonvoluntary switches of every thread of the processes."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            status = _read(f"/proc/{pid}/task/{tid}/status")
            if status is None:
                continue
            for line in status.splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        statm = _read(f"/proc/{pid}/statm")
        if statm is not None:
            total += int(statm.split()[1]) * PAGE_SIZE
    return total


def machine_busy_ticks() -> int:
    """Busy (not idle, not iowait) CPU ticks of the whole machine, from /proc/stat."""
    fields = [int(x) for x in (_read("/proc/stat") or "cpu 0 0 0 0").split("\n")[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest is inside user)
    return sum(fields[:8]) - fields[3] - (fields[4] if len(fields) > 4 else 0)


def children_cpu_s() -> float:
    """CPU seconds of this process's reaped children (wrk, once it exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_until_idle(limit: float, busy_cores: float = 0.15) -> float:
    """Wait (at most ``limit`` s) until the machine spends under ``busy_cores``
    of a core on anything; returns the busy cores of the last 1 s sample."""
    deadline = time.monotonic() + limit
    while True:
        b0 = machine_busy_ticks()
        time.sleep(1.0)
        b1 = machine_busy_ticks()
        cores = (b1 - b0) / CLK_TCK
        if cores < busy_cores or time.monotonic() >= deadline:
            return cores


class RssSampler(threading.Thread):
    """Peak summed RSS of the session, sampled every 100 ms.

    The process list is rescanned once a second only, so sampling costs the
    two shared cores next to nothing.
    """

    def __init__(self, sid: int) -> None:
        super().__init__(daemon=True)
        self.sid = sid
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        pids: list[int] = []
        last_scan = 0.0
        while True:
            now = time.monotonic()
            if now - last_scan >= 1.0:
                pids, last_scan = session_pids(self.sid), now
            self.peak = max(self.peak, rss_bytes(pids))
            if self._stop_event.wait(0.1):
                return

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


# --------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------


class RunFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def probe(scenario: Scenario, port: int, timeout: float = 5.0) -> str | None:
    """One request like wrk's; None if the answer is right, else what was wrong."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        if scenario.post_bytes:
            conn.request(
                "POST", "/", body=POST_BODY, headers={"Content-Type": "application/octet-stream"}
            )
        else:
            conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        return f"status {response.status}"
    if body != scenario.expected():
        return f"wrong body ({len(body)} bytes, expected {len(scenario.expected())})"
    return None


def tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "(no output)"


def wait_ready(
    server: Server, scenario: Scenario, proc: subprocess.Popen[bytes], logfile: Path, port: int,
    timeout: float,
) -> float:  # fmt: skip
    """Block until every worker is ready and one request is answered right."""
    start = time.monotonic()
    deadline = start + timeout
    wanted = 1 if server.ready_once else scenario.workers
    last_error = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RunFailed(f"exited with status {proc.returncode}: {tail(logfile)}")
        seen = (
            len(re.findall(server.ready, logfile.read_text(errors="replace")))
            if server.ready
            else wanted
        )
        if seen >= wanted:
            try:
                wrong = probe(scenario, port)
            except OSError as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                if wrong is not None:
                    raise RunFailed(f"wrong answer to the probe request: {wrong}")
                return time.monotonic() - start
        else:
            last_error = f"{seen} of {wanted} workers ready"
        time.sleep(0.1)
    raise RunFailed(f"not ready after {timeout:.0f} s ({last_error}): {tail(logfile)}")


def stop_server(proc: subprocess.Popen[bytes], grace: float) -> tuple[float, str]:
    """SIGTERM to the PID we started, then SIGKILL to its process group.

    Returns the seconds it took and a note when it had to be killed.
    """
    start = time.monotonic()
    note = ""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            note = f"did not stop within {grace:.0f} s of SIGTERM; killed"
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers the master left behind
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(5)
    # Anything of the session that left the group (setpgid) goes by its PID.
    for pid in session_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return time.monotonic() - start, note


def run_wrk(scenario: Scenario, port: int, duration: int, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if scenario.post_bytes:
        env["WRK_POST_BYTES"] = str(scenario.post_bytes)
    command = [
        "wrk", "-t", str(args.wrk_threads), "-c", str(scenario.connections),
        "-d", f"{duration}s", "--timeout", f"{args.wrk_timeout}s",
        "-s", str(BENCHES / "wrk.lua"), f"http://{HOST}:{port}/",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=duration + 60, check=False
    )
    match = re.search(r"^WRKJSON (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise RunFailed(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    return json.loads(match.group(1))


def measure(server: Server, scenario: Scenario, args: argparse.Namespace, logfile: Path) -> dict:
    """Start, load and stop one server; the run's figures."""
    if args.wait_idle:
        busy = wait_until_idle(args.wait_idle)
        if busy >= 0.15:
            log(f"  the machine is busy ({busy:.2f} cores) after {args.wait_idle:.0f} s: going on")
    port = free_port()
    command = server.command(args.venv, scenario, port)
    env = dict(os.environ, PYTHONPATH=str(BENCHES), PYTHONUNBUFFERED="1")
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=BENCHES, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    result: dict = {"server": server.name, "scenario": scenario.name, "port": port}
    try:
        result["ready_s"] = wait_ready(server, scenario, proc, logfile, port, args.start_timeout)
        if args.warmup:
            run_wrk(scenario, port, args.warmup, args)
        pids = session_pids(proc.pid)
        result["processes"] = len(pids)
        sampler = RssSampler(proc.pid)
        machine0, wrk0, self0 = machine_busy_ticks(), children_cpu_s(), self_cpu_s()
        cpu0, ctx0 = cpu_ticks(pids), context_switches(pids)
        sampler.start()
        try:
            wrk = run_wrk(scenario, port, args.duration, args)
        finally:
            peak = sampler.stop()
        pids = session_pids(proc.pid)
        cpu1, ctx1 = cpu_ticks(pids), context_switches(pids)
        machine1, wrk1, self1 = machine_busy_ticks(), children_cpu_s(), self_cpu_s()
        if proc.poll() is not None:
            raise RunFailed(f"server exited during the run ({proc.returncode}): {tail(logfile)}")
        requests = max(wrk["requests"], 1)
        seconds = wrk["duration_us"] / 1e6
        result.update(
            wrk=wrk,
            rps=(wrk["requests"] - wrk["status"]) / seconds,
            p50_ms=wrk["p50_us"] / 1000,
            p99_ms=wrk["p99_us"] / 1000,
            errors=sum(wrk[k] for k in ("status", "connect", "read", "write", "timeout")),
            rss_mib=peak / 2**20,
            cpu_us=(cpu1 - cpu0) / CLK_TCK * 1e6 / requests,
            ctx=(ctx1 - ctx0) / requests,
            wrk_cpu_us=(wrk1 - wrk0) * 1e6 / requests,
            # Whatever else ran on the machine (and interrupts not charged to
            # a process), in cores: noise when it is more than a few percent.
            other_cores=(
                (machine1 - machine0 - (cpu1 - cpu0)) / CLK_TCK - (wrk1 - wrk0) - (self1 - self0)
            )
            / seconds,
        )
        # A server that answered wrk wrong (or died inside) is caught here.
        wrong = probe(scenario, port)
        if wrong is not None:
            result["note"] = f"after the run, the probe request got {wrong}"
    except (RunFailed, OSError, subprocess.TimeoutExpired) as error:
        result["failed"] = str(error)
    finally:
        result["stop_s"], note = stop_server(proc, args.stop_grace)
        if note:
            result["stop_note"] = note
    return result


def measure_quietly(
    server: Server, scenario: Scenario, args: argparse.Namespace, logfile: Path
) -> dict:
    """``measure``, run again (up to ``--noise-retries`` times) while other work
    on the machine took more than ``--noise-cores``; the quietest run is kept."""
    runs: list[dict] = []
    for attempt in range(args.noise_retries + 1):
        run = measure(server, scenario, args, logfile)
        runs.append(run)
        if "failed" in run or run["other_cores"] <= args.noise_cores:
            break
        if attempt < args.noise_retries:
            log(f"  {server.name}: noisy run ({_progress(run)}); again")
    best = min(runs, key=lambda r: r.get("other_cores", 0.0))
    best["attempts"] = len(runs)
    return best


def _progress(run: dict) -> str:
    if "failed" in run:
        return f"FAILED {run['failed']}"
    return (
        f"{run['rps']:,.0f} req/s, p99 {run['p99_ms']:.2f} ms, {run['errors']} errors, "
        f"{run['cpu_us']:.1f} µs/req, {run['ctx']:.2f} ctx/req, {run['rss_mib']:.0f} MiB; "
        f"wrk {run['wrk_cpu_us']:.1f} µs/req, other work {run['other_cores']:.2f} cores"
    )


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _ms(x: float) -> str:
    return f"{x:.2f} ms" if x < 10 else f"{x:,.1f} ms"


def _ratio(value: float, base: float | None) -> str:
    if base is None or base <= 0:
        return ""
    return f" ({value / base:.2f}x)"


def summarize(runs: list[dict]) -> dict | None:
    ok = [r for r in runs if "failed" not in r]
    if not ok:
        return None

    def med(key: str) -> float:
        return statistics.median(r[key] for r in ok)

    return {
        "rps": med("rps"),
        "rps_min": min(r["rps"] for r in ok),
        "rps_max": max(r["rps"] for r in ok),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "errors": sum(r["errors"] for r in ok),
        "rss_mib": med("rss_mib"),
        "cpu_us": med("cpu_us"),
        "ctx": med("ctx"),
        "runs": len(ok),
    }


COLUMNS = (
    "server", "requests/s median [min-max]", "p50", "p99", "errors",
    "peak RSS (tree)", "CPU µs/req", "ctx sw/req",
)  # fmt: skip


def table(scenario: Scenario, results: dict[str, list[dict]], status: dict[str, str]) -> str:
    """One markdown table: a row per server, ratios to rwsgi in parentheses."""
    base = summarize(results.get("rwsgi", []))
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|",
    ]
    for name, why in status.items():
        if why:
            lines.append(f"| {name} | {why} |" + " — |" * (len(COLUMNS) - 2))
            continue
        runs = results.get(name, [])
        s = summarize(runs)
        if s is None:
            reason = runs[0]["failed"] if runs else "did not run"
            lines.append(f"| {name} | failed: {_cell(reason)} |" + " — |" * (len(COLUMNS) - 2))
            continue

        against = base if name != "rwsgi" else None

        def r(key: str, s: dict = s, against: dict | None = against) -> str:
            return _ratio(s[key], against[key] if against else None)

        errors = f"{s['errors']:,}"
        if against and against["errors"]:
            errors += _ratio(s["errors"], against["errors"])
        rounds = f" [{s['runs']}/{len(runs)} runs]" if s["runs"] < len(runs) else ""
        lines.append(
            "| "
            + " | ".join(
                [
                    name + rounds,
                    f"{_num(s['rps'])} [{_num(s['rps_min'])}-{_num(s['rps_max'])}]{r('rps')}",
                    _ms(s["p50_ms"]) + r("p50_ms"),
                    _ms(s["p99_ms"]) + r("p99_ms"),
                    errors,
                    f"{s['rss_mib']:,.0f} MiB" + r("rss_mib"),
                    _num(s["cpu_us"]) + r("cpu_us"),
                    _num(s["ctx"]) + r("ctx"),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _cell(text: str, limit: int = 300) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def notes(results: dict[str, list[dict]], noise_cores: float) -> list[str]:
    out = []
    kinds = ("status", "connect", "read", "write", "timeout")
    for name, runs in results.items():
        errors = []
        for i, run in enumerate(runs, 1):
            if "failed" in run:
                out.append(f"{name}, round {i}: failed: {_cell(run['failed'], 600)}")
            if "note" in run:
                out.append(f"{name}, round {i}: {run['note']}")
            if "stop_note" in run:
                out.append(f"{name}, round {i}: {run['stop_note']}")
            elif run.get("stop_s", 0) > 3:
                out.append(f"{name}, round {i}: took {run['stop_s']:.1f} s to stop after SIGTERM")
            wrk = run.get("wrk")
            if wrk and any(wrk[k] for k in kinds):
                errors.append(f"r{i} " + ", ".join(f"{wrk[k]:,} {k}" for k in kinds if wrk[k]))
        if errors:
            read_only = all(
                not run.get("wrk") or not any(run["wrk"][k] for k in kinds if k != "read")
                for run in runs
            )
            why = UWSGI_READ_ERRORS if name == "uwsgi" and read_only else ""
            out.append(f"{name}: wrk errors: {'; '.join(errors)}{why}")
    noisy = [
        f"{name} r{i} {run['other_cores']:.2f}"
        + (f" (best of {run['attempts']})" if run.get("attempts", 1) > 1 else "")
        for name, runs in results.items()
        for i, run in enumerate(runs, 1)
        if run.get("other_cores", 0) > noise_cores
    ]
    if noisy:
        out.append(
            "other work on the machine during the run, in cores (less reliable figures): "
            + ", ".join(noisy)
        )
    return out


UWSGI_READ_ERRORS = (
    " (uWSGI's --http-socket closes each connection without a Connection: close header,"
    " so wrk's next request on it fails: see README)"
)


def machine_header(args: argparse.Namespace) -> str:
    cpu = "unknown"
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    python = "unknown"
    versions = "unknown"
    if _bin(args.venv, "python").exists():
        python = subprocess.run(
            [_python(args.venv), "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        versions = subprocess.run(
            [_python(args.venv), "-c", _VERSIONS], capture_output=True, text=True, check=False
        ).stdout.strip()
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_lines = (wrk.stdout + wrk.stderr).strip().splitlines()
    wrk_version = wrk_lines[0].split(" Copyright")[0] if wrk_lines else "wrk"
    return "\n".join(
        [
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
            f"- nproc: {os.cpu_count()}, CPU: {cpu}, kernel {platform.release()}",
            f"- Python (servers): {python}; versions: {versions}",
            f"- rwsgi built from: {args.rwsgi_label or _checkout()}",
            f"- load: {wrk_version}; {args.wrk_threads} wrk threads, {args.duration} s per run "
            f"after a {args.warmup} s warm-up, {args.rounds} rounds, wrk timeout "
            f"{args.wrk_timeout} s; server and wrk share the machine's cores",
        ]
    )


def _checkout() -> str:
    """The checkout's HEAD, and whether its code differs from it (setup.sh
    installs the working tree)."""
    root = BENCHES.parent
    head = subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%h %s"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--", "src", "python", "Cargo.toml"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    if not head:
        return "the working tree (no git history)"
    return f"the working tree at {head}" + (" with uncommitted changes" if dirty else "")


_VERSIONS = """
from importlib import metadata
out = []
for name in ("rwsgi", "bjoern", "granian", "gunicorn", "uWSGI", "waitress"):
    try:
        out.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        out.append(f"{name} not installed")
print(", ".join(out))
"""


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--duration", type=int, default=8, help="seconds of each measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load before measuring")
    parser.add_argument("--output", type=Path, help="also write the report (markdown) here")
    parser.add_argument("--json", type=Path, help="write every run's raw figures here")
    parser.add_argument(
        "--from-json", type=Path, help="run nothing: print the report of a --json file again"
    )
    parser.add_argument("--venv", type=Path, default=BENCHES / ".venv")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--wrk-timeout", type=int, default=2, help="wrk's per-request timeout, s")
    parser.add_argument("--start-timeout", type=float, default=30.0)
    parser.add_argument("--stop-grace", type=float, default=10.0)
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=30.0,
        help="before each run, wait up to this many s for the machine to be idle (0: don't)",
    )
    parser.add_argument(
        "--noise-cores",
        type=float,
        default=0.2,
        help="a run during which other work took more cores than this is noisy",
    )
    parser.add_argument(
        "--noise-retries", type=int, default=2, help="how often a noisy run is run again"
    )
    parser.add_argument(
        "--rwsgi-label",
        help="how the installed rwsgi was built, for the report (default: the checkout's HEAD)",
    )
    parser.add_argument("--logs", type=Path, default=BENCHES / ".logs", help="server logs")
    args = parser.parse_args(argv)
    for attr, known in (("scenarios", SCENARIOS), ("servers", SERVERS)):
        names = [n.strip() for n in getattr(args, attr).split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            parser.error(f"--{attr}: unknown {unknown}; choose from {','.join(known)}")
        setattr(args, attr, names)
    if args.duration < 1 or args.rounds < 1:
        parser.error("--duration and --rounds must be at least 1")
    args.venv = args.venv.resolve()
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def section(
    scenario: Scenario, status: dict[str, str | None], results: dict[str, list[dict]],
    commands: dict[str, str], noise_cores: float,
) -> str:  # fmt: skip
    """The markdown for one scenario: title, table, commands, notes."""
    lines = [
        f"## {scenario.name}: {scenario.title}",
        "",
        f"{scenario.workers} workers x {scenario.threads} thread(s), "
        f"{scenario.connections} connections, app `apps:{scenario.app}`. "
        "Ratios in parentheses are to rwsgi.",
        "",
        table(scenario, results, status),
        "",
        "<details><summary>commands</summary>",
        "",
        *(f"- {name}: {command}" for name, command in commands.items()),
        "",
        "</details>",
        "",
    ]
    extra = notes(results, noise_cores)
    if extra:
        lines += ["Notes:", "", *(f"- {n}" for n in extra), ""]
    return "\n".join(lines)


def render(data: dict) -> str:
    """The whole report from what ``collect`` gathered (or a ``--json`` file)."""
    report = [TITLE, "", data["header"], ""]
    for name in data["scenarios"]:
        scenario = SCENARIOS[name]
        status = data["status"][name]
        results: dict[str, list[dict]] = {s: [] for s in status if not status[s]}
        for run in sorted(data["runs"], key=lambda r: r["round"]):
            if run["scenario"] == name and run["server"] in results:
                results[run["server"]].append(run)
        report.append(
            section(scenario, status, results, data["commands"][name], data["noise_cores"])
        )
    return "\n".join(report)


TITLE = "# rwsgi vs its peers (benches/compare.py)"


def collect(args: argparse.Namespace) -> dict:
    """Run every scenario; everything the report is made from."""
    # rwsgi first in every table: the ratios are to it.
    servers = sorted(args.servers, key=lambda n: n != "rwsgi")
    missing = {name: SERVERS[name].installed(args.venv) for name in servers}
    for name, why in missing.items():
        if why:
            log(f"{name}: {why}")
    data: dict = {
        "header": machine_header(args),
        "scenarios": args.scenarios,
        "noise_cores": args.noise_cores,
        "status": {},
        "commands": {},
        "runs": [],
    }
    for scenario_name in args.scenarios:
        scenario = SCENARIOS[scenario_name]
        status = {
            name: missing[name]
            or (
                f"n/a: {', '.join(SERVERS[name].only)} only"
                if SERVERS[name].only and scenario.name not in SERVERS[name].only
                else None
            )
            for name in servers
        }
        runnable = [name for name in servers if not status[name]]
        data["status"][scenario.name] = status
        data["commands"][scenario.name] = {
            name: f"`{' '.join(_short(SERVERS[name].command(args.venv, scenario, 0)))}`"
            + (f" ({SERVERS[name].note(scenario)})" if SERVERS[name].note(scenario) else "")
            for name in runnable
        }
        for round_no in range(args.rounds):
            # Rotate the order each round so no server always follows the same one.
            shift = round_no % max(len(runnable), 1)
            for name in runnable[shift:] + runnable[:shift]:
                logfile = args.logs / f"{scenario.name}-{name}-r{round_no + 1}.log"
                run = measure_quietly(SERVERS[name], scenario, args, logfile)
                run["round"] = round_no + 1
                data["runs"].append(run)
                log(f"[{scenario.name} {round_no + 1}/{args.rounds}] {name}: {_progress(run)}")
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        if subprocess.run(["which", "wrk"], capture_output=True, check=False).returncode != 0:
            log("wrk is not installed: run benches/setup.sh (apt-get install wrk)")
            return 2
        args.logs.mkdir(parents=True, exist_ok=True)
        data = collect(args)
        if args.json:
            args.json.write_text(json.dumps(data, indent=1))
    report = render(data)
    print(report, flush=True)
    if args.output:
        args.output.write_text(report)
        log(f"wrote {args.output}")
    return 0


def _short(command: list[str]) -> list[str]:
    """The command with the venv and checkout paths cut, for the report."""
    out = []
    for part in command:
        part = part.replace(str(BENCHES) + "/", "benches/")
        part = re.sub(r".*/\.venv[^/]*/bin/", "", part)
        out.append(part[:-2] + ":PORT" if part.endswith(":0") else part)
    return ["PORT" if p == "0" else p for p in out]


if __name__ == "__main__":
    sys.exit(main())
