"""rwsgi against its peers: one wrk run per server and scenario, in one session.

    python benches/compare.py [--scenarios hello,sleep,get1m,post1m,...,django_template]
                              [--servers rwsgi,hyper,bjoern,granian,gunicorn,uwsgi,waitress]
                              [--duration 8] [--rounds 3] [--connections 10000] [--output FILE]

Every server runs the same app from ``apps.py`` with the same workers and
threads, on 127.0.0.1, from the venv that ``setup.sh`` makes. For each scenario
the servers are interleaved over the rounds (the order rotates each round), and
each run is: start the server in a new session, wait until all its workers say
they are ready and one request gets the right answer, a short warm-up, then the
measured wrk run with /proc sampled around it and a fresh connection probing
the server every 0.2 s, then stop the server by its PID (its process group
after a grace period). The ``idle_keepalive`` scenario measures hello three
times in one run: alone, with ``--connections`` idle keep-alive connections
held open (``holdconn.py``), and alone again. README.md explains every column.

Only the standard library: the harness runs under any Python 3.10+.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from freshconn import FreshProbe
from holdconn import idle_runs, raise_nofile
from procstat import (
    CLK_TCK,
    RssSampler,
    children_cpu_s,
    context_switches,
    cpu_ticks,
    machine_busy_ticks,
    self_cpu_s,
    session_pids,
    wait_until_idle,
)
from recorded import publish, record, rerender_charts
from report import TITLE, machine_header, render
from servers import (
    BENCHES,
    CHUNK_BYTES,
    HOST,
    OBSERVED_FLAGS,
    SCENARIOS,
    SERVERS,
    Scenario,
    Server,
    display_command,
    load_reference,
    observed_server,
    remove_scratch,
    scratch_sizes,
    venv_python,
)


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
        headers = {"Content-Type": "application/octet-stream"}
        if scenario.chunked:
            # An iterable body with no Content-Length: http.client frames it chunked.
            conn.request("POST", scenario.path, body=_chunks(scenario.post_body()), headers=headers)
        elif scenario.post_bytes:
            conn.request("POST", scenario.path, body=scenario.post_body(), headers=headers)
        else:
            conn.request("GET", scenario.path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        return f"status {response.status}"
    if body != scenario.expected():
        seen = f"{body!r}, " if len(body) <= 40 else ""
        return f"wrong body ({seen}{len(body)} bytes, expected {len(scenario.expected())})"
    return None


def _chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK_BYTES):
        yield body[start : start + CHUNK_BYTES]


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
    env.pop("WRK_CHUNK_BYTES", None)
    if scenario.post_bytes:
        env["WRK_POST_BYTES"] = str(scenario.post_bytes)
    if scenario.chunked:
        env["WRK_CHUNK_BYTES"] = str(CHUNK_BYTES)
    timeout = scenario.wrk_timeout or args.wrk_timeout
    command = [
        "wrk", "-t", str(args.wrk_threads), "-c", str(scenario.connections),
        "-d", f"{duration}s", "--timeout", f"{timeout}s",
        "-s", str(BENCHES / "wrk.lua"), f"http://{HOST}:{port}{scenario.path}",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=duration + timeout + 60,
        check=False,
    )  # fmt: skip
    match = re.search(r"^WRKJSON (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise RunFailed(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    return json.loads(match.group(1))


def start_server(
    server: Server, scenario: Scenario, args: argparse.Namespace, logfile: Path, port: int
) -> subprocess.Popen[bytes]:
    """The server in a new session (its own process group), logging to ``logfile``."""
    if args.wait_idle:
        busy = wait_until_idle(args.wait_idle)
        if busy >= 0.15:
            log(f"  the machine is busy ({busy:.2f} cores) after {args.wait_idle:.0f} s: going on")
    command = server.command(args.venv, scenario, port)
    env = dict(os.environ, PYTHONPATH=str(BENCHES), PYTHONUNBUFFERED="1")
    with open(logfile, "wb") as out:
        return subprocess.Popen(
            command, cwd=BENCHES, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def loaded_run(
    proc: subprocess.Popen[bytes], scenario: Scenario, port: int, args: argparse.Namespace
) -> dict:
    """The measured wrk run: /proc read around it, RSS sampled and a fresh
    connection probing the server during it; its figures."""
    pids = session_pids(proc.pid)
    processes = len(pids)
    sampler = RssSampler(proc.pid)
    prober = FreshProbe(port, scenario.probe_request(port), scenario.probe_expected())
    machine0, wrk0, self0 = machine_busy_ticks(), children_cpu_s(), self_cpu_s()
    cpu0, ctx0 = cpu_ticks(pids), context_switches(pids)
    sampler.start()
    prober.start()
    try:
        wrk = run_wrk(scenario, port, args.duration, args)
        peak = sampler.stop()
        pids = session_pids(proc.pid)
        cpu1, ctx1 = cpu_ticks(pids), context_switches(pids)
        machine1, wrk1, self1 = machine_busy_ticks(), children_cpu_s(), self_cpu_s()
    finally:
        sampler.stop()
        # Waits for the last probes (at most their 5 s): a probe still waiting
        # when wrk ends is the one that matters most.
        probes = prober.stop()
    requests = max(wrk["requests"], 1)
    seconds = wrk["duration_us"] / 1e6
    return {
        "processes": processes,
        "wrk": wrk,
        "rps": (wrk["requests"] - wrk["status"]) / seconds,
        "p50_ms": wrk["p50_us"] / 1000,
        "p99_ms": wrk["p99_us"] / 1000,
        "errors": sum(wrk[k] for k in ("status", "connect", "read", "write", "timeout")),
        "rss_mib": peak / 2**20,
        "cpu_us": (cpu1 - cpu0) / CLK_TCK * 1e6 / requests,
        "ctx": (ctx1 - ctx0) / requests,
        "wrk_cpu_us": (wrk1 - wrk0) * 1e6 / requests,
        # Whatever else ran on the machine (and interrupts not charged to a
        # process), in cores: noise when it is more than a few percent.
        "other_cores": (
            (machine1 - machine0 - (cpu1 - cpu0)) / CLK_TCK - (wrk1 - wrk0) - (self1 - self0)
        )
        / seconds,
        "probe": probes,
    }


def measure(server: Server, scenario: Scenario, args: argparse.Namespace, logfile: Path) -> dict:
    """Start, load and stop one server; the run's figures."""
    port = free_port()
    proc = start_server(server, scenario, args, logfile, port)
    result: dict = {"server": server.name, "scenario": scenario.name, "port": port}
    try:
        result["ready_s"] = wait_ready(server, scenario, proc, logfile, port, args.start_timeout)
        if args.warmup:
            run_wrk(scenario, port, args.warmup, args)
        if scenario.idle:
            result.update(
                idle_runs(
                    proc.pid,
                    port,
                    args.connections,
                    args.hold_timeout,
                    lambda: loaded_run(proc, scenario, port, args),
                )
            )
        else:
            result.update(loaded_run(proc, scenario, port, args))
        if proc.poll() is not None:
            raise RunFailed(f"server exited during the run ({proc.returncode}): {tail(logfile)}")
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
        # What the server really wrote there (rwsgi-observed's access log).
        written = scratch_sizes(port)
        if written:
            result["scratch_bytes"] = written
        remove_scratch(port)
    return result


def quietest(
    measure_once: Callable[[], dict],
    name: str,
    progress: Callable[[dict], str],
    args: argparse.Namespace,
) -> dict:
    """``measure_once`` again (up to ``--noise-retries`` times) while other work
    on the machine took more than ``--noise-cores``; the quietest run is kept."""
    runs: list[dict] = []
    for attempt in range(args.noise_retries + 1):
        run = measure_once()
        runs.append(run)
        if "failed" in run or run["other_cores"] <= args.noise_cores:
            break
        if attempt < args.noise_retries:
            log(f"  {name}: noisy run ({progress(run)}); again")
    best = min(runs, key=lambda r: r.get("other_cores", 0.0))
    best["attempts"] = len(runs)
    return best


def measure_quietly(
    server: Server, scenario: Scenario, args: argparse.Namespace, logfile: Path
) -> dict:
    """``measure`` the quietest way (see ``quietest``)."""
    return quietest(lambda: measure(server, scenario, args, logfile), server.name, _progress, args)


def interleave(
    names: list[str],
    scenario: Scenario,
    args: argparse.Namespace,
    measure_one: Callable[[str, int], dict],
    progress: Callable[[dict], str],
) -> list[dict]:
    """Every server once per round, the order rotated each round so no server
    always follows the same one; ``measure_one(name, round)`` makes a run."""
    runs = []
    for round_no in range(args.rounds):
        shift = round_no % max(len(names), 1)
        for name in names[shift:] + names[:shift]:
            run = measure_one(name, round_no + 1)
            run["round"] = round_no + 1
            runs.append(run)
            log(f"[{scenario.name} {round_no + 1}/{args.rounds}] {name}: {progress(run)}")
    return runs


def _progress(run: dict) -> str:
    if "failed" in run:
        return f"FAILED {run['failed']}"
    probes = run["probe"]
    first = probes["first_ms"]
    text = (
        f"{run['rps']:,.0f} req/s, p99 {run['p99_ms']:.2f} ms, {run['errors']} errors, "
        f"{run['cpu_us']:.1f} µs/req, {run['ctx']:.2f} ctx/req, {run['rss_mib']:.0f} MiB; "
        f"probes {probes['count']}, max {max(first, default=0):.0f} ms, "
        f"{probes['timeouts']} timeouts, {sum(probes['errors'].values())} errors; "
        f"wrk {run['wrk_cpu_us']:.1f} µs/req, other work {run['other_cores']:.2f} cores"
    )
    if "held" in run:
        per_conn = run["kib_per_conn"]
        text += (
            f"; held {run['held']}/{run['held_target']} in {run['open_s']:.1f} s, "
            f"open {run['open_at_load']} -> {run['open_after']}, "
            + (f"{per_conn:.1f} KiB/conn, " if per_conn is not None else "")
            + f"{run['alone']['rps']:,.0f} and {run['alone_after']['rps']:,.0f} req/s alone"
        )
    return text


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
    parser.add_argument(
        "--publish",
        action="store_true",
        help="put the report in benches/RESULTS.md (in place of the last one), its figures "
        "in benches/results/compare.json, and redraw benches/charts/",
    )
    parser.add_argument(
        "--observed-flags",
        default="auto",
        help="hello_observed: what rwsgi-observed turns on, comma-separated of "
        f"{','.join(OBSERVED_FLAGS)}; auto: access-log, and stats when the installed rwsgi "
        "lists --stats-http",
    )
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
    parser.add_argument(
        "--connections",
        type=int,
        default=10_000,
        help="idle_keepalive: how many idle keep-alive connections to hold open",
    )
    parser.add_argument(
        "--hold-timeout",
        type=float,
        default=60.0,
        help="idle_keepalive: seconds allowed to open them and get every first answer",
    )
    args = check_args(parser, parser.parse_args(argv), SCENARIOS, SERVERS)
    if args.connections < 1 or args.hold_timeout <= 0:
        parser.error("--connections and --hold-timeout must be positive")
    if args.observed_flags != "auto":
        flags = tuple(f.strip() for f in args.observed_flags.split(",") if f.strip())
        unknown = [f for f in flags if f not in OBSERVED_FLAGS]
        if unknown:
            parser.error(
                f"--observed-flags: unknown {unknown}; choose from {','.join(OBSERVED_FLAGS)} "
                "or auto"
            )
        args.observed_flags = flags
    return args


def observed_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """--observed-flags, with auto resolved against the installed rwsgi's --help."""
    if args.observed_flags != "auto":
        return tuple(args.observed_flags)
    try:
        done = subprocess.run(
            [venv_python(args.venv), "-m", "rwsgi", "--help"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except OSError:
        return ("access-log",)
    if "--stats-http" in done.stdout:
        return ("access-log", "stats")
    log("hello_observed: the installed rwsgi has no --stats-http; rwsgi-observed logs only")
    return ("access-log",)


def check_args(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    scenarios: Iterable[str],
    servers: Iterable[str],
) -> argparse.Namespace:
    """Turn --scenarios/--servers into lists of known names and check the counts
    (compare.py and nginx.py share this)."""
    for attr, known in (("scenarios", list(scenarios)), ("servers", list(servers))):
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


def collect(args: argparse.Namespace) -> dict:
    """Run every scenario; everything the report is made from."""
    # rwsgi first in every table: the ratios are to it.
    servers = sorted(args.servers, key=lambda n: n != "rwsgi")
    table = dict(SERVERS)
    if "hello_observed" in args.scenarios and "rwsgi-observed" in servers:
        table["rwsgi-observed"] = observed_server(observed_flags(args))
    missing = {name: table[name].installed(args.venv) for name in servers}
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
        # The Flask and Django bodies: the app's own answer, made once here.
        unanswered = load_reference(args.venv, scenario)
        if unanswered:
            log(f"{scenario.name}: {unanswered}")
        status = {
            name: missing[name]
            or unanswered
            or (
                f"n/a: {', '.join(table[name].only)} only"
                if table[name].only and scenario.name not in table[name].only
                else None
            )
            for name in servers
            if table[name].runs_in(scenario)
        }
        runnable = [name for name in status if not status[name]]
        data["status"][scenario.name] = status
        data["commands"][scenario.name] = {
            name: f"`{' '.join(display_command(table[name].command(args.venv, scenario, 0)))}`"
            + (f" ({table[name].note(scenario)})" if table[name].note(scenario) else "")
            for name in runnable
        }
        data["runs"] += interleave(
            runnable,
            scenario,
            args,
            lambda name, round_no, scenario=scenario: measure_quietly(
                table[name],
                scenario,
                args,
                args.logs / f"{scenario.name}-{name}-r{round_no}.log",
            ),
            _progress,
        )
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
        # The held connections, wrk's, the probes' and the servers' (which
        # inherit the limit) all need descriptors.
        wanted = args.connections + 4096 if "idle_keepalive" in args.scenarios else 4096
        nofile = raise_nofile(wanted)
        if nofile < wanted:
            log(f"RLIMIT_NOFILE is {nofile}, under the {wanted} wanted: connections will fail")
        try:
            data = collect(args)
        finally:
            remove_scratch()
        if args.json:
            args.json.write_text(json.dumps(data, indent=1))
    report = render(data)
    print(report, flush=True)
    if args.output:
        args.output.write_text(report)
        log(f"wrote {args.output}")
    if args.publish:
        # Its own sections are its title's and the scenarios'; what follows
        # (the hand-written notes, the other benches') stays.
        own = re.compile(rf"## ({'|'.join(map(re.escape, SCENARIOS))}): ")
        publish(report, TITLE, first=True, own_heading=lambda line: bool(own.match(line)))
        record("compare", data, {name: SCENARIOS[name].title for name in data["scenarios"]})
        rerender_charts(args.venv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
