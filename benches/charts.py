"""The benchmark tables as PNG bar charts, drawn from the recorded results.

    python benches/charts.py           # benches/charts/BENCH-{rps,cpu,latency}.png
    python benches/charts.py --check   # what would be drawn, from where; no matplotlib needed

For each bench that publishes wrk tables to RESULTS.md (compare.py,
nginx.py, django_static.py) it reads ``results/BENCH.json`` (the raw figures
``--publish`` records) when there is one, else that bench's tables in
RESULTS.md itself (report.py writes them, so their layout is fixed). Each
chart has a panel per scenario and a bar per server, rwsgi in colour and its
peers in greys: requests/s (median, the rounds' min-max as a whisker), CPU
µs per request, and p50/p99 latency (a log axis when a panel's spread needs
one). Nothing is drawn that the results do not hold: a failed server is
marked "failed", one that did not run the scenario is left out.

matplotlib is a benchmark-only dependency (``bash benches/setup.sh``
installs it into the benchmark venv); rwsgi and its tests never need it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from report import TITLE as COMPARE_TITLE
from report import summarize
from servers import BENCHES

RESULTS = BENCHES / "RESULTS.md"
RESULTS_DIR = BENCHES / "results"
CHARTS_DIR = BENCHES / "charts"

HIGHLIGHT = {"rwsgi": "#d9480f", "rwsgi-observed": "#f59f00"}
GREYS = ("#495057", "#868e96", "#343a40", "#adb5bd", "#5c636a", "#9aa1a8", "#212529", "#c4c9ce")
# A panel's latency axis goes logarithmic past this ratio of its largest to
# its smallest figure: a 1 ms bar next to a 1 s one is otherwise invisible.
LOG_SPREAD = 30.0


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    """A bench whose tables are drawn: its results file and RESULTS.md title."""

    key: str
    label: str
    title: str  # the heading line its section of RESULTS.md starts with
    cpu: str  # the CPU column's header (nginx.py has the app's and nginx's)


SPECS = (
    BenchSpec("compare", "rwsgi vs its peers (compare.py)", COMPARE_TITLE, "CPU µs/req"),
    BenchSpec(
        "nginx",
        "behind nginx, uwsgi protocol (nginx.py)",
        "## Behind nginx (uwsgi protocol on a unix socket)",
        "app CPU µs/req",
    ),
    BenchSpec(
        "django_static",
        "Django and static files (django_static.py)",
        "## Django and static files (benches/django_static.py)",
        "CPU µs/req",
    ),
)


@dataclasses.dataclass
class Row:
    """One server's figures in one scenario; all None when it failed."""

    server: str
    rps: float | None = None
    rps_min: float | None = None
    rps_max: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us: float | None = None

    @property
    def failed(self) -> bool:
        return self.rps is None


@dataclasses.dataclass
class Section:
    name: str
    title: str
    rows: list[Row]


@dataclasses.dataclass
class Bench:
    spec: BenchSpec
    source: str  # where the figures came from, for the chart's footnote
    date: str
    sections: list[Section]


# --------------------------------------------------------------------------
# Reading the results: the recorded JSON, else RESULTS.md's tables
# --------------------------------------------------------------------------


def _left_out(why: str | None) -> bool:
    """A status that means the server had no part in the scenario."""
    return bool(why) and not str(why).startswith("failed")


def from_json(spec: BenchSpec, data: dict[str, Any], source: str) -> Bench:
    """The sections of a ``--json``/``--publish`` dict, summarised as report.py does."""
    titles = data.get("titles", {})
    sections = []
    for name in data["scenarios"]:
        status = data["status"][name]
        rows = []
        for server, why in status.items():
            if _left_out(why):
                continue
            runs = [r for r in data["runs"] if r["scenario"] == name and r["server"] == server]
            if any("held" in r for r in runs):
                break  # idle_keepalive: its own table, not these charts
            s = summarize(runs)
            if s is None:
                rows.append(Row(server))
                continue
            cpu = s["cpu_us"]
            rows.append(
                Row(server, s["rps"], s["rps_min"], s["rps_max"], s["p50_ms"], s["p99_ms"], cpu)
            )
        else:
            if rows:
                sections.append(Section(name, titles.get(name, name), rows))
    return Bench(spec, source, _date(data.get("header", "")), sections)


_HEADING = re.compile(r"^#{2,4} (?:nginx, )?([a-z0-9_]+): (.+)$")


def region(text: str, title: str) -> list[str] | None:
    """The lines of one bench's part of RESULTS.md: from its title to the
    next ``## `` heading that is not one of its scenarios'."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(title)), None)
    if start is None:
        return None
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if lines[i].startswith("## ") and not _HEADING.match(lines[i])
        ),
        len(lines),
    )
    return lines[start:end]


def _number(cell: str) -> float | None:
    """The first figure of a cell: ``77,552 [69,254-85,850] (0.99x)`` -> 77552."""
    match = re.match(r"\s*([\d,]+(?:\.\d+)?)", cell)
    return float(match.group(1).replace(",", "")) if match else None


def _range(cell: str) -> tuple[float | None, float | None]:
    match = re.search(r"\[([\d,.]+)-([\d,.]+)\]", cell)
    if not match:
        return None, None
    return float(match.group(1).replace(",", "")), float(match.group(2).replace(",", ""))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def from_markdown(spec: BenchSpec, lines: list[str], source: str) -> Bench:
    """The sections of a bench's RESULTS.md tables (report.py's layout)."""
    sections = []
    current: tuple[str, str] | None = None
    i = 0
    while i < len(lines):
        heading = _HEADING.match(lines[i])
        if heading:
            current = (heading.group(1), heading.group(2))
        elif current and lines[i].startswith("| server | requests/s median"):
            header = _cells(lines[i])
            i += 2  # the header and its |---| line
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_row(header, _cells(lines[i]), spec.cpu))
                i += 1
            kept = [r for r in rows if r is not None]
            if kept:
                sections.append(Section(current[0], current[1], kept))
            current = None
            continue
        i += 1
    return Bench(spec, source, _date("\n".join(lines)), sections)


def _row(header: list[str], cells: list[str], cpu: str) -> Row | None:
    server = re.sub(r" \[\d+/\d+ runs\]$", "", cells[0])
    if len(cells) < 2 or cells[1].startswith("failed"):
        return Row(server)
    column = dict(zip(header, cells, strict=False))
    rps = _number(column.get("requests/s median [min-max]", ""))
    if rps is None:
        return None  # n/a, not installed: no part in the scenario
    low, high = _range(column["requests/s median [min-max]"])
    return Row(
        server,
        rps,
        low,
        high,
        _number(column.get("p50", "")),
        _number(column.get("p99", "")),
        _number(column.get(cpu, "")),
    )


def _date(header: str) -> str:
    match = re.search(r"^- date: (.+)$", header, re.MULTILINE)
    return match.group(1) if match else "date unknown"


def _shown(path: Path) -> str:
    """A path as the footnote gives it: from the checkout's root when inside it."""
    try:
        return str(path.resolve().relative_to(BENCHES.parent))
    except ValueError:
        return str(path)


def load(results: Path = RESULTS, results_dir: Path = RESULTS_DIR) -> list[Bench]:
    """Every bench with figures: its recorded JSON when there is one, else
    its tables in RESULTS.md."""
    text = results.read_text() if results.exists() else ""
    benches = []
    for spec in SPECS:
        recorded = results_dir / f"{spec.key}.json"
        if recorded.exists():
            bench = from_json(spec, json.loads(recorded.read_text()), _shown(recorded))
        else:
            lines = region(text, spec.title)
            if lines is None:
                continue
            bench = from_markdown(spec, lines, _shown(results))
        if bench.sections:
            benches.append(bench)
    return benches


# --------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------


def compact(value: float) -> str:
    """A bar's label, three figures: 77,552 -> 77.6k, 1,706 -> 1.71k, 26.2, 0.90."""
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    if value >= 1000:
        return f"{value / 1000:.2f}k"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def tick(value: float, _position: object = None) -> str:
    """An axis tick: 20000 -> 20k, 1500 -> 1.5k, 50."""
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def ms(value: float) -> str:
    """A latency label: 1,513, 27.4, 0.90."""
    return f"{value:,.0f}" if value >= 100 else compact(value)


def _failed(ax: Any, x: float, y: float) -> None:
    ax.text(
        x,
        y,
        "failed",
        rotation=90,
        ha="center",
        va="bottom",
        fontsize=7,
        color="#495057",
        style="italic",
    )


def colours(bench: Bench) -> dict[str, str]:
    """rwsgi (and its variants) highlighted; every peer its own grey, the
    same in every panel."""
    out: dict[str, str] = {}
    for section in bench.sections:
        for row in section.rows:
            if row.server not in out:
                out[row.server] = (
                    HIGHLIGHT.get(row.server)
                    or GREYS[sum(1 for s in out if s not in HIGHLIGHT) % len(GREYS)]
                )
    return out


def _grid(plt: Any, count: int) -> tuple[Any, list[Any]]:
    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(max(3.6 * cols, 8.0), 2.5 * rows + 0.7), squeeze=False, dpi=110
    )
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.axis("off")
    return fig, flat[:count]


def _style(ax: Any, section: Section, servers: list[str]) -> None:
    ax.set_title(section.name, fontsize=9, loc="left")
    ax.set_xticks(range(len(servers)), servers, rotation=30, ha="right", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_axisbelow(True)
    ax.grid(axis="y", color="#e9ecef", linewidth=0.6)


def _finish(plt: Any, fig: Any, bench: Bench, what: str, path: Path) -> None:
    fig.suptitle(f"{bench.spec.label}: {what}", fontsize=11, x=0.01, ha="left")
    fig.text(
        0.01,
        0.005,
        f"from {bench.source}, run of {bench.date}; compare servers only within one run",
        fontsize=7,
        color="#666666",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    # No Software/date metadata: the same results give the same bytes.
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def bar_chart(plt: Any, bench: Bench, metric: str, what: str, path: Path) -> Path:
    """One panel per scenario, a bar per server, its value on top."""
    from matplotlib.ticker import FuncFormatter

    sections = [s for s in bench.sections if any(getattr(r, metric) for r in s.rows)]
    colour = colours(bench)
    fig, axes = _grid(plt, len(sections))
    for ax, section in zip(axes, sections, strict=True):
        servers = [r.server for r in section.rows]
        values = [getattr(r, metric) for r in section.rows]
        ax.bar(
            range(len(values)),
            [v or 0 for v in values],
            width=0.7,
            color=[colour[s] for s in servers],
        )
        tops = [v or 0 for v in values]
        if metric == "rps":
            tops += [r.rps_max or 0 for r in section.rows]
        top = max(tops)
        for x, (row, value) in enumerate(zip(section.rows, values, strict=True)):
            if value is None:
                _failed(ax, x, top * 0.02)
                continue
            label_at = value
            if metric == "rps" and row.rps_min is not None and row.rps_max is not None:
                ax.errorbar(
                    x,
                    value,
                    yerr=[[value - row.rps_min], [row.rps_max - value]],
                    color="#212529",
                    linewidth=0.8,
                    capsize=2,
                )
                label_at = row.rps_max
            ax.text(
                x,
                label_at + top * 0.02,
                compact(value),
                ha="center",
                va="bottom",
                fontsize=6.5,
                fontweight="bold" if row.server in HIGHLIGHT else "normal",
            )
        ax.set_ylim(0, top * 1.18 if top else 1)
        ax.yaxis.set_major_formatter(FuncFormatter(tick))
        _style(ax, section, servers)
    _finish(plt, fig, bench, what, path)
    return path


def latency_chart(plt: Any, bench: Bench, path: Path) -> Path:
    """p50 (solid) and p99 (hatched) per server per scenario, in ms."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    sections = [s for s in bench.sections if any(r.p99_ms for r in s.rows)]
    colour = colours(bench)
    fig, axes = _grid(plt, len(sections))
    for ax, section in zip(axes, sections, strict=True):
        servers = [r.server for r in section.rows]
        shown = [v for r in section.rows for v in (r.p50_ms, r.p99_ms) if v]
        log = bool(shown) and max(shown) / max(min(shown), 1e-3) > LOG_SPREAD
        for x, row in enumerate(section.rows):
            if row.failed:
                _failed(ax, x, min(shown) if log else max(shown) * 0.02)
                continue
            for offset, value, hatch, alpha in (
                (-0.19, row.p50_ms, None, 1.0),
                (0.19, row.p99_ms, "////", 0.55),
            ):
                if not value:
                    continue
                ax.bar(
                    x + offset,
                    value,
                    width=0.36,
                    color=colour[row.server],
                    alpha=alpha,
                    hatch=hatch,
                    edgecolor="white",
                    linewidth=0,
                )
                ax.text(
                    x + offset,
                    value * (1.08 if log else 1.0),
                    " " + ms(value),
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=5.5,
                )
        if log:
            ax.set_yscale("log")
            ax.set_ylim(min(shown) / 2, max(shown) * 12)
        else:
            ax.set_ylim(0, max(shown) * 1.35 if shown else 1)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,g}"))
        ax.set_ylabel("ms" + (" (log)" if log else ""), fontsize=7)
        _style(ax, section, servers)
    fig.legend(
        handles=[
            Patch(facecolor="#868e96", label="p50"),
            Patch(facecolor="#868e96", alpha=0.55, hatch="////", edgecolor="white", label="p99"),
        ],
        loc="upper right",
        fontsize=7,
        ncol=2,
        frameon=False,
    )
    _finish(plt, fig, bench, "latency, p50 and p99 (lower is better)", path)
    return path


def draw(benches: list[Bench], out: Path) -> list[Path]:
    """Every chart of every bench, as ``out/BENCH-{rps,cpu,latency}.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for bench in benches:
        key = bench.spec.key
        written.append(
            bar_chart(
                plt,
                bench,
                "rps",
                "requests/s, median of the rounds (higher is better)",
                out / f"{key}-rps.png",
            )
        )
        cpu = bench.spec.cpu.replace("/req", " per request")
        written.append(
            bar_chart(plt, bench, "cpu_us", f"{cpu} (lower is better)", out / f"{key}-cpu.png")
        )
        written.append(latency_chart(plt, bench, out / f"{key}-latency.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="the markdown report")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="BENCH.json files")
    parser.add_argument("--out", type=Path, default=CHARTS_DIR, help="where the PNGs go")
    parser.add_argument(
        "--check", action="store_true", help="say what would be drawn and from where; draw nothing"
    )
    args = parser.parse_args(argv)
    benches = load(args.results, args.results_dir)
    if not benches:
        print(f"no results to draw in {args.results_dir} or {args.results}", file=sys.stderr)
        return 1
    for bench in benches:
        print(f"{bench.spec.key}: {len(bench.sections)} scenarios from {bench.source}")
        for section in bench.sections:
            rows = ", ".join(
                f"{r.server} failed" if r.failed else f"{r.server} {compact(r.rps or 0)}/s"
                for r in section.rows
            )
            print(f"  {section.name}: {rows}")
    if args.check:
        return 0
    try:
        written = draw(benches, args.out)
    except ImportError:
        print(
            "matplotlib is not installed: bash benches/setup.sh puts it in benches/.venv "
            "(or pip install matplotlib), then run this with that Python",
            file=sys.stderr,
        )
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
