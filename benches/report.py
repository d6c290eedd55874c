"""The markdown report: one table per scenario, its commands and notes, and
the machine header; made from the runs compare.py collected (or its --json)."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import subprocess
from collections.abc import Callable

import freshconn
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
        "probe": freshconn.summary([r.get("probe") for r in ok]),
        **(_idle_summary(ok) if "held" in ok[0] else {}),
    }


def _idle_summary(ok: list[dict]) -> dict:
    """idle_keepalive's own figures: medians over the rounds."""

    def med(key: str) -> float | None:
        values = [r[key] for r in ok if r.get(key) is not None]
        return statistics.median(values) if values else None

    return {
        key: med(key)
        for key in (
            "alone_rps", "rps_ratio", "held", "open_at_load", "open_after", "kib_per_conn",
            "open_s",
        )
    } | {"held_target": ok[0]["held_target"]}  # fmt: skip


PROBE_COLUMNS = ("probes", "probe p50", "probe max", "probe timeouts")

COLUMNS = (
    "server", "requests/s median [min-max]", "p50", "p99", "errors",
    "peak RSS (tree)", "CPU µs/req", "ctx sw/req", *PROBE_COLUMNS,
)  # fmt: skip

IDLE_COLUMNS = (
    "server", "answered (of N)", "open at load start / end", "RSS KiB per held conn",
    "req/s alone", "req/s with N held", "with / alone", "p99 with N held", "errors",
    "peak RSS (tree)", *PROBE_COLUMNS,
)  # fmt: skip


def table(scenario: Scenario, results: dict[str, list[dict]], status: dict[str, str]) -> str:
    """One markdown table: a row per server, ratios to rwsgi in parentheses."""
    if scenario.idle:
        return idle_table(results, status)
    return server_table(results, status, COLUMNS, summarize, extra=(), tail=probe_cells)


def probe_cells(s: dict, against: dict | None) -> list[str]:
    """The fresh-connection probe's cells: count, p50 and max of the time to
    the first byte, timeouts (no answer within 5 s)."""
    p = s.get("probe")
    if p is None:
        return ["—"] * len(PROBE_COLUMNS)
    base = against.get("probe") if against else None

    def ms(key: str) -> str:
        if p[key] is None:
            return "—"
        ref = base[key] if base and base[key] is not None else None
        return _ms(p[key]) + _ratio(p[key], ref)

    return [f"{p['count']:,}", ms("p50_ms"), ms("max_ms"), f"{p['timeouts']:,}"]


def idle_table(results: dict[str, list[dict]], status: dict[str, str]) -> str:
    """idle_keepalive: what the held connections cost and how hello fared
    beside them; ratios to rwsgi only on the memory per connection."""
    base = summarize(results.get("rwsgi", []))
    lines = [
        "| " + " | ".join(IDLE_COLUMNS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(IDLE_COLUMNS) - 1)) + "|",
    ]
    for name, why in status.items():
        runs = results.get(name, [])
        s = None if why else summarize(runs)
        if s is None:
            reason = why or ("failed: " + _cell(runs[0]["failed"]) if runs else "did not run")
            lines.append(f"| {name} | {reason} |" + " — |" * (len(IDLE_COLUMNS) - 2))
            continue
        rounds = f" [{s['runs']}/{len(runs)} runs]" if s["runs"] < len(runs) else ""
        per_conn = s["kib_per_conn"]
        base_conn = base.get("kib_per_conn") if base and name != "rwsgi" else None
        ratio = s["rps_ratio"]
        cells = [
            name + rounds,
            f"{s['held']:,.0f}",
            f"{s['open_at_load']:,.0f} / {s['open_after']:,.0f}",
            "—" if per_conn is None else f"{per_conn:.1f}" + _ratio(per_conn, base_conn),
            _num(s["alone_rps"]),
            f"{_num(s['rps'])} [{_num(s['rps_min'])}-{_num(s['rps_max'])}]",
            "—" if ratio is None else f"{ratio:.2f}",
            _ms(s["p99_ms"]) if s["rps"] else "—",  # no answer: no latency either
            f"{s['errors']:,}",
            f"{s['rss_mib']:,.0f} MiB",
            *probe_cells(s, base if name != "rwsgi" else None),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def server_table(
    results: dict[str, list[dict]],
    status: dict[str, str | None] | dict[str, str],
    columns: tuple[str, ...],
    summarize_runs: Callable[[list[dict]], dict | None],
    extra: tuple[str, ...],
    tail: Callable[[dict, dict | None], list[str]] | None = None,
) -> str:
    """The table every harness prints. ``extra`` names more CPU-like figures
    of the summary, shown between "CPU µs/req" and "ctx sw/req"; ``tail``
    makes the cells after "ctx sw/req" from a summary and rwsgi's (None for
    rwsgi's own row)."""
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
            *(tail(s, against) if tail else ()),
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
            probe_errors = (run.get("probe") or {}).get("errors")
            if probe_errors:
                out.append(f"{name}, round {i}: probes that failed: {_counts(probe_errors)}")
            if "held" in run:
                out.append(f"{name}, round {i}: {_held_note(run)}")
            if run.get("scratch_bytes"):
                written = ", ".join(
                    f"{file} {size / 2**20:,.1f} MiB" for file, size in run["scratch_bytes"].items()
                )
                out.append(f"{name}, round {i}: wrote {written}")
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


def _counts(kinds: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {kind}" for kind, n in sorted(kinds.items(), key=lambda x: -x[1]))


def _held_note(run: dict) -> str:
    """How the held connections went in one idle_keepalive run."""
    text = (
        f"{run['held']:,} of {run['held_target']:,} connections answered and held "
        f"after {run['open_s']:.1f} s; tree RSS {run['rss_idle_mib']:.0f} -> "
        f"{run['rss_held_mib']:.0f} MiB; {run['open_at_load']:,} open when the load began, "
        f"{run['open_after']:,} when it ended"
    )
    if run["held_failed"]:
        text += f"; not held: {_counts(run['held_failed'])}"
    text += (
        f"; hello alone {run['alone']['rps']:,.0f} req/s before, "
        f"{run['alone_after']['rps']:,.0f} after"
    )
    kinds = ("status", "connect", "read", "write", "timeout")
    for when in ("alone", "alone_after"):
        wrk = run[when]["wrk"]
        if any(wrk[k] for k in kinds):
            text += f"; wrk errors {when.replace('_', ' ')}: " + ", ".join(
                f"{wrk[k]:,} {k}" for k in kinds if wrk[k]
            )
    return text


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
            *_probe_header(args),
        ]
    )


def _probe_header(args: argparse.Namespace) -> list[str]:
    """compare.py's probes and held connections (nginx.py has neither)."""
    if getattr(args, "connections", None) is None:
        return []
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return [
        "- probes: a fresh connection every 0.2 s during each measured run, 5 s timeout; "
        f"idle_keepalive holds {args.connections:,} connections (open within "
        f"{args.hold_timeout:.0f} s); RLIMIT_NOFILE {nofile:,} (the servers inherit it)"
    ]


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
    load = f"{scenario.connections} connections"
    if scenario.post_bytes:
        load += f", {scenario.post_bytes / 2**20:g} MiB bodies" + (
            " (chunked)" if scenario.chunked else " (Content-Length)"
        )
    held = next((r["held_target"] for runs in results.values() for r in runs if "held" in r), None)
    idle = (
        f" N = {held:,} idle keep-alive connections (one answered GET each), then the "
        "same hello load as alone; RSS per held conn is the tree's RSS after opening "
        "them minus before, per connection still open."
        if held
        else ""
    )
    lines = [
        f"## {scenario.name}: {scenario.title}",
        "",
        f"{scenario.workers} workers x {scenario.threads} thread(s), {load}, "
        f"app `{scenario.target}` at `{scenario.path}`.{idle} Ratios in parentheses are to rwsgi. "
        "Probes: a fresh connection every 0.2 s during the measured load, time to the "
        "first byte of its answer.",
        "",
        table(scenario, results, status),
        "",
        *cost_lines(results),
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


# Issue 16: the access log and metrics on cost at most this share of hello's
# requests/s. The report says whether a run met it; it never fails the run.
OBSERVED_BUDGET = 0.05


def cost_lines(results: dict[str, list[dict]]) -> list[str]:
    """hello_observed's verdict: rwsgi-observed against rwsgi in the same
    run (requests/s and CPU per request), and whether it is within budget."""
    if "rwsgi-observed" not in results:
        return []
    off, on = summarize(results.get("rwsgi", [])), summarize(results["rwsgi-observed"])
    if off is None or on is None or not off["rps"] or not off["cpu_us"]:
        return ["Cost of observability: not measured (a side of the pair has no run).", ""]
    ratio = on["rps"] / off["rps"]
    cost = 1 - ratio
    verdict = (
        f"within the issue's {OBSERVED_BUDGET:.0%}"
        if cost <= OBSERVED_BUDGET
        else f"over the issue's {OBSERVED_BUDGET:.0%}"
    )
    overlap = on["rps_max"] >= off["rps_min"] and off["rps_max"] >= on["rps_min"]
    return [
        f"Cost of observability: rwsgi-observed {_num(on['rps'])} vs rwsgi {_num(off['rps'])} "
        f"requests/s ({ratio:.3f}x, a cost of {cost:.1%}), CPU {_num(on['cpu_us'])} vs "
        f"{_num(off['cpu_us'])} µs/request ({on['cpu_us'] / off['cpu_us']:.3f}x): {verdict}"
        + ("; the rounds' ranges overlap" if overlap else "")
        + ".",
        "",
    ]


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
