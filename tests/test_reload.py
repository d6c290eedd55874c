"""Reloads, worker count changes and recycling, through real processes.

SIGHUP starts a new code generation: a loader imports the app's current
source and forks new workers; the old ones retire only once every new one
accepts. Recycling (--max-requests, --max-lifetime, --reload-on-rss)
replaces one worker the same way. Each test counts what a client saw: the
promise is zero failed requests and the master's PID unchanged.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from support.process import Server, wait_until

APP_SOURCE = """
import os
import re
import time

VERSION = {version!r}
{extra}

def application(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    if "sleep" in query:
        time.sleep(0.01)
    if "grow" in query:
        _HOARD.append(bytearray(8 << 20))
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

_HOARD = []
"""


def write_app(folder: Path, version: str, extra: str = "") -> None:
    (folder / "reloadapp.py").write_text(APP_SOURCE.format(version=version, extra=extra))


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path, "v1")
    return tmp_path


def start(start_server, app_dir: Path, *args: str, workers: int = 2, threads: int = 1) -> Server:
    return start_server(
        "reloadapp",
        "--pythonpath",
        str(app_dir),
        *args,
        workers=workers,
        threads=threads,
        # Rewritten sources must not be shadowed by a .pyc of the same second.
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )


def answer(server: Server, path: str = "/") -> tuple[str, int]:
    response = server.get(path)
    assert response.status == 200, response
    version, pid = response.body.decode().split()
    return version, int(pid)


def wait_for_version(server: Server, version: str, timeout: float = 30.0) -> float:
    """Seconds until a fresh request is answered by ``version``."""
    started = time.monotonic()
    wait_until(lambda: answer(server)[0] == version, timeout)
    return time.monotonic() - started


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class Load:
    """Clients in threads, half keeping their connection, counting outcomes."""

    def __init__(self, server: Server, clients: int = 16, path: str = "/?sleep") -> None:
        self.server = server
        self.path = path
        self.outcomes: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(index % 2 == 0,), daemon=True)
            for index in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _count(self, outcome: str, version: str | None = None) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            if version:
                self.versions[version] += 1

    def _client(self, keep_alive: bool) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if connection is None:
                connection = self.server.connection(timeout=10)
            try:
                connection.request("GET", self.path)
                response = connection.getresponse()
                body = response.read()
                if response.status == 200:
                    self._count("ok", body.split()[0].decode())
                else:
                    self._count(f"status {response.status}")
                if not keep_alive or response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                self._count(type(error).__name__)
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    def failures(self) -> dict[str, int]:
        with self._lock:
            return {kind: count for kind, count in self.outcomes.items() if kind != "ok"}

    def served(self) -> int:
        with self._lock:
            return self.outcomes["ok"]


@pytest.mark.parametrize("mode", ["--preload", "--lazy"])
def test_sighup_loads_the_changed_source_and_keeps_the_master(
    start_server, app_dir: Path, mode: str
) -> None:
    server = start(start_server, app_dir, mode)
    old_pids = set(server.worker_pids.values())
    assert answer(server)[0] == "v1"
    write_app(app_dir, "v2")
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    wait_for_version(server, "v2")
    server.wait_for_log(r"reload: generation 2 serves", timeout=10, since=mark)
    wait_until(lambda: not any(alive(pid) for pid in old_pids), 10)
    new_pids = set(server.worker_pids.values())
    assert not new_pids & old_pids
    assert server.proc.poll() is None
    # The old workers finished and exited on their own.
    for pid in old_pids:
        assert f"(pid {pid}) exited with status 0" in server.logs()
    assert {answer(server)[0] for _ in range(6)} == {"v2"}


@pytest.mark.parametrize("mode", ["--preload", "--lazy"])
def test_a_reload_whose_code_fails_to_import_keeps_the_old_workers(
    start_server, app_dir: Path, mode: str
) -> None:
    server = start(start_server, app_dir, mode)
    old_pids = set(server.worker_pids.values())
    write_app(app_dir, "v2", extra="raise RuntimeError('reload-import-marker')")
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"reload failed", timeout=20, since=mark)
    assert "reload-import-marker" in server.logs()
    assert {answer(server)[0] for _ in range(6)} == {"v1"}
    assert all(alive(pid) for pid in old_pids)
    # Fixed, the next reload goes through.
    write_app(app_dir, "v3")
    server.send_signal(signal.SIGHUP)
    wait_for_version(server, "v3")
    assert server.proc.poll() is None


def test_three_reloads_under_load_fail_no_request(start_server, app_dir: Path) -> None:
    server = start(start_server, app_dir, workers=2, threads=4)
    delays = []
    with Load(server) as load:
        wait_until(lambda: load.served() > 50, 10)
        for version in ("v2", "v3", "v4"):
            write_app(app_dir, version)
            server.send_signal(signal.SIGHUP)
            delays.append(wait_for_version(server, version))
            before = load.served()
            wait_until(lambda before=before: load.served() > before + 50, 10)
    assert load.failures() == {}, (load.failures(), server.logs())
    assert server.proc.poll() is None
    assert load.versions.keys() == {"v1", "v2", "v3", "v4"}
    # Each reload answered with its new code in about an import's time; this
    # is a liveness bound on shared cores, benches/reload.py measures it.
    assert max(delays) < 10, delays


def test_sigttin_and_sigttou_change_the_worker_count(start_server, app_dir: Path) -> None:
    server = start(start_server, app_dir, workers=1)
    first = server.worker_pids[1]
    mark = server.mark()
    server.send_signal(signal.SIGTTIN)
    server.wait_for_log(r"worker 2 \(pid \d+\) ready", timeout=10, since=mark)
    second = server.worker_pids[2]
    wait_until(lambda: {answer(server)[1] for _ in range(20)} == {first, second}, 10)
    mark = server.mark()
    server.send_signal(signal.SIGTTOU)
    server.wait_for_log(rf"worker 2 \(pid {second}\) exited with status 0", timeout=10, since=mark)
    mark = server.mark()
    server.send_signal(signal.SIGTTOU)  # never below one
    server.wait_for_log(r"already at one worker", timeout=10, since=mark)
    assert {answer(server)[1] for _ in range(5)} == {first}
    with open(f"/proc/{server.pid}/stat") as stat:
        assert stat.read().rsplit(")", 1)[1].split()[0] in ("S", "R")


def restarts(server: Server) -> int:
    return len(server.all_worker_pids())


def test_max_requests_replaces_workers_without_a_failed_request(
    start_server, app_dir: Path
) -> None:
    server = start(
        start_server,
        app_dir,
        "--max-requests",
        "40",
        "--max-requests-jitter",
        "10",
        workers=2,
        threads=2,
    )
    with Load(server, clients=8) as load:
        wait_until(lambda: restarts(server) >= 6, 60)
    assert load.failures() == {}, (load.failures(), server.logs())
    assert "reached --max-requests" in server.logs()
    assert server.proc.poll() is None


def test_max_lifetime_replaces_a_worker_with_its_successor_ready_first(
    start_server, app_dir: Path
) -> None:
    server = start(start_server, app_dir, "--max-lifetime", "1", workers=1, threads=2)
    first = server.worker_pids[1]
    with Load(server, clients=4) as load:
        wait_until(lambda: not alive(first), 20)
        wait_until(lambda: load.served() > 20, 10)
    assert load.failures() == {}, (load.failures(), server.logs())
    assert "it reached --max-lifetime" in server.logs()
    assert server.worker_pids[1] != first


def test_reload_on_rss_replaces_a_worker_that_grew(start_server, app_dir: Path) -> None:
    server = start(start_server, app_dir, "--reload-on-rss", "60", workers=1)
    first = server.worker_pids[1]
    for _ in range(10):
        answer(server, "/?grow")
    second = server.wait_for_respawn(1, first, timeout=20)
    assert "--reload-on-rss" in server.logs()
    wait_until(lambda: not alive(first), 10)
    assert answer(server)[1] == second


def test_unexpected_worker_death_is_still_respawned(start_server, app_dir: Path) -> None:
    server = start(start_server, app_dir, workers=2)
    victim = server.worker_pids[1]
    os.kill(victim, signal.SIGKILL)
    replacement = server.wait_for_respawn(1, victim, timeout=10)
    assert answer(server)[0] == "v1"
    assert replacement != victim


def test_health_drain_delay_keeps_serving_with_readiness_503(start_server, app_dir: Path) -> None:
    server = start(
        start_server,
        app_dir,
        "--health-path",
        "/-/ready",
        "--health-drain-delay",
        "2",
        workers=2,
    )
    assert server.get("/-/ready").status == 200
    server.send_signal(signal.SIGTERM)
    wait_until(lambda: server.get("/-/ready").status == 503, 5)
    # Still serving on new connections while a load balancer notices.
    assert answer(server)[0] == "v1"
    assert server.proc.poll() is None
    server.wait_for_log(r"--health-drain-delay passed", timeout=10)
    assert server.wait(15) == 0


def test_a_reload_keeps_readiness_200_on_new_connections(start_server, app_dir: Path) -> None:
    # A retiring worker answers 503 (its drain has begun) but stops
    # accepting at once, so fresh probes land on accepting workers; only a
    # probe accepted in the instant of the retirement can see its 503.
    server = start(start_server, app_dir, "--health-path", "/-/ready", workers=2)
    old_pids = set(server.worker_pids.values())
    write_app(app_dir, "v2")
    server.send_signal(signal.SIGHUP)
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses[server.get("/-/ready").status] += 1
        if answer(server)[0] == "v2" and statuses[200] > 20:
            break
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] <= 2 and statuses[200] > 20, statuses
    wait_until(lambda: not any(alive(pid) for pid in old_pids), 10)
    assert {server.get("/-/ready").status for _ in range(20)} == {200}
    assert answer(server)[0] == "v2"


def test_a_dead_loader_is_replaced_and_workers_respawn_from_the_new_one(
    start_server, app_dir: Path
) -> None:
    server = start(start_server, app_dir, workers=2)
    loader = int(re.findall(r"generation 1: loader pid (\d+)", server.logs())[0])
    os.kill(loader, signal.SIGKILL)
    server.wait_for_log(r"generation 1's loader .* starting a new one", timeout=10)
    server.wait_for_log(r"generation 2: app loaded", timeout=20)
    # The workers never stopped serving; one that dies now comes from the new loader.
    assert answer(server)[0] == "v1"
    victim = server.worker_pids[1]
    os.kill(victim, signal.SIGKILL)
    server.wait_for_respawn(1, victim, timeout=10)
    assert answer(server)[0] == "v1"
