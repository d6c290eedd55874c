"""rwsgi behind nginx: nginx -> app server over the uwsgi protocol on a unix socket.

    python benches/nginx.py [--scenarios hello,post1m] [--servers rwsgi,uwsgi,gunicorn]
                            [--duration 8] [--rounds 3] [--output FILE]

wrk loads a private nginx on 127.0.0.1 (one process, ``master_process off``)
whose only location is ``uwsgi_pass unix:SOCK``; behind it runs rwsgi
(``--socket``), uWSGI (``--socket``) or gunicorn (``--protocol uwsgi``) with
the same app, workers and threads. Each run: start the app server in a new
session, start nginx in another, wait until every worker said it is ready and a
request through nginx gets the right answer, warm up, measure (/proc of both
trees around the wrk run), then stop nginx (SIGQUIT, then SIGKILL) and the app
server (SIGTERM, then SIGKILL), each by its PID. README.md explains the columns.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compare import (
    RunFailed,
    check_args,
    interleave,
    log,
    quietest,
    run_wrk,
    stop_server,
    tail,
)
from nginx_report import header, render
from nginx_stack import (
    NGINX,
    UPSTREAMS,
    Upstream,
    error_log_summary,
    nginx_conf,
    nginx_version,
    start_nginx,
    stop_nginx,
)
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
from recorded import is_results, record, rerender_charts
from servers import (
    BENCHES,
    HOST,
    POST_BODY,
    SCENARIOS,
    Scenario,
    display_command,
)


def probe(scenario: Scenario, port: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        if scenario.post_bytes:
            headers = {"Content-Type": "application/octet-stream"}
            conn.request("POST", scenario.path, body=POST_BODY, headers=headers)
        else:
            conn.request("GET", scenario.path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wrong_answer(scenario: Scenario, port: int) -> str | None:
    status, body = probe(scenario, port)
    if status != 200:
        return f"status {status}"
    if body != scenario.expected():
        return f"wrong body ({len(body)} bytes, expected {len(scenario.expected())})"
    return None


def wait_ready(
    up: Upstream, scenario: Scenario, proc: subprocess.Popen[bytes], logfile: Path, port: int,
    timeout: float,
) -> float:  # fmt: skip
    """Until every worker is ready and a request through nginx gets the right
    answer; 502/503/504 (nothing on the socket yet) mean "not yet"."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() < start + timeout:
        if proc.poll() is not None:
            raise RunFailed(f"exited with status {proc.returncode}: {tail(logfile)}")
        seen = len(re.findall(up.ready, logfile.read_text(errors="replace")))
        if seen < scenario.workers:
            last = f"{seen} of {scenario.workers} workers ready"
        else:
            try:
                status, body = probe(scenario, port)
            except OSError as error:
                last = f"{type(error).__name__}: {error}"
            else:
                if status == 200 and body == scenario.expected():
                    return time.monotonic() - start
                if status not in (502, 503, 504):
                    raise RunFailed(f"wrong answer through nginx: {status}, {len(body)} bytes")
                last = f"nginx says {status}"
        time.sleep(0.1)
    raise RunFailed(f"not ready after {timeout:.0f} s ({last}): {tail(logfile)}")


def measure(up: Upstream, scenario: Scenario, args: argparse.Namespace, logfile: Path) -> dict:
    """Start the app server and nginx, load, stop both; the run's figures."""
    if args.wait_idle:
        busy = wait_until_idle(args.wait_idle)
        if busy >= 0.15:
            log(f"  the machine is busy ({busy:.2f} cores) after {args.wait_idle:.0f} s: going on")
    tmp = Path(tempfile.mkdtemp(prefix="rwsgi-nginx-"))
    sock = str(tmp / f"{up.name}.sock")
    env = dict(os.environ, PYTHONPATH=str(BENCHES), PYTHONUNBUFFERED="1")
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(
            up.command(args.venv, scenario, sock), cwd=BENCHES, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    result: dict = {"server": up.name, "scenario": scenario.name}
    nginx = None
    errlog = tmp / "error.log"
    try:
        nginx, port = start_nginx(tmp, sock, args.start_timeout)
        result["ready_s"] = wait_ready(up, scenario, proc, logfile, port, args.start_timeout)
        start_errors = errlog.stat().st_size if errlog.exists() else 0
        if args.warmup:
            run_wrk(scenario, port, args.warmup, args)
        pids, npids = session_pids(proc.pid), session_pids(nginx.pid)
        result["processes"] = len(pids)
        sampler, nsampler = RssSampler(proc.pid), RssSampler(nginx.pid)
        machine0, wrk0, self0 = machine_busy_ticks(), children_cpu_s(), self_cpu_s()
        cpu0, ctx0 = cpu_ticks(pids), context_switches(pids)
        ncpu0, nctx0 = cpu_ticks(npids), context_switches(npids)
        sampler.start()
        nsampler.start()
        try:
            wrk = run_wrk(scenario, port, args.duration, args)
        finally:
            peak, npeak = sampler.stop(), nsampler.stop()
        pids, npids = session_pids(proc.pid), session_pids(nginx.pid)
        cpu1, ctx1 = cpu_ticks(pids), context_switches(pids)
        ncpu1, nctx1 = cpu_ticks(npids), context_switches(npids)
        machine1, wrk1, self1 = machine_busy_ticks(), children_cpu_s(), self_cpu_s()
        if proc.poll() is not None:
            raise RunFailed(f"server exited during the run ({proc.returncode}): {tail(logfile)}")
        if nginx.poll() is not None:
            raise RunFailed(f"nginx exited during the run: {tail(errlog)}")
        requests = max(wrk["requests"], 1)
        seconds = wrk["duration_us"] / 1e6
        busy = (machine1 - machine0 - (cpu1 - cpu0) - (ncpu1 - ncpu0)) / CLK_TCK
        result.update(
            wrk=wrk,
            rps=(wrk["requests"] - wrk["status"]) / seconds,
            p50_ms=wrk["p50_us"] / 1000,
            p99_ms=wrk["p99_us"] / 1000,
            errors=sum(wrk[k] for k in ("status", "connect", "read", "write", "timeout")),
            rss_mib=peak / 2**20,
            nginx_rss_mib=npeak / 2**20,
            cpu_us=(cpu1 - cpu0) / CLK_TCK * 1e6 / requests,
            nginx_cpu_us=(ncpu1 - ncpu0) / CLK_TCK * 1e6 / requests,
            ctx=(ctx1 - ctx0) / requests,
            nginx_ctx=(nctx1 - nctx0) / requests,
            wrk_cpu_us=(wrk1 - wrk0) * 1e6 / requests,
            other_cores=(busy - (wrk1 - wrk0) - (self1 - self0)) / seconds,
        )
        wrong = wrong_answer(scenario, port)
        if wrong is not None:
            result["note"] = f"after the run, the probe request got {wrong}"
        with open(errlog, errors="replace") as f:
            f.seek(start_errors)
            result["error_log"] = error_log_summary(f.read())
    except (RunFailed, OSError, subprocess.TimeoutExpired) as error:
        result["failed"] = str(error)
    finally:
        if nginx is not None:
            stop_nginx(nginx)
        result["stop_s"], note = stop_server(proc, args.stop_grace)
        if note:
            result["stop_note"] = note
        if errlog.exists():
            shutil.copy(errlog, logfile.with_suffix(".nginx-error.log"))
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def progress(run: dict) -> str:
    if "failed" in run:
        return f"FAILED {run['failed']}"
    levels = run.get("error_log", {}).get("levels") or {}
    return (
        f"{run['rps']:,.0f} req/s, p99 {run['p99_ms']:.2f} ms, {run['errors']} errors, "
        f"app {run['cpu_us']:.1f} µs/req {run['ctx']:.2f} ctx/req {run['rss_mib']:.0f} MiB; "
        f"nginx {run['nginx_cpu_us']:.1f} µs/req {run['nginx_ctx']:.2f} ctx/req "
        f"{run['nginx_rss_mib']:.0f} MiB, error.log {levels or 'empty'}; "
        f"wrk {run['wrk_cpu_us']:.1f} µs/req, other work {run['other_cores']:.2f} cores"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="hello,post1m", help="comma-separated")
    parser.add_argument("--servers", default=",".join(UPSTREAMS), help="comma-separated")
    parser.add_argument("--duration", type=int, default=8, help="seconds of each measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="seconds of load before measuring")
    parser.add_argument("--output", type=Path, help="also write the report (markdown) here")
    parser.add_argument("--append", action="store_true", help="append to --output, not replace")
    parser.add_argument("--json", type=Path, help="write every run's raw figures here")
    parser.add_argument("--from-json", type=Path, help="run nothing: report a --json file again")
    parser.add_argument("--venv", type=Path, default=BENCHES / ".venv")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--wrk-timeout", type=int, default=2, help="wrk's per-request timeout, s")
    parser.add_argument("--start-timeout", type=float, default=30.0)
    parser.add_argument("--stop-grace", type=float, default=10.0)
    parser.add_argument("--wait-idle", type=float, default=30.0, help="0: don't wait")
    parser.add_argument("--noise-cores", type=float, default=0.2)
    parser.add_argument("--noise-retries", type=int, default=2)
    parser.add_argument("--rwsgi-label", help="how the installed rwsgi was built")
    parser.add_argument("--logs", type=Path, default=BENCHES / ".logs", help="server logs")
    # The upload scenarios added to compare.py later (chunked, 64 MiB) and the
    # idle one need requests and an nginx config this harness does not make.
    scenarios = [n for n in SCENARIOS if n in ("hello", "sleep", "get1m", "post1m")]
    return check_args(parser, parser.parse_args(argv), scenarios, UPSTREAMS)


def collect(args: argparse.Namespace) -> dict:
    servers = sorted(args.servers, key=lambda n: n != "rwsgi")  # ratios are to rwsgi
    status = {name: UPSTREAMS[name].supported(args.venv) for name in servers}
    for name, why in status.items():
        if why:
            log(f"{name}: {why}")
    runnable = [name for name in servers if not status[name]]
    data: dict = {
        "header": header(args, nginx_version()),
        "nginx_conf": nginx_conf("TMP", "PORT", "TMP/SERVER.sock"),
        "server_notes": {name: UPSTREAMS[name].note for name in runnable if UPSTREAMS[name].note},
        "scenarios": args.scenarios,
        "noise_cores": args.noise_cores,
        "status": {s: status for s in args.scenarios},
        "commands": {},
        "runs": [],
    }
    for scenario_name in args.scenarios:
        scenario = SCENARIOS[scenario_name]
        data["commands"][scenario.name] = {
            name: " ".join(
                display_command(UPSTREAMS[name].command(args.venv, scenario, f"TMP/{name}.sock"))
            )
            for name in runnable
        }
        data["runs"] += interleave(
            runnable,
            scenario,
            args,
            lambda name, round_no, scenario=scenario: quietest(
                lambda: measure(
                    UPSTREAMS[name],
                    scenario,
                    args,
                    args.logs / f"nginx-{scenario.name}-{name}-r{round_no}.log",
                ),
                name,
                progress,
                args,
            ),
            progress,
        )
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        for tool, package in (("wrk", "wrk"), (str(NGINX), "nginx-light")):
            if shutil.which(tool) is None:
                log(f"{tool} is not installed: run benches/setup.sh (apt-get install {package})")
                return 2
        args.logs.mkdir(parents=True, exist_ok=True)
        data = collect(args)
        if args.json:
            args.json.write_text(json.dumps(data, indent=1))
    report = render(data)
    print(report, flush=True)
    if args.output:
        with open(args.output, "a" if args.append else "w") as f:
            f.write(("\n" if args.append else "") + report)
        log(f"wrote {args.output}")
        if is_results(args.output):
            record("nginx", data, {name: SCENARIOS[name].title for name in data["scenarios"]})
            rerender_charts(args.venv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
