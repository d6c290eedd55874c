"""``--stats`` and ``--stats-http``: uWSGI's stats JSON served by the master
(checked against what ``uwsgitop`` reads, and by running it), and
Prometheus text on ``GET /metrics`` (parsed by ``prometheus_client``'s own
parser). Real servers, real sockets; every wait is on an event or a count.
"""

from __future__ import annotations

import http.client
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ServerFactory, short_tmpdir, wait_until
from support.process import Server, run_to_exit

APP = "apps.stats:application"
STATS_RE = re.compile(r"stats(?: \(HTTP, /metrics\))? on (\S+)")
WORKER_KEYS = {
    "id": int,
    "pid": int,
    "requests": int,
    "delta_requests": int,
    "exceptions": int,
    "status": str,
    "rss": int,
    "vsz": int,
    "running_time": int,
    "last_spawn": int,
    "respawn_count": int,
    "harakiri_count": int,
    "tx": int,
    "avg_rt": int,
    "cores": list,
}
TOP_KEYS = {
    "version": str,
    "listen_queue": int,
    "listen_queue_errors": int,
    "load": int,
    "pid": int,
    "uid": int,
    "gid": int,
    "cwd": str,
    "sockets": list,
    "workers": list,
}


def stats_address(server: Server) -> str:
    return server.wait_for_log(STATS_RE).group(1)


def _connect(address: str, timeout: float = 10.0) -> socket.socket:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = address[len("unix:") :]
    elif address.startswith("@"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = "\0" + address[1:]
    else:
        host, _, port = address.rpartition(":")
        sock = socket.socket(socket.AF_INET6 if "[" in host else socket.AF_INET)
        target = (host.strip("[]"), int(port))
    sock.settimeout(timeout)
    sock.connect(target)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_stats(address: str) -> dict[str, Any]:
    """What a uwsgitop-style client gets: connect, read to EOF, parse."""
    with _connect(address) as sock:
        return json.loads(_read_all(sock))


def http_get(address: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def metrics(address: str) -> dict[str, Any]:
    """``/metrics`` parsed by prometheus_client: {family name: family}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, body = http_get(address, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    """The one sample of ``name`` (a sample name, e.g. ``..._total``) with ``labels``."""
    family = families[name.removesuffix("_total").removesuffix("_count")]
    wanted = {key.rstrip("_"): value for key, value in labels.items()}
    found = [
        s.value
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in wanted.items())
    ]
    assert len(found) == 1, (name, labels, family.samples)
    return float(found[0])


def total_requests(address: str) -> int:
    return sum(worker["requests"] for worker in read_stats(address)["workers"])


def test_the_json_has_uwsgis_layout_and_moves_with_traffic(start_server: ServerFactory) -> None:
    server = start_server(APP, "--stats", "127.0.0.1:0", workers=2, threads=2)
    address = stats_address(server)
    before = read_stats(address)
    for key, kind in TOP_KEYS.items():
        assert isinstance(before[key], kind), key
    assert before["pid"] == server.pid
    assert [s["proto"] for s in before["sockets"]] == ["http"]
    assert before["sockets"][0]["name"] == f"127.0.0.1:{server.port}"
    assert {w["pid"] for w in before["workers"]} == set(server.worker_pids.values())
    for worker in before["workers"]:
        for key, kind in WORKER_KEYS.items():
            assert isinstance(worker[key], kind), key
        assert worker["respawn_count"] == 1
        assert abs(worker["last_spawn"] - time.time()) < 600
        assert worker["rss"] > 0 and worker["vsz"] >= worker["rss"]
        assert len(worker["cores"]) == 2
        assert {"requests", "in_request"} <= worker["cores"][0].keys()
    for _ in range(10):
        assert server.get("/").status == 200
    deltas = []

    def all_counted() -> bool:
        stats = read_stats(address)
        deltas.append(sum(w["delta_requests"] for w in stats["workers"]))
        return sum(w["requests"] for w in stats["workers"]) == 10

    wait_until(all_counted, 10)
    assert sum(deltas) == 10, "each read's delta_requests counts what came since the last read"
    after = read_stats(address)
    assert sum(w["tx"] for w in after["workers"]) > sum(w["tx"] for w in before["workers"])
    for worker in after["workers"]:
        cores = sum(core["requests"] for core in worker["cores"])
        assert cores == worker["requests"], worker
        if worker["requests"]:
            assert worker["running_time"] > 0 and worker["avg_rt"] > 0
    assert sum(w["delta_requests"] for w in after["workers"]) == 0


def test_a_running_request_shows_busy_with_one_core_in_request(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(APP, "--stats", "127.0.0.1:0", threads=2)
    address = stats_address(server)
    gate, started = tmp_path / "gate", tmp_path / "started"
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(server.get(f"/gate?gate={gate}&started={started}").status)
    )
    thread.start()
    try:
        wait_until(started.exists, 10)
        (worker,) = read_stats(address)["workers"]
        assert worker["status"] == "busy"
        assert [core["in_request"] for core in worker["cores"]].count(1) == 1
        assert worker["in_flight"] == 1
    finally:
        gate.touch()
        thread.join(30)
    assert result == [200]
    wait_until(lambda: read_stats(address)["workers"][0]["status"] == "idle", 10)
    (worker,) = read_stats(address)["workers"]
    assert [core["in_request"] for core in worker["cores"]] == [0, 0]


def test_exceptions_and_respawns_are_counted(start_server: ServerFactory) -> None:
    server = start_server(APP, "--stats", "127.0.0.1:0")
    address = stats_address(server)
    assert server.get("/raise").status == 500
    wait_until(lambda: read_stats(address)["workers"][0]["exceptions"] == 1, 10)
    old = server.worker_pids[1]
    os.kill(old, signal.SIGKILL)
    new = server.wait_for_respawn(1, old, timeout=15)
    (worker,) = wait_until(
        lambda: [w for w in read_stats(address)["workers"] if w["pid"] == new] or None, 10
    )
    assert worker["respawn_count"] == 2
    assert worker["exceptions"] == 0, "a new process starts from zero"


def test_a_timed_out_request_counts_in_harakiri_count(start_server: ServerFactory) -> None:
    server = start_server(
        "apps.harakiri:application", "--stats", "127.0.0.1:0", "--harakiri", "1", threads=2
    )
    address = stats_address(server)
    assert server.get("/sleep?t=3", timeout=20).status == 504
    wait_until(lambda: read_stats(address)["workers"][0]["harakiri_count"] == 1, 10)


@pytest.mark.parametrize("kind", ["unix", "abstract"])
def test_unix_and_abstract_stats_addresses(start_server: ServerFactory, kind: str) -> None:
    if kind == "unix":
        where = os.path.join(short_tmpdir(), "stats.sock")
        expected = f"unix:{where}"
    else:
        where = f"@rwsgi-stats-test-{os.getpid()}"
        expected = where
    server = start_server(APP, "--stats", where)
    assert stats_address(server) == expected
    assert server.get("/").status == 200
    wait_until(lambda: total_requests(expected) == 1, 10)
    server.stop()
    if kind == "unix":
        assert not os.path.exists(where), "the socket file is removed at exit"


def _run_uwsgitop(address: str, pids: set[int]) -> str:
    """Run uwsgitop under a pseudo-terminal until every worker pid is on screen
    twice (two refreshes), then quit it with ``q``; its whole output."""
    uwsgitop = Path(sys.executable).with_name("uwsgitop")
    main, secondary = pty.openpty()
    env = dict(os.environ, TERM="xterm", COLUMNS="200", LINES="50")
    proc = subprocess.Popen(
        [str(uwsgitop), "--frequency", "1", address],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        close_fds=True,
    )
    os.close(secondary)
    output = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            text = output.decode("utf-8", "replace")
            if all(text.count(str(pid)) >= 2 for pid in pids) or "Traceback" in text:
                break
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    output += os.read(main, 65536)
                except OSError:
                    break
        os.write(main, b"q")
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError("uwsgitop did not quit on q") from None
        while True:
            ready, _, _ = select.select([main], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(main)
    return output.decode("utf-8", "replace")


@pytest.mark.parametrize("http", [False, True], ids=["socket", "http"])
def test_uwsgitop_shows_one_row_per_worker(start_server: ServerFactory, http: bool) -> None:
    extra = ["--stats-http"] if http else []
    server = start_server(APP, "--stats", "127.0.0.1:0", *extra, workers=2, threads=2)
    address = ("http://" if http else "") + stats_address(server)
    for _ in range(4):
        server.get("/")
    pids = set(server.worker_pids.values())
    screen = _run_uwsgitop(address, pids)
    assert "Traceback" not in screen, screen
    assert "unable to get uWSGI statistics" not in screen, screen
    for pid in pids:
        assert str(pid) in screen, (pid, screen)
    assert "WID" in screen and "ReSpwn" in screen


def test_metrics_count_requests_latency_and_restarts(start_server: ServerFactory) -> None:
    server = start_server(
        APP, "--stats", "127.0.0.1:0", "--stats-http", "--max-requests", "3", threads=2
    )
    address = stats_address(server)
    old = server.worker_pids[1]
    assert server.get("/").status == 200
    assert server.get("/missing").status == 404
    assert server.get("/raise").status == 500
    server.wait_for_respawn(1, old, timeout=20)
    assert server.get("/").status == 200

    def scraped() -> dict[str, Any] | None:
        families = metrics(address)
        done = sample(families, "rwsgi_worker_restarts_total", reason="max-requests") == 1
        counted = sample(families, "rwsgi_request_duration_seconds_count") == 4
        return families if done and counted else None

    families = wait_until(scraped, 20)
    assert sample(families, "rwsgi_requests_total", protocol="http", class_="2xx") == 2
    assert sample(families, "rwsgi_requests_total", protocol="http", class_="4xx") == 1
    assert sample(families, "rwsgi_requests_total", protocol="http", class_="5xx") == 1
    assert sample(families, "rwsgi_request_app_seconds_count") == 4
    assert sample(families, "rwsgi_exceptions_total") == 1
    assert sample(families, "rwsgi_worker_restarts_total", reason="signal") == 0
    assert sample(families, "rwsgi_bytes_total", kind="out") > 0
    assert sample(families, "rwsgi_bytes_total", kind="in") > 0
    for name in (
        "rwsgi_requests_in_flight",
        "rwsgi_busy_threads",
        "rwsgi_listen_queue",
        "rwsgi_spooled_bodies",
        "rwsgi_harakiri",
        "rwsgi_worker_rss_bytes",
        "rwsgi_listen_overflows",
    ):
        assert name in families, name
    buckets = [
        s for s in families["rwsgi_request_duration_seconds"].samples if s.name.endswith("_bucket")
    ]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 4


def test_spooled_bodies_are_counted(start_server: ServerFactory) -> None:
    server = start_server(APP, "--stats", "127.0.0.1:0", "--stats-http", "--post-buffering", "1024")
    address = stats_address(server)
    response = server.request("POST", "/body", body=b"x" * 10_000)
    assert response.status == 200
    wait_until(lambda: sample(metrics(address), "rwsgi_spooled_bodies_total") == 1, 10)
    assert sample(metrics(address), "rwsgi_bytes_total", kind="in") >= 10_000


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_the_listen_queue_shows_connections_waiting(
    start_server: ServerFactory, tmp_path: Path, kind: str
) -> None:
    """1 worker x 1 thread held inside the app: it stops accepting, so new
    connections wait in the kernel's queue, which the stats read from there."""
    path = os.path.join(short_tmpdir(), "app.sock")
    server = start_server(
        APP, "--stats", "127.0.0.1:0", "--backlog", "16", "--http-socket", path, threads=1
    )
    address = stats_address(server)
    gate, started = tmp_path / "gate", tmp_path / "started"
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            server.get(f"/gate?gate={gate}&started={started}", timeout=30).status
        )
    )
    thread.start()
    waiting: list[socket.socket] = []
    name = f"127.0.0.1:{server.port}" if kind == "tcp" else f"unix:{path}"
    try:
        wait_until(started.exists, 10)
        for _ in range(3):
            if kind == "tcp":
                waiting.append(socket.create_connection((server.host, server.port)))
            else:
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.connect(path)
                waiting.append(client)

        def queued() -> dict[str, Any] | None:
            stats = read_stats(address)
            (listener,) = [s for s in stats["sockets"] if s["name"] == name]
            return stats if listener["queue"] >= 3 else None

        stats = wait_until(queued, 10)
        assert stats["listen_queue"] >= 3
        (listener,) = [s for s in stats["sockets"] if s["name"] == name]
        assert listener["max_queue"] == 16
    finally:
        gate.touch()
        thread.join(30)
        for sock in waiting:
            sock.close()
    assert result == [200]


def test_the_http_listener_answers_json_and_refuses_bad_requests(
    start_server: ServerFactory,
) -> None:
    server = start_server(APP, "--stats", "127.0.0.1:0", "--stats-http")
    address = stats_address(server)
    status, headers, body = http_get(address, "/")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["workers"][0]["pid"] == server.worker_pids[1]
    assert http_get(address, "/", method="POST")[0] == 405
    for garbage in (b"\x16\x03\x01\x00\xa5hello\r\n\r\n", b"GET\r\n\r\n", b"x" * 9000):
        with _connect(address) as sock:
            sock.sendall(garbage)
            answer = _read_all(sock)
        assert re.match(rb"HTTP/1\.0 4\d\d ", answer), answer[:80]
    with _connect(address) as sock:  # the request, then the client's side shut
        sock.sendall(b"GET /metrics HTTP/1.0\r\n")
        sock.shutdown(socket.SHUT_WR)
        assert _read_all(sock).startswith(b"HTTP/1.0 200 OK\r\n")
    idle = _connect(address)  # sends nothing: must not block the master
    try:
        assert server.get("/").status == 200
        assert http_get(address, "/")[0] == 200
    finally:
        idle.close()
    assert server.proc.poll() is None


def test_a_stats_address_in_use_is_an_error_naming_the_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, logs = run_to_exit(APP, "--http", "127.0.0.1:0", "--stats", f"127.0.0.1:{port}")
    assert code != 0
    assert re.search(rf"stats: cannot listen on 127\.0\.0\.1:{port}", logs), logs


def test_stats_http_needs_stats() -> None:
    code, logs = run_to_exit(APP, "--http", "127.0.0.1:0", "--stats-http")
    assert code != 0 and re.search("stats[-_]http: there is no --stats listener", logs), logs


def test_the_ini_keys_set_the_options(start_server: ServerFactory, tmp_path: Path) -> None:
    ini = tmp_path / "app.ini"
    ini.write_text(
        "[uwsgi]\nmodule = apps.stats:application\nhttp = 127.0.0.1:0\n"
        "stats = 127.0.0.1:0\nstats-http = true\n"
    )
    server = start_server.argv(
        [sys.executable, "-m", "rwsgi", "--ini", str(ini), "--chdir", str(Path(__file__).parent)],
        listeners=1,
        workers=1,
    )
    address = server.wait_for_log(r"stats \(HTTP, /metrics\) on (\S+)").group(1)
    assert "rwsgi_requests" in metrics(address)
