"""The server's process tree from /proc: its CPU, context switches and memory,
and what the rest of the machine was busy with meanwhile."""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Iterable

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    text = read_text(f"/proc/{pid}/stat")
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
            status = read_text(f"/proc/{pid}/task/{tid}/status")
            if status is None:
                continue
            for line in status.splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        statm = read_text(f"/proc/{pid}/statm")
        if statm is not None:
            total += int(statm.split()[1]) * PAGE_SIZE
    return total


def machine_busy_ticks() -> int:
    """Busy (not idle, not iowait) CPU ticks of the whole machine, from /proc/stat."""
    fields = [int(x) for x in (read_text("/proc/stat") or "cpu 0 0 0 0").split("\n")[0].split()[1:]]
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
