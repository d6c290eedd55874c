"""Kept-alive connections: the idle limit (--keepalive-timeout, apart from
--header-timeout), and the two ways a worker drains on SIGTERM.

- A stop (the server stops): idle connections are closed at once, a request
  in flight is answered with ``Connection: close``.
- A retirement (the master replaces the worker in a reload or recycling and
  marks its board entry first): an idle connection stays open until its next
  request, which is served and answered with ``Connection: close``, so a
  client that sends it just then is never reset; or until its keep-alive
  limit. The tests retire a worker the way the master does in a reload:
  SIGHUP, after which the old worker retires once its successor accepts.

Over HTTP/1.1 on TCP and on a unix socket, and uwsgi on a unix socket (one
request per connection: its "kept" connection is one accepted before the
retirement whose request comes after).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from pathlib import Path

import pytest
from conftest import Rwsgi, ServerFactory
from support.transports import (
    LISTENER_KINDS,
    Conn,
    Direct,
    Transport,
    in_app,
    start_on_every_listener,
)

pytestmark = pytest.mark.timeout(60)

APP = "apps.conntime:application"
RETIRING = r"worker 1: draining \d+ connection\(s\) until their next request"


KINDS = LISTENER_KINDS


def start(factory: ServerFactory, *args: str, env: dict[str, str] | None = None) -> Rwsgi:
    return start_on_every_listener(factory, APP, *args, env=env)[0]


def is_open(sock: socket.socket) -> bool:
    """Nothing to read and no end of stream: the server still holds it open."""
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def kept(t: Transport) -> Conn:
    """A connection held open: served once on HTTP, accepted and silent on uwsgi."""
    conn = t.connect(timeout=30)
    if t.is_http:
        conn.send(t.encode("GET", "/hello"))
        response = conn.response()
        assert response.status == 200, response
        assert (response.header("connection") or "").lower() != "close"
    else:
        time.sleep(0.3)  # let the worker accept it (nginx would send at once)
    return conn


def signal_worker(server: Rwsgi) -> int:
    """Have the master retire worker 1: a reload (SIGHUP) retires every old
    worker once its successor accepts. Returns the retiring worker's pid."""
    pid = server.worker_pids[1]
    server.send_signal(signal.SIGHUP)
    return pid


# -- the keep-alive limit ------------------------------------------------------------------


def test_keepalive_timeout_closes_a_kept_connection_before_a_fresh_one(
    start_server: ServerFactory,
) -> None:
    """--keepalive-timeout 1 closes the kept connection; the fresh one, bounded
    by --header-timeout 4, outlives it."""
    server = start(start_server, "--header-timeout", "4", "--keepalive-timeout", "1")
    t = Direct(server)
    with t.connect(timeout=30) as fresh, kept(t) as conn:
        assert conn.rest(10) == b""
        assert is_open(fresh.sock), "the fresh connection went at the keep-alive limit"
        assert fresh.rest(10) == b""


def test_header_timeout_bounds_a_kept_connection_once_its_next_request_begins(
    start_server: ServerFactory,
) -> None:
    """Past the 1 s keep-alive limit in all, but its first byte came within it
    and the rest within --header-timeout: served."""
    server = start(start_server, "--header-timeout", "4", "--keepalive-timeout", "1")
    t = Direct(server)
    data = t.encode("GET", "/after-a-pause")
    with kept(t) as conn:
        time.sleep(0.5)  # pacing: within the keep-alive limit
        conn.send(data[:1])
        for at in range(1, len(data), len(data) // 4):
            time.sleep(0.4)  # pacing: the head's bytes arrive over 1.6 s
            conn.send(data[at : at + len(data) // 4])
        response = conn.response()
    assert response.status == 200, response
    assert response.body == b"hello"


def test_zero_keepalive_timeout_means_no_limit(start_server: ServerFactory) -> None:
    server = start(start_server, "--header-timeout", "0.5", "--keepalive-timeout", "0")
    t = Direct(server)
    with kept(t) as conn:
        time.sleep(1.5)  # pacing: three header timeouts, no keep-alive limit
        assert is_open(conn.sock)
        conn.send(t.encode("GET", "/again"))
        assert conn.response().status == 200


# -- a stop: idle connections close at once ------------------------------------------------


def test_stop_closes_an_idle_connection_at_once_and_answers_the_one_in_flight(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start(start_server, "--keepalive-timeout", "60")
    t = Direct(server)
    started = tmp_path / "started"
    with kept(t) as idle, in_app(t, 3, started) as busy:
        # A SIGTERM the master did not mark as a retirement: a stop.
        os.kill(server.worker_pids[1], signal.SIGTERM)
        assert idle.rest(10) == b"", "the idle connection got an answer"
        # Closed while the request in flight still runs.
        assert not select.select([busy.sock], [], [], 0)[0]
        response = busy.response()
        assert response.status == 200, response
        assert response.body == b"slept"
        assert (response.header("connection") or "").lower() == "close", response.headers
        assert busy.rest(10) == b""


# -- a retirement: the next request is served, then the close -------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_retiring_worker_answers_the_next_request_on_a_kept_connection(
    start_server: ServerFactory, kind: str
) -> None:
    server = start(start_server, "--keepalive-timeout", "30")
    t = KINDS[kind](server)
    with kept(t) as conn:
        since = server.mark()
        pid = signal_worker(server)
        server.wait_for_log(RETIRING, since=since)
        time.sleep(0.5)  # the client's next request comes a while after the drain began
        assert conn.send(t.encode("GET", "/after-retire"))
        response = conn.response(timeout=10)
        assert response.status == 200, response
        assert response.body == b"hello"
        if t.is_http:
            assert (response.header("connection") or "").lower() == "close", response.headers
            assert conn.rest(10) == b""
    server.wait_for_log(rf"worker 1 \(pid {pid}\) stopped", since=since)
    server.wait_for_respawn(1, pid, timeout=10)
    assert Direct(server).request("GET", "/after-respawn").status == 200


def test_retiring_worker_answers_a_request_in_flight_with_connection_close(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start(start_server)
    t = Direct(server)
    started = tmp_path / "started"
    with in_app(t, 1, started) as busy:
        since = server.mark()
        signal_worker(server)
        server.wait_for_log(RETIRING, since=since)
        response = busy.response()
        assert response.status == 200, response
        assert (response.header("connection") or "").lower() == "close", response.headers
        assert busy.rest(10) == b""


def test_retiring_worker_closes_an_idle_connection_at_its_keepalive_limit(
    start_server: ServerFactory,
) -> None:
    server = start(start_server, "--keepalive-timeout", "2")
    t = Direct(server)
    with kept(t) as conn:
        since = server.mark()
        pid = signal_worker(server)
        server.wait_for_log(RETIRING, since=since)
        assert is_open(conn.sock), "a retirement closed an idle connection at once"
        assert conn.rest(10) == b""
    server.wait_for_log(rf"worker 1 \(pid {pid}\) stopped", since=since)


def test_a_second_sigterm_turns_a_retirement_into_a_stop(start_server: ServerFactory) -> None:
    server = start(start_server, "--keepalive-timeout", "60")
    t = Direct(server)
    with kept(t) as conn:
        since = server.mark()
        pid = signal_worker(server)
        server.wait_for_log(RETIRING, since=since)
        assert is_open(conn.sock)
        os.kill(pid, signal.SIGTERM)
        # the 60 s keep-alive limit cannot be what closes it
        assert conn.rest(10) == b""
    server.wait_for_log(rf"worker 1 \(pid {pid}\) stopped", since=since)


def test_the_master_stop_still_closes_idle_connections_at_once(
    start_server: ServerFactory,
) -> None:
    """Without the retire flag a SIGTERM is a stop, whatever sent it."""
    server = start(start_server, "--keepalive-timeout", "60")
    t = Direct(server)
    with kept(t) as conn:
        server.send_signal(signal.SIGTERM)
        assert conn.rest(10) == b""
    assert server.wait(30) == 0, server.logs()


@pytest.mark.parametrize("kind", ["direct", "uwsgi"])
def test_a_stop_serves_the_connections_still_queued_in_the_kernel(
    start_server: ServerFactory, tmp_path: Path, kind: str
) -> None:
    """Closing a listener resets what waits in its queue; a stop takes it
    first. One worker, two threads, both busy: a third connection's request
    waits unaccepted in the backlog when the SIGTERM comes."""
    server = start(start_server)
    t = KINDS[kind](server)
    busy = []
    for index in range(2):
        busy.append(in_app(t, 2, tmp_path / f"started-{index}"))
    with t.connect(timeout=30) as queued:
        queued.send(t.encode("POST", "/hello", body=b"sent while every thread was busy"))
        time.sleep(0.3)
        server.send_signal(signal.SIGTERM)
        response = queued.response(timeout=20)
        assert response.status == 200, response
        assert response.body == b"hello"
    for conn in busy:
        assert conn.response(timeout=20).status == 200
        conn.close()
    assert server.wait(30) == 0, server.logs()


def test_after_a_stop_new_connections_are_refused_not_left_hanging(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start(start_server)
    t = Direct(server)
    started = tmp_path / "started"
    with in_app(t, 4, started) as busy:
        server.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(server.tcp("http"), timeout=10).close()
        # Refused while the request in flight still runs: its answer is not there yet.
        assert not select.select([busy.sock], [], [], 0)[0]
        assert busy.response(timeout=20).status == 200
