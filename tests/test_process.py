"""The process model: start-up lines, respawning dead workers, graceful stop
on SIGTERM/SIGINT, --graceful-timeout, a second SIGINT, a fork that fails,
apps that fail to import, --preload/--lazy, --pythonpath and rwsgi.serve()."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import TESTS_DIR, Server, _pid_alive, in_threads, url_arg, wait_until
from nginx_helper import request_vars, short_tmpdir, uwsgi_exchange, uwsgi_packet

pytestmark = pytest.mark.timeout(60)


def workers_gone(server: Server, timeout: float = 5.0) -> None:
    pids = server.all_worker_pids()
    wait_until(lambda: not any(_pid_alive(pid) for pid in pids), timeout)


def refused(server: Server) -> bool:
    try:
        with socket.create_connection((server.host, server.port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


class InFlight:
    """A request running in a background thread; ``result()`` joins it."""

    def __init__(self, server: Server, path: str, timeout: float = 30.0) -> None:
        self.status: int | None = None
        self.body = b""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(server, path, timeout))
        self._thread.start()

    def _run(self, server: Server, path: str, timeout: float) -> None:
        try:
            response = server.get(path, timeout=timeout)
            self.status, self.body = response.status, response.body
        except (OSError, http.client.HTTPException) as error:
            self.error = error

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 40.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the in-flight request never ended"


# -- start-up and supervision -----------------------------------------------


def test_startup_lines_name_the_address_and_every_worker(start_server) -> None:
    server = start_server("apps.sleep:application", workers=3)
    assert server.port > 0
    assert f"listening on http://127.0.0.1:{server.port}" in server.logs()
    pids = server.worker_pids
    assert sorted(pids) == [1, 2, 3]
    assert len(set(pids.values())) == 3
    assert server.pid not in pids.values()
    served = {server.get_json("/pid")["pid"] for _ in range(3)}
    assert served <= set(pids.values())


def _context_switches(pid: int) -> int:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])


def test_an_idle_master_sleeps(start_server) -> None:
    # Its loop once woke every millisecond (a filled position's respawn
    # time, long past, counted as due): 1,600 wake-ups in two seconds.
    server = start_server("apps.core", workers=2)
    before = _context_switches(server.pid)
    time.sleep(2)
    woke = _context_switches(server.pid) - before
    assert woke < 100, f"the idle master woke {woke} times in 2 s"


def test_killed_worker_is_respawned_and_service_continues(start_server) -> None:
    server = start_server("apps.sleep:application", workers=2)
    old = server.worker_pids[1]
    os.kill(old, signal.SIGKILL)
    statuses = [server.get("/pid").status for _ in range(20)]
    assert statuses == [200] * 20
    new = server.wait_for_respawn(1, old, timeout=10)
    assert new != old
    seen = {server.get_json("/pid")["pid"] for _ in range(30)}
    assert old not in seen


def test_single_worker_is_respawned(start_server) -> None:
    server = start_server("apps.sleep:application", workers=1)
    old = server.worker_pids[1]
    os.kill(old, signal.SIGKILL)
    new = server.wait_for_respawn(1, old, timeout=10)
    assert server.get_json("/pid")["pid"] == new


def test_worker_that_exits_in_the_app_is_respawned(start_server) -> None:
    server = start_server("apps.sleep:application", workers=1, threads=2)
    old = server.worker_pids[1]
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        server.get("/exit", timeout=10)
    new = server.wait_for_respawn(1, old, timeout=5)
    assert server.get_json("/pid")["pid"] == new
    assert server.proc.poll() is None


# -- stopping -----------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_idle_server_stops_with_exit_0(start_server, signum: int) -> None:
    server = start_server("apps.sleep:application", workers=2)
    server.send_signal(signum)
    assert server.wait(10) == 0
    workers_gone(server)


def test_sigterm_lets_the_in_flight_request_finish(start_server, tmp_path: Path) -> None:
    server = start_server("apps.sleep:application", workers=1, threads=2)
    started = tmp_path / "started"
    request = InFlight(server, f"/sleep?t=2&pad=100000&started={url_arg(started)}")
    try:
        wait_until(started.exists, 5)
        server.send_signal(signal.SIGTERM)
        wait_until(lambda: refused(server), 1.5)  # the listeners close at once
        assert request.alive(), "the request should still be in flight"
    finally:
        request.join()
    assert request.error is None, request.error
    assert request.status == 200
    assert len(request.body) > 100000
    assert json.loads(request.body)["slept"] >= 1.9
    assert server.wait(10) == 0
    workers_gone(server)


def test_idle_keep_alive_connections_do_not_delay_the_stop(start_server) -> None:
    # Waiting for the idle clients would last the 120 s keep-alive timeout or
    # the 120 s graceful timeout; nothing is in flight, so the stop must not wait.
    server = start_server(
        "apps.sleep:application",
        "--header-timeout",
        "120",
        "--keepalive-timeout",
        "120",
        "--graceful-timeout",
        "120",
        workers=1,
        threads=2,
    )
    conns = [server.connection() for _ in range(3)]
    try:
        for conn in conns:  # open, served once, now idle in keep-alive
            conn.request("GET", "/pid")
            assert conn.getresponse().read()
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        for conn in conns:
            conn.close()
    workers_gone(server)


def test_graceful_timeout_bounds_the_wait(start_server, tmp_path: Path) -> None:
    server = start_server("apps.sleep:application", "--graceful-timeout", "1", threads=2)
    started = tmp_path / "started"
    request = InFlight(server, f"/sleep?t=30&started={url_arg(started)}")
    try:
        wait_until(started.exists, 5)
        began = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait(10)
        elapsed = time.monotonic() - began
    finally:
        request.join()
    assert elapsed > 0.8, f"stopped after {elapsed:.2f} s, before --graceful-timeout 1"
    assert code == 0
    assert request.status != 200
    workers_gone(server)


def test_the_longest_timeouts_allowed_serve_and_stop(start_server) -> None:
    # A year: the deadlines every connection and the master's stop compute
    # from them must not overflow the clock.
    year = "31536000"
    folder = short_tmpdir()
    uwsgi_socket = os.path.join(folder, "u.sock")
    try:
        server = start_server(
            "apps.sleep:application",
            "--socket",
            uwsgi_socket,
            "--graceful-timeout",
            year,
            "--header-timeout",
            year,
            "--body-timeout",
            year,
            "--keepalive-timeout",
            year,
            "--write-timeout",
            year,
            workers=2,
        )
        assert server.get("/pid").status == 200
        answer = uwsgi_exchange(uwsgi_socket, uwsgi_packet(request_vars(path="/pid")))
        assert answer.status == 200, server.logs()
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert "panicked" not in server.logs()
    workers_gone(server)


def test_second_sigint_stops_at_once(start_server, tmp_path: Path) -> None:
    server = start_server("apps.sleep:application", "--graceful-timeout", "30", threads=2)
    started = tmp_path / "started"
    request = InFlight(server, f"/sleep?t=30&started={url_arg(started)}")
    try:
        wait_until(started.exists, 5)
        server.send_signal(signal.SIGINT)
        try:
            wait_until(lambda: refused(server), 2)  # proof the first one was handled
        except AssertionError:
            pass  # another test checks the listeners; here only the second SIGINT matters
        server.send_signal(signal.SIGINT)
        server.wait(15)  # the first one alone would wait out the 30 s graceful timeout
    finally:
        request.join()
    assert request.status != 200
    workers_gone(server)


FORK_FAILS_SCRIPT = """
import errno, json, os, sys
import rwsgi

real_fork = os.fork
forked = []

def failing_fork():
    # every fork goes through os.fork: the master's of the loader, the
    # loader's of each worker (through an intermediate process): the
    # loader's second one fails, so the second worker cannot be started
    if len(forked) == 1:
        raise OSError(errno.EAGAIN, "no more processes (test)")
    pid = real_fork()
    if pid:
        forked.append(pid)
    return pid

os.fork = failing_fork

def reaped(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False

try:
    rwsgi.serve("apps.sleep:application", http="127.0.0.1:0", workers=2, graceful_timeout=20)
except OSError as error:
    unreaped = [pid for pid in forked if not reaped(pid)]
    print(json.dumps({"error": str(error), "forked": forked, "unreaped": unreaped}), flush=True)
    sys.exit(1)
"""


def test_fork_failure_stops_and_reaps_the_workers_already_started(start_server) -> None:
    server = start_server.argv([sys.executable, "-c", FORK_FAILS_SCRIPT], wait=False)
    try:
        code = server.wait(40)
    except Exception:
        pytest.fail(f"the master kept running after a failed fork:\n{server.logs()}")
    server.stop()
    assert code == 1, server.logs()
    report = json.loads(server.stdout().strip().splitlines()[-1])
    assert len(report["forked"]) == 1, report
    # serve() returned only once the worker it had started was gone and reaped
    assert report["unreaped"] == [], (report, server.logs())
    assert not _pid_alive(report["forked"][0])
    assert "fork failed" in report["error"]
    assert "fork failed" in server.logs()
    # The SIGTERM reached the worker however early it was sent: it stopped
    # on its own instead of being killed when the graceful timeout passed.
    assert re.search(r"worker 1 \(pid \d+\) exited with status 0", server.logs()), server.logs()


# -- loading the app ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("apps.broken", "broken-app-import-marker"),
        ("apps.broken:application", "RuntimeError"),
        ("apps.does_not_exist", "No module named 'apps.does_not_exist'"),
        ("apps.loadpid:nope", "nope"),
        ("apps.loadpid:not_callable", "not callable"),
    ],
)
@pytest.mark.parametrize("mode", ["--preload", "--lazy"])
def test_app_that_cannot_be_loaded_stops_the_server(
    start_server, spec: str, message: str, mode: str
) -> None:
    server = start_server(spec, mode, workers=2, wait=False)
    try:
        code = server.wait(20)
    except Exception:
        pytest.fail(f"the master kept running with an app that cannot load:\n{server.logs()}")
    server.stop()
    assert code != 0
    assert message in server.logs()
    if mode == "--preload":
        assert "ready" not in server.logs()
    workers_gone(server)


def test_preload_imports_the_app_once_outside_the_master(start_server) -> None:
    # One loader process imports it and forks the workers (shared memory);
    # the master never imports it, so a reload can load new code.
    server = start_server("apps.loadpid", workers=2)
    reports = [server.get_json("/") for _ in range(6)]
    importers = {report["import_pid"] for report in reports}
    assert len(importers) == 1, reports
    assert importers != {server.pid}
    assert not importers & {report["pid"] for report in reports}


def test_lazy_imports_the_app_in_each_worker(start_server) -> None:
    server = start_server("apps.loadpid:application", "--lazy", workers=2, threads=2)
    with in_threads(8) as pool:
        reports = list(pool.map(lambda _: server.get_json("/"), range(16)))
    for report in reports:
        assert report["import_pid"] == report["pid"] != server.pid


def test_pythonpath_is_repeatable(start_server, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "rwsgi_tmp_helper.py").write_text('GREETING = b"from the first path"\n')
    (second / "rwsgi_tmp_app.py").write_text(
        textwrap.dedent(
            """
            from rwsgi_tmp_helper import GREETING

            def app(environ, start_response):
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [GREETING]
            """
        )
    )
    server = start_server(
        "rwsgi_tmp_app:app", "--pythonpath", str(first), "--pythonpath", str(second)
    )
    assert server.get("/").body == b"from the first path"


def test_module_alone_means_module_application(start_server) -> None:
    server = start_server("apps.loadpid")
    assert server.get_json("/")["pid"] == server.worker_pids[1]


# -- rwsgi.serve() ------------------------------------------------------------


def serve_argv(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_serve_a_callable(start_server) -> None:
    code = f"""
        import rwsgi
        from apps.environ import application
        rwsgi.serve(application, http="127.0.0.1:0", workers=2, threads=2, chdir={str(TESTS_DIR)!r})
    """
    server = start_server.argv(serve_argv(code), workers=2)
    env = server.get_json("/serve")["values"]
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is True
    server.send_signal(signal.SIGTERM)
    assert server.wait(10) == 0


def test_serve_a_spec_string_lazily(start_server) -> None:
    code = f"""
        import rwsgi
        rwsgi.serve("apps.loadpid:application", http=["127.0.0.1:0"], preload=False,
                    chdir={str(TESTS_DIR)!r})
    """
    server = start_server.argv(serve_argv(code), workers=1)
    report = server.get_json("/")
    assert report["import_pid"] == report["pid"] != server.pid
    server.send_signal(signal.SIGINT)
    assert server.wait(10) == 0
