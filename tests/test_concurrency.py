"""Concurrency: Python threads overlap, workers share the load, a long app
call does not stall other connections, slow clients hold no Python thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import in_threads, recorded_lines, url_arg, wait_until

pytestmark = pytest.mark.timeout(60)


def gated(gate: Path, started: Path) -> str:
    """The target of a request that stays inside the app until ``gate`` exists."""
    return f"/gate?gate={url_arg(gate)}&started={url_arg(started)}"


def test_threads_run_app_calls_at_once(start_server) -> None:
    server = start_server("apps.sleep:application", workers=1, threads=4)
    with in_threads(10) as pool:
        reports = list(pool.map(lambda _: server.get_json("/sleep?t=0.5", timeout=20), range(10)))
    # counted by the app itself: four calls overlapped, never a fifth
    assert max(report["max_concurrent"] for report in reports) == 4
    assert len({report["thread"] for report in reports}) == 4
    assert len({report["pid"] for report in reports}) == 1


def test_workers_share_the_load(start_server) -> None:
    server = start_server("apps.sleep:application", workers=2, threads=1)
    with in_threads(6) as pool:
        reports = list(pool.map(lambda _: server.get_json("/sleep?t=0.5", timeout=20), range(6)))
    assert {report["pid"] for report in reports} == set(server.worker_pids.values())
    assert all(report["max_concurrent"] == 1 for report in reports)


def test_a_busy_workers_new_connections_go_to_an_idle_worker(start_server, tmp_path: Path) -> None:
    # Each worker owns one SO_REUSEPORT socket; the kernel hashes new
    # connections across them without knowing which worker is busy. The idle
    # worker must take what waits on the busy one's socket.
    server = start_server("apps.core:application", workers=2, threads=1)
    gate, started = tmp_path / "gate", tmp_path / "started"
    with in_threads(1) as pool:
        slow = pool.submit(server.get_json, gated(gate, started), timeout=40)
        try:
            wait_until(started.exists, timeout=10)
            busy = int(started.read_text())
            pids = [server.get_json("/pid", timeout=10)["pid"] for _ in range(12)]
            assert not slow.done(), "the gated request left the app before its gate opened"
        finally:
            gate.touch()
        slow_report = slow.result()
    assert slow_report == {"pid": busy, "gate_opened": True}
    assert busy not in pids, "a new connection was served by the busy worker, after it"
    assert set(pids) == set(server.worker_pids.values()) - {busy}


@pytest.mark.timeout(60)
def test_long_request_does_not_stall_other_keep_alive_connections(
    start_server, tmp_path: Path
) -> None:
    server = start_server("apps.core:application", workers=1, threads=4)
    conns = [server.connection(timeout=10) for _ in range(5)]
    try:
        for conn in conns:  # every connection is open and has been served once
            conn.request("GET", "/pid")
            assert conn.getresponse().read()
        gate, started = tmp_path / "gate", tmp_path / "started"
        slow_result: list[int] = []
        conns[0].timeout = 40

        def slow() -> None:
            conns[0].request("GET", gated(gate, started))
            response = conns[0].getresponse()
            response.read()
            slow_result.append(response.status)

        slow_thread = threading.Thread(target=slow)
        slow_thread.start()
        try:
            wait_until(started.exists, 10)
            for i in range(20):
                conn = conns[1 + i % 4]
                conn.request("GET", "/pid")
                response = conn.getresponse()
                assert response.status == 200
                response.read()
            assert slow_thread.is_alive(), "the long request left the app before its gate opened"
        finally:
            gate.touch()
            slow_thread.join(40)
        assert slow_result == [200]
    finally:
        for conn in conns:
            conn.close()


@pytest.mark.timeout(60)
def test_slow_clients_do_not_hold_the_server(start_server) -> None:
    server = start_server("apps.sleep:application", workers=1, threads=1)
    request = b"GET /pid HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"s" * 100
    slow = [server.connect(timeout=10) for _ in range(200)]
    stop = threading.Event()
    errors: list[BaseException] = []
    position = 0

    def trickle() -> None:
        nonlocal position
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
        wait_until(lambda: position >= 1, 10)
        reports = [server.get_json("/pid", timeout=10) for _ in range(5)]
        # every slow head is still incomplete: the answers came while all 200 were pending
        assert position < len(request)
        assert len(reports) == 5
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


# -- fairness: behaviour under load, not speed ---------------------------------


@pytest.mark.timeout(120)
def test_fresh_connections_are_answered_under_a_saturating_load(start_server) -> None:
    """1 worker x 1 thread, 50 keep-alive clients hammering a 2 ms app: 20 new
    connections opened meanwhile must each get an answer (none starves)."""
    server = start_server("apps.sleep:application", workers=1, threads=1)
    stop = threading.Event()
    served = [0] * 50
    errors: list[BaseException] = []

    def hammer(index: int) -> None:
        conn = server.connection(timeout=30)
        try:
            while not stop.is_set():
                conn.request("GET", "/sleep?t=0.002")
                response = conn.getresponse()
                response.read()
                assert response.status == 200
                served[index] += 1
        except BaseException as error:
            errors.append(error)
        finally:
            conn.close()

    clients = [threading.Thread(target=hammer, args=(i,)) for i in range(50)]
    for client in clients:
        client.start()
    answered: list[int] = []
    try:
        wait_until(lambda: sum(served) >= 200, 30)  # the load is on
        for _ in range(20):
            before = sum(served)
            answered.append(server.get_json("/pid", timeout=10)["pid"])
            assert sum(served) > before, "the load stopped while a probe waited"
    finally:
        stop.set()
        for client in clients:
            client.join(40)
    assert len(answered) == 20
    assert not errors, errors[:3]
    assert all(count > 0 for count in served), "a load client was never served"


@pytest.mark.timeout(60)
def test_second_thread_answers_while_the_first_is_inside_the_app(
    start_server, tmp_path: Path
) -> None:
    """1 worker x 2 threads: while connection A's request is inside the app,
    connection B's request is answered (by the app: it records the call)."""
    record = tmp_path / "calls.txt"
    server = start_server(
        "apps.core:application", workers=1, threads=2, env={"RWSGI_TEST_RECORD": str(record)}
    )
    gate, started = tmp_path / "gate", tmp_path / "started"
    a_done = threading.Event()
    a_result: list[dict] = []

    def request_a() -> None:
        a_result.append(server.get_json(gated(gate, started), timeout=40))
        a_done.set()

    thread_a = threading.Thread(target=request_a)
    thread_a.start()
    try:
        wait_until(started.exists, 10)  # A is inside the app
        b_report = server.get_json("/core/fair-b", timeout=10)
        a_finished_first = a_done.is_set()
    finally:
        gate.touch()
        thread_a.join(40)
    assert b_report["path"] == "/core/fair-b"
    assert "/core/fair-b" in recorded_lines(record)
    assert not a_finished_first, "B was answered only after A left the app"
    assert a_result and a_result[0]["gate_opened"] is True
