"""Publishing a bench's run: its section of RESULTS.md, its raw figures as
JSON in ``results/`` (what ``charts.py`` draws from), and the charts redrawn.

The harnesses need only the standard library; matplotlib is the charts'
alone, so the charts are redrawn by whichever Python has it (this one, or the
benchmark venv's), and skipped with a hint when none has.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from servers import BENCHES, venv_python

RESULTS = BENCHES / "RESULTS.md"
RESULTS_DIR = BENCHES / "results"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def publish(
    report: str,
    title: str,
    *,
    first: bool = False,
    own_heading: Callable[[str], bool] = lambda line: False,
    path: Path = RESULTS,
) -> None:
    """Put ``report`` in RESULTS.md in place of the earlier one: from the line
    ``title`` up to the next ``## `` heading that ``own_heading`` does not
    claim (the report's own sections). With no earlier one it goes at the
    start (``first``) or the end."""
    text = path.read_text() if path.exists() else ""
    body = report.rstrip("\n") + "\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == title), None)
    if start is None:
        text = body + "\n" + text if first else text.rstrip("\n") + "\n\n" + body
    else:
        end = next(
            (
                i
                for i in range(start + 1, len(lines))
                if lines[i].startswith("## ") and not own_heading(lines[i])
            ),
            len(lines),
        )
        rest = "".join(lines[end:])
        text = "".join(lines[:start]) + body + ("\n" + rest if rest else "")
    path.write_text(text)
    log(f"wrote {path}")


def is_results(path: Path | None) -> bool:
    """Whether an ``--output`` is RESULTS.md itself (then the run is recorded too)."""
    return path is not None and path.resolve() == RESULTS.resolve()


def record(bench: str, data: dict, titles: dict[str, str]) -> Path:
    """Write the run's raw figures (the harness's ``--json`` dict) to
    ``results/BENCH.json``, with each scenario's title for the charts."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{bench}.json"
    path.write_text(json.dumps({**data, "bench": bench, "titles": titles}, indent=1) + "\n")
    log(f"wrote {path}")
    return path


def rerender_charts(venv: Path) -> bool:
    """Redraw benches/charts/ from the recorded results with ``charts.py``,
    run by this Python when it has matplotlib, else by the venv's."""
    pythons = []
    if importlib.util.find_spec("matplotlib") is not None:
        pythons.append(sys.executable)
    venv_py = venv_python(venv)
    if Path(venv_py).exists():
        pythons.append(venv_py)
    for python in pythons:
        has = subprocess.run(
            [python, "-c", "import matplotlib"], capture_output=True, check=False
        ).returncode
        if has == 0:
            done = subprocess.run([python, str(BENCHES / "charts.py")], check=False)
            if done.returncode == 0:
                return True
            log(f"charts.py failed ({done.returncode}); the results are recorded all the same")
            return False
    log(
        "charts not redrawn: matplotlib is not installed (bash benches/setup.sh installs it "
        f"into {venv}; or pip install matplotlib), then run python benches/charts.py"
    )
    return False
