"""--health-path: the readiness route answered by the server itself, never
by the app, on every protocol (HTTP/1.1 on TCP and on a unix socket, uwsgi).

``200 ready`` with ``X-Free-Threads`` while the worker serves; ``503
draining`` once its stop or retirement has begun (a load balancer then stops
sending before connections are refused); GET and HEAD only, any query
ignored; off by default. The app (apps/conntime.py) notes every call it gets.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Rwsgi, ServerFactory, recorded_lines
from rwsgi.options import OptionError, normalize
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
READY = "/-/ready"


KINDS = LISTENER_KINDS


@dataclass
class Served:
    server: Rwsgi
    record: Path

    def calls(self) -> list[str]:
        return recorded_lines(self.record)


def start(factory: ServerFactory, *args: str, env: dict[str, str] | None = None) -> Served:
    return Served(*start_on_every_listener(factory, APP, *args, env=env))


@pytest.fixture(scope="module")
def served(start_module_server: ServerFactory) -> Served:
    return start(start_module_server, "--health-path", READY)


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> type[Transport]:
    return KINDS[request.param]


def test_ready_while_serving_and_never_the_app(served: Served, kind: type[Transport]) -> None:
    t = kind(served.server)
    response = t.request("GET", READY)
    assert response.status == 200, response
    assert response.body == b"ready\n"
    assert response.header("x-free-threads") == "2"
    assert (response.header("content-type") or "").startswith("text/plain")
    assert response.header("cache-control") == "no-store"
    assert t.request("GET", READY + "?probe=lb&x=1").status == 200
    head = t.request("HEAD", READY)
    assert head.status == 200, head
    assert head.body == b""
    refused = t.request("POST", READY, body=b"x")
    assert refused.status == 405, refused
    assert refused.header("allow") == "GET, HEAD"
    # Only the exact path: anything else is the app's.
    assert t.request("GET", READY + "/more").body == b"hello"
    assert t.request("GET", f"/hello-{t.name}").body == b"hello"
    calls = served.calls()
    assert f"/hello-{t.name}" in calls
    assert READY not in calls, calls


def test_health_keeps_the_connection_alive(served: Served) -> None:
    t = Direct(served.server)
    with t.connect() as conn:
        for path in (READY, "/hello", READY):
            conn.send(t.encode("GET", path))
            response = conn.response()
            assert response.status == 200, response
            assert (response.header("connection") or "").lower() != "close"


def test_free_threads_counts_a_request_in_flight(served: Served, tmp_path: Path) -> None:
    t = Direct(served.server)
    started = tmp_path / "started"
    with in_app(t, 1, started) as busy:
        assert t.request("GET", READY).header("x-free-threads") == "1"
        assert busy.response().status == 200
    assert t.request("GET", READY).header("x-free-threads") == "2"


def test_off_by_default(start_server: ServerFactory) -> None:
    own = start(start_server)
    assert Direct(own.server).request("GET", READY).body == b"hello"
    assert READY in own.calls()


@pytest.mark.parametrize("path", ["ready", "", "/a b", "/x?y"])
def test_the_path_must_be_a_url_path(path: str) -> None:
    with pytest.raises(OptionError, match="health_path"):
        normalize({"http": ["127.0.0.1:0"], "health_path": path})


# -- draining: 503 -------------------------------------------------------------------------


def split_request(t: Transport) -> tuple[bytes, bytes]:
    """A readiness request in two parts: a head that is not yet whole, then the rest."""
    data = t.encode("GET", READY)
    return data[: len(data) - 3], data[len(data) - 3 :]


def test_503_once_the_server_stops(
    start_server: ServerFactory, kind: type[Transport], tmp_path: Path
) -> None:
    """A probe that began before the stop (its head half sent) is answered
    503, while a slow request keeps the worker draining."""
    own = start(start_server, "--health-path", READY)
    t = kind(own.server)
    started = tmp_path / "started"
    first, rest = split_request(t)
    with in_app(t, 3, started) as busy, t.connect(timeout=30) as probe:
        probe.send(first)
        time.sleep(0.3)  # let the worker accept it and read what was sent
        since = own.server.mark()
        own.server.send_signal(signal.SIGTERM)
        own.server.wait_for_log(r"worker 1: draining 2 connection\(s\)", since=since)
        probe.send(rest)
        response = probe.response()
        assert response.status == 503, response
        assert response.body == b"draining\n"
        if t.is_http:
            assert (response.header("connection") or "").lower() == "close"
        assert busy.response().status == 200
    assert own.server.wait(30) == 0
    assert READY not in own.calls()


def kept(t: Transport) -> Conn:
    """Held open: served once on HTTP (a probe), accepted and silent on uwsgi."""
    conn = t.connect(timeout=30)
    if t.is_http:
        conn.send(t.encode("GET", READY))
        assert conn.response().status == 200
    else:
        time.sleep(0.3)  # let the worker accept it
    return conn


def test_503_while_the_worker_retires(start_server: ServerFactory, kind: type[Transport]) -> None:
    own = start(start_server, "--health-path", READY, "--keepalive-timeout", "30")
    t = kind(own.server)
    with kept(t) as conn:
        since = own.server.mark()
        pid = own.server.worker_pids[1]
        own.server.send_signal(signal.SIGHUP)  # a reload retires the old worker
        own.server.wait_for_log(r"worker 1: draining 1 connection\(s\) until", since=since)
        conn.send(t.encode("GET", READY))
        response = conn.response()
        assert response.status == 503, response
        assert response.body == b"draining\n"
        if t.is_http:
            assert (response.header("connection") or "").lower() == "close"
    own.server.wait_for_respawn(1, pid, timeout=10)
    assert t.request("GET", READY).status == 200
