"""The markdown report of benches/nginx.py: one table per scenario, with the
app server's and nginx's CPU per request side by side, ratios to rwsgi."""

from __future__ import annotations

import argparse
import statistics

from procstat import read_text
from report import _cell, machine_header, noisy_runs, server_table, summarize
from servers import SCENARIOS

TITLE = "## Behind nginx (uwsgi protocol on a unix socket)"

COLUMNS = (
    "server", "requests/s median [min-max]", "p50", "p99", "errors",
    "peak RSS (app tree)", "app CPU µs/req", "nginx CPU µs/req", "app ctx sw/req",
)  # fmt: skip

SETUP_NOTES = (
    "wrk (2 threads) -> nginx on 127.0.0.1 (one process: `master_process off`, "
    "`worker_processes 1`) -> `uwsgi_pass unix:SOCK` -> the app server. The machine's "
    "2 cores are shared by wrk, nginx and the app server's 2 workers, so requests/s is "
    "bounded by the CPU all three spend per request; the CPU columns do not depend on that.",
    "nginx keeps the client connections alive (`keepalive_requests 100000`) but opens a new "
    "unix-socket connection to the app server per request (nginx has no keep-alive for "
    "uwsgi upstreams). The 1 MiB request body is read whole into memory before the app "
    "server is called (`client_body_buffer_size 2m`), and `uwsgi_buffers 16 128k` keeps a "
    "1 MiB response in memory too: nothing is spooled to disk.",
    "Every app server has a listen backlog of 1024 (uWSGI `--listen 1024`, gunicorn "
    "`--backlog 1024`, rwsgi's default).",
)


def header(args: argparse.Namespace, nginx_version: str) -> str:
    somaxconn = (read_text("/proc/sys/net/core/somaxconn") or "?").strip()
    return "\n".join(
        [
            machine_header(args),
            f"- nginx: {nginx_version} (Debian nginx-light), private config per run (below)",
            f"- net.core.somaxconn: {somaxconn} (caps every listen backlog, uWSGI's included)",
        ]
    )


def _nginx_summary(runs: list[dict]) -> dict | None:
    s = summarize(runs)
    if s is not None:
        ok = [r for r in runs if "failed" not in r]
        s["nginx_cpu_us"] = statistics.median(r["nginx_cpu_us"] for r in ok)
    return s


def table(results: dict[str, list[dict]], status: dict[str, str | None]) -> str:
    """compare.py's table with nginx's own CPU per request as an extra column."""
    return server_table(results, status, COLUMNS, _nginx_summary, extra=("nginx_cpu_us",))


def notes(results: dict[str, list[dict]], noise_cores: float) -> list[str]:
    out = []
    kinds = ("status", "connect", "read", "write", "timeout")
    for name, runs in results.items():
        errors, logged = [], []
        for i, run in enumerate(runs, 1):
            for key in ("failed", "note", "stop_note"):
                if key in run:
                    out.append(f"{name}, round {i}: {key}: {_cell(run[key], 600)}")
            if "stop_note" not in run and run.get("stop_s", 0) > 3:
                out.append(f"{name}, round {i}: took {run['stop_s']:.1f} s to stop after SIGTERM")
            wrk = run.get("wrk")
            if wrk and any(wrk[k] for k in kinds):
                errors.append(f"r{i} " + ", ".join(f"{wrk[k]:,} {k}" for k in kinds if wrk[k]))
            errlog = run.get("error_log") or {}
            if errlog.get("levels"):
                levels = ", ".join(f"{n:,} [{lvl}]" for lvl, n in errlog["levels"].items())
                top = "; ".join(_cell(m, 200) for m in errlog["top"])
                logged.append(f"r{i} {levels}: {top}")
        if errors:
            out.append(f"{name}: wrk errors (non-2xx from nginx are `status`): {'; '.join(errors)}")
        if logged:
            out.append(f"{name}: nginx error.log during the load: {' / '.join(logged)}")
        elif runs and all("error_log" in run for run in runs):
            out.append(f"{name}: nginx's error.log stayed empty during the load in every round")
    noisy = noisy_runs(results, noise_cores)
    if noisy:
        out.append("other work on the machine during the run, in cores: " + ", ".join(noisy))
    rss = []
    for name, runs in results.items():
        mib = sorted(f"{r['nginx_rss_mib']:.0f}" for r in runs if "failed" not in r)
        if mib:
            rss.append(f"{name} {mib[0]}" + (f"-{mib[-1]}" if mib[-1] != mib[0] else "") + " MiB")
    if rss:
        out.append("nginx's own peak RSS: " + ", ".join(rss))
    return out


def section(name: str, data: dict) -> str:
    scenario = SCENARIOS[name]
    status = data["status"][name]
    results: dict[str, list[dict]] = {s: [] for s in status if not status[s]}
    for run in sorted(data["runs"], key=lambda r: r["round"]):
        if run["scenario"] == name and run["server"] in results:
            results[run["server"]].append(run)
    lines = [
        f"### nginx, {scenario.name}: {scenario.title}",
        "",
        f"{scenario.workers} workers x {scenario.threads} thread(s) behind one nginx process, "
        f"{scenario.connections} wrk connections to nginx, app `{scenario.target}`. "
        "Ratios in parentheses are to rwsgi.",
        "",
        table(results, status),
        "",
        "<details><summary>commands</summary>",
        "",
        *(f"- {server}: `{command}`" for server, command in data["commands"][name].items()),
        "",
        "</details>",
        "",
    ]
    extra = notes(results, data["noise_cores"])
    if extra:
        lines += ["Notes:", "", *(f"- {n}" for n in extra), ""]
    return "\n".join(lines)


def render(data: dict) -> str:
    report = [TITLE, "", data["header"], "", *(f"- {n}" for n in SETUP_NOTES)]
    report += [
        *(f"- {name}: {note}" for name, note in data.get("server_notes", {}).items()),
        "",
        "<details><summary>nginx.conf (TMP: a fresh temp dir per run)</summary>",
        "",
        "```nginx",
        data["nginx_conf"].rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    report += [section(name, data) for name in data["scenarios"]]
    return "\n".join(report)
