"""``rwsgi top [ADDR]``: a live terminal view of a server's stats.

It reads the JSON the master writes on its ``--stats`` listener (uWSGI's
layout, so it reads a uWSGI master's too) every ``--interval`` seconds and
shows one row per worker: PID, status, requests per second since the last
refresh, requests in flight, resident memory, average response time and
respawns, with the totals above. ``q`` quits, ``+``/``-`` change the
interval. Only the standard library's curses is used. ``--once`` prints one
plain-text snapshot instead (for scripts and for terminals curses cannot
drive).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Row", "StatsError", "Totals", "fetch", "main", "parse_address", "rows", "totals"]

DEFAULT_ADDRESS = "127.0.0.1:9191"
_TIMEOUT = 3.0
_MAX_BYTES = 16 * 1024 * 1024
_MIN_INTERVAL = 0.2


class StatsError(Exception):
    """The stats could not be read; the message says from where and why."""


@dataclass(frozen=True)
class Address:
    """Where the stats listen, and whether they answer HTTP (``--stats-http``)."""

    family: int
    target: str | tuple[str, int]
    http: bool
    text: str


def parse_address(text: str) -> Address:
    """Read ``host:port``, ``[v6]:port``, a unix path, ``@abstract`` or ``http://host:port``."""
    http = False
    spec = text
    if spec.startswith("http://"):
        http = True
        spec = spec[len("http://") :].rstrip("/")
    if spec.startswith("@"):
        return Address(socket.AF_UNIX, "\0" + spec[1:], http, text)
    if "/" in spec or spec.endswith(".sock"):
        return Address(socket.AF_UNIX, spec, http, text)
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise StatsError(
            f"{text!r} is not a stats address "
            "(host:port, a unix socket path, @abstract or http://host:port)"
        )
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return Address(family, (host, int(port)), http, text)


def fetch(address: Address, timeout: float = _TIMEOUT) -> dict[str, Any]:
    """Connect, read the whole answer and decode its JSON."""
    try:
        with socket.socket(address.family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address.target)
            if address.http:
                sock.sendall(b"GET / HTTP/1.0\r\nHost: rwsgi-top\r\n\r\n")
            chunks: list[bytes] = []
            size = 0
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > _MAX_BYTES:
                    raise StatsError(f"{address.text}: the answer is larger than 16 MiB")
    except OSError as error:
        raise StatsError(f"{address.text}: {error.strerror or error}") from None
    data = b"".join(chunks)
    if address.http:
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep or not head.startswith(b"HTTP/"):
            raise StatsError(f"{address.text}: the answer is not HTTP")
        status = head.split(b" ", 2)[1:2]
        if status != [b"200"]:
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            raise StatsError(f"{address.text}: answered {line!r}")
        data = body
    try:
        stats = json.loads(data)
    except ValueError as error:
        raise StatsError(f"{address.text}: the answer is not stats JSON ({error})") from None
    if not isinstance(stats, dict) or not isinstance(stats.get("workers"), list):
        raise StatsError(f"{address.text}: the JSON has no workers list")
    return stats


@dataclass(frozen=True)
class Row:
    """One worker as the view shows it."""

    wid: int
    pid: int
    status: str
    rate: float | None
    requests: int
    in_flight: int
    rss: int
    avg_rt_us: int
    respawns: int


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _in_flight(worker: dict[str, Any]) -> int:
    cores = worker.get("cores")
    if isinstance(cores, list):
        return sum(1 for core in cores if isinstance(core, dict) and core.get("in_request"))
    return 0


def rows(stats: dict[str, Any], before: dict[str, Any] | None, elapsed: float) -> list[Row]:
    """The workers of ``stats``, with requests/s against ``before`` taken ``elapsed`` s earlier.

    A worker whose PID changed since (respawned) or that is new has no rate yet.
    """
    earlier: dict[int, tuple[int, int]] = {}
    if before is not None:
        for worker in before.get("workers", []):
            if isinstance(worker, dict):
                earlier[_number(worker.get("id"))] = (
                    _number(worker.get("pid")),
                    _number(worker.get("requests")),
                )
    result = []
    for worker in stats.get("workers", []):
        if not isinstance(worker, dict):
            continue
        wid, pid, requests = (_number(worker.get(key)) for key in ("id", "pid", "requests"))
        rate = None
        old = earlier.get(wid)
        if old is not None and old[0] == pid and elapsed > 0 and requests >= old[1]:
            rate = (requests - old[1]) / elapsed
        result.append(
            Row(
                wid=wid,
                pid=pid,
                status=str(worker.get("status", "?")),
                rate=rate,
                requests=requests,
                in_flight=_in_flight(worker),
                rss=_number(worker.get("rss")),
                avg_rt_us=_number(worker.get("avg_rt")),
                respawns=_number(worker.get("respawn_count")),
            )
        )
    return result


@dataclass(frozen=True)
class Totals:
    """The line above the table."""

    workers: int
    busy: int
    rate: float | None
    requests: int
    in_flight: int
    rss: int


def totals(table: list[Row]) -> Totals:
    """Sum the rows (the rate only when every worker has one)."""
    rates = [row.rate for row in table]
    return Totals(
        workers=len(table),
        busy=sum(1 for row in table if row.status == "busy"),
        rate=None if not table or None in rates else sum(r for r in rates if r is not None),
        requests=sum(row.requests for row in table),
        in_flight=sum(row.in_flight for row in table),
        rss=sum(row.rss for row in table),
    )


def _size(value: int) -> str:
    if value <= 0:
        return "-"
    if value < 1024:
        return f"{value} B"
    scaled = value / 1024
    for unit in ("KiB", "MiB"):
        if scaled < 1024:
            return f"{scaled:.1f} {unit}"
        scaled /= 1024
    return f"{scaled:.1f} GiB"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.1f}"


def _duration(us: int) -> str:
    if us <= 0:
        return "-"
    return f"{us} µs" if us < 1000 else f"{us / 1000:,.1f} ms"


HEADER = (
    f"{'WID':>4} {'PID':>8} {'STATUS':<8} {'REQ/S':>10} {'REQUESTS':>10} "
    f"{'INFLIGHT':>8} {'RSS':>10} {'AVG RT':>10} {'RESPAWNS':>8}"
)


def render(stats: dict[str, Any], table: list[Row], interval: float, source: str) -> list[str]:
    """The screen's lines, top to bottom (the same for curses and ``--once``)."""
    total = totals(table)
    version = stats.get("version", "?")
    lines = [
        f"rwsgi top - {source} - server {version}, master pid {_number(stats.get('pid'))}"
        f" - refresh every {interval:g} s",
        f"workers {total.workers} (busy {total.busy})  req/s {_rate(total.rate)}  "
        f"requests {total.requests:,}  in flight {total.in_flight}  "
        f"listen queue {_number(stats.get('listen_queue'))}"
        f" (errors {_number(stats.get('listen_queue_errors'))})  RSS {_size(total.rss)}",
        "",
        HEADER,
    ]
    for row in sorted(table, key=lambda row: row.wid):
        lines.append(
            f"{row.wid:>4} {row.pid:>8} {row.status:<8.8} {_rate(row.rate):>10} "
            f"{row.requests:>10,} {row.in_flight:>8} {_size(row.rss):>10} "
            f"{_duration(row.avg_rt_us):>10} {row.respawns:>8}"
        )
    return lines


def _draw(screen: Any, lines: list[str], footer: str, repaint: bool) -> None:
    import curses

    if repaint:  # after a key: the whole screen again, not just what changed
        screen.clear()
    else:
        screen.erase()
    height, width = screen.getmaxyx()
    for y, line in enumerate(lines[: max(height - 1, 0)]):
        try:
            screen.addnstr(y, 0, line, max(width - 1, 0))
        except curses.error:
            pass  # a terminal too small for the line: show what fits
    try:
        screen.addnstr(max(height - 1, 0), 0, footer, max(width - 1, 0), curses.A_REVERSE)
    except curses.error:
        pass
    screen.refresh()


def _live(screen: Any, address: Address, interval: float) -> None:
    import curses

    curses.curs_set(0)
    screen.nodelay(False)
    before: dict[str, Any] | None = None
    taken = 0.0
    lines: list[str] = []
    problem = ""
    repaint = False
    while True:
        now = time.monotonic()
        try:
            stats = fetch(address)
        except StatsError as error:
            problem = str(error)
        else:
            problem = ""
            table = rows(stats, before, now - taken)
            lines = render(stats, table, interval, address.text)
            before, taken = stats, now
        footer = "q quits, + / - change the interval"
        if problem:
            footer = f"{problem} (retrying)  |  {footer}"
        _draw(screen, lines, footer, repaint)
        repaint = False
        deadline = now + interval
        while (left := deadline - time.monotonic()) > 0:
            screen.timeout(max(int(left * 1000), 1))
            key = screen.getch()
            if key in (ord("q"), ord("Q")):
                return
            if key == ord("+"):
                interval = min(interval * 2, 60.0)
            elif key == ord("-"):
                interval = max(interval / 2, _MIN_INTERVAL)
            else:
                continue
            repaint = True
            break


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not _MIN_INTERVAL <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between {_MIN_INTERVAL} and 3600 seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    """``rwsgi top``: the live view, or one snapshot with ``--once``."""
    parser = argparse.ArgumentParser(
        prog="rwsgi top", description="A live view of a server's --stats listener."
    )
    parser.add_argument(
        "address",
        nargs="?",
        default=DEFAULT_ADDRESS,
        help="the --stats address: host:port, a unix socket path, @abstract, "
        f"or http://host:port for --stats-http (default {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--interval",
        "-i",
        type=_interval,
        default=1.0,
        metavar="SECONDS",
        help="seconds between refreshes (default 1)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="print one snapshot as text and exit (requests/s over one interval)",
    )
    args = parser.parse_args(argv)
    try:
        address = parse_address(args.address)
        if args.once:
            first = fetch(address)
            started = time.monotonic()
            time.sleep(args.interval)
            stats = fetch(address)
            table = rows(stats, first, time.monotonic() - started)
            print("\n".join(render(stats, table, args.interval, address.text)))
            return 0
        fetch(address)  # say at once when nothing listens there
    except StatsError as error:
        print(f"rwsgi top: {error}", file=sys.stderr)
        return 1
    if not sys.stdout.isatty():
        print("rwsgi top: standard output is not a terminal; use --once", file=sys.stderr)
        return 2
    import curses

    try:
        curses.wrapper(_live, address, args.interval)
    except KeyboardInterrupt:
        pass
    return 0
