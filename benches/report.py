"""The markdown report: one table per scenario, its commands and notes, and
the machine header; made from the runs compare.py collected (or its --json)."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
from collections.abc import Callable

from procstat import read_text
from servers import BENCHES, SCENARIOS, Scenario, venv_bin, venv_python


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
    return server_table(results, status, COLUMNS, summarize, extra=())


def server_table(
    results: dict[str, list[dict]],
    status: dict[str, str | None] | dict[str, str],
    columns: tuple[str, ...],
    summarize_runs: Callable[[list[dict]], dict | None],
    extra: tuple[str, ...],
) -> str:
    """The table every harness prints. ``extra`` names more CPU-like figures
    of the summary, shown between "CPU µs/req" and "ctx sw/req"."""
    base = summarize_runs(results.get("rwsgi", []))
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|",
    ]
    for name, why in status.items():
        if why:
            lines.append(f"| {name} | {why} |" + " — |" * (len(columns) - 2))
            continue
        runs = results.get(name, [])
        s = summarize_runs(runs)
        if s is None:
            reason = runs[0]["failed"] if runs else "did not run"
            lines.append(f"| {name} | failed: {_cell(reason)} |" + " — |" * (len(columns) - 2))
            continue

        against = base if name != "rwsgi" else None

        def r(key: str, s: dict = s, against: dict | None = against) -> str:
            return _ratio(s[key], against[key] if against else None)

        errors = f"{s['errors']:,}"
        if against and against["errors"]:
            errors += _ratio(s["errors"], against["errors"])
        rounds = f" [{s['runs']}/{len(runs)} runs]" if s["runs"] < len(runs) else ""
        cells = [
            name + rounds,
            f"{_num(s['rps'])} [{_num(s['rps_min'])}-{_num(s['rps_max'])}]{r('rps')}",
            _ms(s["p50_ms"]) + r("p50_ms"),
            _ms(s["p99_ms"]) + r("p99_ms"),
            errors,
            f"{s['rss_mib']:,.0f} MiB" + r("rss_mib"),
            _num(s["cpu_us"]) + r("cpu_us"),
            *(_num(s[key]) + r(key) for key in extra),
            _num(s["ctx"]) + r("ctx"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(text: str, limit: int = 300) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def noisy_runs(results: dict[str, list[dict]], noise_cores: float) -> list[str]:
    """Runs during which other work took more than ``noise_cores``, for the notes."""
    return [
        f"{name} r{i} {run['other_cores']:.2f}"
        + (f" (best of {run['attempts']})" if run.get("attempts", 1) > 1 else "")
        for name, runs in results.items()
        for i, run in enumerate(runs, 1)
        if run.get("other_cores", 0) > noise_cores
    ]


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
    noisy = noisy_runs(results, noise_cores)
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
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    python = "unknown"
    versions = "unknown"
    if venv_bin(args.venv, "python").exists():
        python = subprocess.run(
            [venv_python(args.venv), "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        versions = subprocess.run(
            [venv_python(args.venv), "-c", _VERSIONS], capture_output=True, text=True, check=False
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
