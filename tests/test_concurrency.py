"""Concurrency: Python threads overlap, workers share the load, a long app
call does not stall other connections, slow clients hold no Python thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import Server, in_threads, url_arg, wait_until

pytestmark = pytest.mark.timeout(60)


def timed_get(server: Server, path: str) -> tuple[float, dict]:
    began = time.monotonic()
    report = server.get_json(path, timeout=20)
    return time.monotonic() - began, report


def test_threads_run_app_calls_at_once(start_server) -> None:
    server = start_server("apps.sleep:application", workers=1, threads=4)
    began = time.monotonic()
    with in_threads(10) as pool:
        reports = list(pool.map(lambda _: server.get_json("/sleep?t=0.5", timeout=20), range(10)))
    elapsed = time.monotonic() - began
    # ceil(10 / 4) rounds of 0.5 s: 1.5 s; one at a time would take 5 s
    assert elapsed < 2.6, f"10 x 0.5 s on 4 threads took {elapsed:.2f} s"
    assert elapsed > 1.4, f"more than 4 app calls ran at once ({elapsed:.2f} s)"
    assert max(report["max_concurrent"] for report in reports) == 4
    assert len({report["thread"] for report in reports}) == 4
    assert len({report["pid"] for report in reports}) == 1


def test_workers_share_the_load(start_server) -> None:
    server = start_server("apps.sleep:application", workers=2, threads=1)
    began = time.monotonic()
    with in_threads(6) as pool:
        reports = list(pool.map(lambda _: server.get_json("/sleep?t=0.5", timeout=20), range(6)))
    elapsed = time.monotonic() - began
    # three rounds on two single-threaded workers: 1.5 s; one worker alone: 3 s
    assert elapsed < 2.5, f"6 x 0.5 s on 2 workers took {elapsed:.2f} s"
    assert {report["pid"] for report in reports} == set(server.worker_pids.values())
    assert all(report["max_concurrent"] == 1 for report in reports)


def test_a_busy_workers_new_connections_go_to_an_idle_worker(start_server, tmp_path: Path) -> None:
    # Each worker owns one SO_REUSEPORT socket; the kernel hashes new
    # connections across them without knowing which worker is busy. The idle
    # worker must take what waits on the busy one's socket.
    server = start_server("apps.sleep:application", workers=2, threads=1)
    with in_threads(1) as pool:
        started = tmp_path / "started"
        slow = pool.submit(server.get_json, f"/sleep?t=3&started={url_arg(started)}", timeout=20)
        wait_until(started.exists, timeout=5)
        durations = [timed_get(server, "/pid")[0] for _ in range(12)]
        slow_report = slow.result()
    assert max(durations) < 1.0, f"a new connection waited behind a busy worker: {durations}"
    assert slow_report["pid"] in server.worker_pids.values()


@pytest.mark.timeout(30)
def test_long_request_does_not_stall_other_keep_alive_connections(
    start_server, tmp_path: Path
) -> None:
    server = start_server("apps.sleep:application", workers=1, threads=4)
    conns = [server.connection(timeout=10) for _ in range(5)]
    try:
        for conn in conns:  # every connection is open and has been served once
            conn.request("GET", "/pid")
            assert conn.getresponse().read()
        started = tmp_path / "started"
        slow_result: list[int] = []

        def slow() -> None:
            conns[0].request("GET", f"/sleep?t=4&started={url_arg(started)}")
            response = conns[0].getresponse()
            response.read()
            slow_result.append(response.status)

        slow_thread = threading.Thread(target=slow)
        slow_thread.start()
        try:
            wait_until(started.exists, 5)
            began = time.monotonic()
            latencies = []
            for i in range(20):
                conn = conns[1 + i % 4]
                t0 = time.monotonic()
                conn.request("GET", "/pid")
                response = conn.getresponse()
                assert response.status == 200
                response.read()
                latencies.append(time.monotonic() - t0)
            total = time.monotonic() - began
            assert slow_thread.is_alive(), "the long request should still be running"
        finally:
            slow_thread.join(15)
        assert total < 1.0, f"20 quick requests took {total:.2f} s (max {max(latencies):.2f} s)"
        assert slow_result == [200]
    finally:
        for conn in conns:
            conn.close()


@pytest.mark.timeout(40)
def test_slow_clients_do_not_hold_the_server(start_server) -> None:
    server = start_server("apps.sleep:application", workers=1, threads=1)
    request = b"GET /pid HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"s" * 100
    slow = [server.connect(timeout=10) for _ in range(200)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def trickle() -> None:
        position = 0
        try:
            while not stop.is_set() and position < len(request):
                for sock in slow:
                    sock.send(request[position : position + 1])
                position += 1
                stop.wait(1.0)
        except OSError as error:
            errors.append(error)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        latencies = []
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            elapsed, _ = timed_get(server, "/pid")
            latencies.append(elapsed)
        assert len(latencies) >= 3
        assert max(latencies) < 1.0, f"normal client waited {max(latencies):.2f} s"
        assert not errors, errors
    finally:
        stop.set()
        trickler.join(10)
        for sock in slow:
            sock.close()


@pytest.mark.timeout(60)
def test_many_concurrent_clients(start_server) -> None:
    server = start_server("apps.sleep:application", workers=2, threads=4)

    def client(_: int) -> list[int]:
        statuses = []
        conn = server.connection(timeout=20)
        try:
            for _ in range(10):
                conn.request("GET", "/sleep?t=0.001")
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
        finally:
            conn.close()
        return statuses

    with in_threads(50) as pool:
        results = list(pool.map(client, range(50)))
    assert [status for statuses in results for status in statuses] == [200] * 500


def test_connections_beyond_the_threads_wait_in_the_backlog(start_server) -> None:
    server = start_server("apps.sleep:application", "--backlog", "64", workers=1, threads=1)
    with in_threads(20) as pool:
        reports = list(pool.map(lambda _: server.get_json("/sleep?t=0.01", timeout=20), range(20)))
    assert len(reports) == 20
    assert all(report["max_concurrent"] == 1 for report in reports)
