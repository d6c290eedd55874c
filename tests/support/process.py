"""The rwsgi process harness: start a server, wait for readiness, stop it.

``Server`` runs any command line that behaves like the rwsgi master and reads
its stderr on a background thread (the pipe can never fill up), keeping it
whole so tests can assert on what was logged. Readiness comes from the log:
every listener's ``listening on`` line and every worker's ``ready`` line; it
never sleeps to guess. ``Server`` itself expects ``--http`` listeners;
``Rwsgi`` takes any mix (``--socket``, ``--http-socket``, ``--http``).
``ServerFactory`` remembers what it started so that a fixture always stops
it, by PID: SIGTERM, then SIGKILL after 10 seconds, then any worker it
announced that is still alive.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from support.http import RawResponse, Response, read_response

TESTS_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

LISTENING_RE = re.compile(r"listening on http://(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)")
READY_RE = re.compile(r"worker (\d+) \(pid (\d+)\) ready")


class ServerExited(AssertionError):
    """The server process ended before the awaited event."""


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (our PID 1 may not reap)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return fields[0] not in (b"Z", b"X")


def _is_rwsgi_process(pid: int) -> bool:
    """Guard before killing a worker PID: it must still be an rwsgi process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"rwsgi" in cmdline.read()
    except OSError:
        return False


def recorded_lines(path: Path) -> list[str]:
    """The lines a test app has recorded (RWSGI_TEST_RECORD), none if it wrote nothing."""
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


class Server:
    """One running rwsgi process tree, its log and how to talk to it."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        listeners: int = 1,
        workers: int = 1,
        env: dict[str, str] | None = None,
        wait: bool = True,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.argv = list(argv)
        self.expected_listeners = listeners
        self.expected_workers = workers
        self._lines: list[str] = []
        self._stdout: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.returncode: int | None = None
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=str(TESTS_DIR),
            pass_fds=pass_fds,
        )
        self.pid = self.proc.pid
        assert self.proc.stderr is not None and self.proc.stdout is not None
        self._threads = [
            threading.Thread(
                target=self._pump, args=(self.proc.stderr, self._lines, True), daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(self.proc.stdout, self._stdout, False), daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()
        self.addresses: list[tuple[str, int]] = []
        if wait:
            self.wait_ready()

    # -- the log ---------------------------------------------------------

    def _pump(self, pipe: Any, lines: list[str], is_stderr: bool) -> None:
        try:
            for raw in iter(pipe.readline, b""):
                with self._cond:
                    lines.append(raw.decode("utf-8", "replace"))
                    self._cond.notify_all()
        finally:
            pipe.close()
            if is_stderr:
                with self._cond:
                    self._eof = True
                    self._cond.notify_all()

    def logs(self) -> str:
        """Everything the server wrote to stderr so far."""
        with self._cond:
            return "".join(self._lines)

    def stdout(self) -> str:
        with self._cond:
            return "".join(self._stdout)

    def mark(self) -> int:
        """A position in the log; pass it as ``since`` to look only at later lines."""
        with self._cond:
            return len(self._lines)

    def _find(self, regex: re.Pattern[str], since: int, count: int) -> list[re.Match[str]]:
        found = []
        for line in self._lines[since:]:
            match = regex.search(line)
            if match:
                found.append(match)
        return found if len(found) >= count else []

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = 10.0, since: int = 0, count: int = 1
    ) -> re.Match[str]:
        """Wait for ``count`` stderr lines after ``since`` matching ``pattern``; last match."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._find(regex, since, count)
                if found:
                    return found[-1]
                remaining = deadline - time.monotonic()
                if self._eof:
                    raise ServerExited(
                        f"server stderr closed (exit {self.proc.poll()}) before "
                        f"{regex.pattern!r}; log:\n{''.join(self._lines)}"
                    )
                if remaining <= 0:
                    raise AssertionError(
                        f"no log line matching {regex.pattern!r} within {timeout} s; "
                        f"log:\n{''.join(self._lines)}"
                    )
                self._cond.wait(min(remaining, 0.5))

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait for every ``listening on`` line and every worker's ``ready`` line."""
        if self.expected_listeners:
            self.wait_for_log(LISTENING_RE, timeout, count=self.expected_listeners)
        with self._cond:
            self.addresses = []
            for line in self._lines:
                found = LISTENING_RE.search(line)
                if found:
                    self.addresses.append((found.group(1).strip("[]"), int(found.group(2))))
        self.wait_for_ready_workers(self.expected_workers, timeout)

    def wait_for_ready_workers(self, n: int, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready_map()) < n:
                remaining = deadline - time.monotonic()
                if self._eof:
                    raise ServerExited(
                        f"server exited before {n} workers were ready:\n{self.logs()}"
                    )
                if remaining <= 0:
                    raise AssertionError(f"{n} workers not ready in {timeout} s:\n{self.logs()}")
                self._cond.wait(min(remaining, 0.5))

    def _ready_map(self) -> dict[int, int]:
        workers: dict[int, int] = {}
        for line in self._lines:
            found = READY_RE.search(line)
            if found:
                workers[int(found.group(1))] = int(found.group(2))
        return workers

    @property
    def worker_pids(self) -> dict[int, int]:
        """Worker number -> PID of its latest ``ready`` line."""
        with self._cond:
            return self._ready_map()

    def all_worker_pids(self) -> set[int]:
        """Every worker PID ever announced (for cleanup)."""
        with self._cond:
            return {
                int(found.group(2))
                for line in self._lines
                if (found := READY_RE.search(line)) is not None
            }

    def wait_for_respawn(self, worker: int, old_pid: int, timeout: float = 5.0) -> int:
        """Wait for ``worker`` to announce a ready PID other than ``old_pid``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                pid = self._ready_map().get(worker)
                if pid is not None and pid != old_pid:
                    return pid
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise AssertionError(
                        f"worker {worker} (pid {old_pid}) not respawned within {timeout} s:\n"
                        f"{''.join(self._lines)}"
                    )
                self._cond.wait(min(remaining, 0.5))

    # -- addresses -------------------------------------------------------

    @property
    def host(self) -> str:
        return self.addresses[0][0]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- talking to it ---------------------------------------------------

    def connection(self, timeout: float = 10.0, index: int = 0) -> http.client.HTTPConnection:
        host, port = self.addresses[index]
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        index: int = 0,
    ) -> Response:
        """One request on a fresh connection, closed afterwards."""
        conn = self.connection(timeout, index)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return Response(response.status, response.reason, response.getheaders(), data)
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        response = self.request("GET", path, **kwargs)
        assert response.status == 200, (response, self.logs())
        return json.loads(response.body)

    def connect(self, timeout: float = 10.0, index: int = 0) -> socket.socket:
        """A raw TCP connection to the server (the caller closes it)."""
        host, port = self.addresses[index]
        return socket.create_connection((host, port), timeout=timeout)

    def exchange(self, data: bytes, method: str = "GET", timeout: float = 10.0) -> RawResponse:
        """Send raw bytes on a new connection and parse one response."""
        with self.connect(timeout) as sock:
            sock.sendall(data)
            with sock.makefile("rb") as rfile:
                return read_response(rfile, method)

    # -- stopping --------------------------------------------------------

    def send_signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        """Wait for the master to exit and return its exit status."""
        self.returncode = self.proc.wait(timeout)
        return self.returncode

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Stop the master (SIGTERM, then SIGKILL) and any leftover worker; idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self.returncode = self.proc.returncode
        self.kill_leftover_workers()
        for thread in self._threads:
            thread.join(5)
        return self.returncode

    def kill_leftover_workers(self) -> list[int]:
        killed = []
        for pid in sorted(self.all_worker_pids()):
            if pid != self.pid and _pid_alive(pid) and _is_rwsgi_process(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        return killed


# Every kind of listener, unlike ``LISTENING_RE`` (``--http`` only).
ANY_LISTENING_RE = re.compile(r"listening on (\S+)")
LISTENER_FLAGS = ("--http", "--http-socket", "--socket")


def short_tmpdir() -> str:
    """A fresh directory under /tmp whose path is short enough for unix sockets."""
    return tempfile.mkdtemp(prefix="rw", dir="/tmp")


class Rwsgi(Server):
    """``Server`` for any mix of listeners (uwsgi, unix sockets), not only
    ``--http``: ``listeners`` holds every ``listening on`` URL."""

    def __init__(
        self,
        app: str,
        *args: str,
        workers: int = 1,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> None:
        self.listeners: list[str] = []
        argv = [sys.executable, "-m", "rwsgi", app, *args, "--workers", str(workers)]
        listeners = sum(1 for arg in args if arg in LISTENER_FLAGS)
        super().__init__(argv, listeners=listeners, workers=workers, env=env, wait=False)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        self.wait_for_log(ANY_LISTENING_RE, timeout, count=max(self.expected_listeners, 1))
        with self._cond:
            self.listeners = [
                m.group(1) for line in self._lines if (m := ANY_LISTENING_RE.search(line))
            ]
        self.wait_for_ready_workers(self.expected_workers, timeout)

    def tcp(self, scheme: str, index: int = 0) -> tuple[str, int]:
        """The (host, port) of the ``index``-th ``scheme://`` listener (uwsgi or http)."""
        found = [url for url in self.listeners if url.startswith(scheme + "://")]
        host, _, port = found[index][len(scheme) + 3 :].rpartition(":")
        return host.strip("[]"), int(port)

    def unix(self, scheme: str, index: int = 0) -> str:
        """The path of the ``index``-th ``scheme+unix://`` listener (uwsgi or http)."""
        prefix = scheme + "+unix://"
        return [url for url in self.listeners if url.startswith(prefix)][index][len(prefix) :]

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the master to exit by itself; its exit status."""
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"rwsgi did not exit within {timeout} s:\n{self.logs()}") from None


def run_to_exit(app: str, *args: str, timeout: float = 20.0) -> tuple[int, str]:
    """Run an rwsgi that is expected to refuse to start: (exit status, stderr)."""
    server = Rwsgi(app, *args, wait=False)
    try:
        return server.wait_exit(timeout), server.logs()
    finally:
        server.stop()


def url_arg(value: str | os.PathLike[str]) -> str:
    """Percent-encode a value (a path, usually) for a query string."""
    return quote(os.fspath(value), safe="")


def rwsgi_argv(
    app: str, *args: str, workers: int = 1, threads: int = 1, http: Sequence[str] = ("127.0.0.1:0",)
) -> list[str]:
    argv = [sys.executable, "-m", "rwsgi", app]
    for address in http:
        argv += ["--http", address]
    argv += ["--chdir", str(TESTS_DIR), "--workers", str(workers), "--threads", str(threads)]
    return argv + list(args)


class ServerFactory:
    """Starts servers and remembers them so that they are always stopped."""

    def __init__(self) -> None:
        self.servers: list[Server] = []

    def __call__(
        self,
        app: str,
        *args: str,
        workers: int = 1,
        threads: int = 1,
        http: Sequence[str] = ("127.0.0.1:0",),
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Server:
        argv = rwsgi_argv(app, *args, workers=workers, threads=threads, http=http)
        return self.argv(argv, listeners=len(http), workers=workers, env=env, wait=wait)

    def argv(
        self,
        argv: Sequence[str],
        *,
        listeners: int = 1,
        workers: int = 1,
        env: dict[str, str] | None = None,
        wait: bool = True,
        pass_fds: Sequence[int] = (),
    ) -> Server:
        """Start any command line that behaves like the rwsgi master."""
        server = Server(
            argv, listeners=listeners, workers=workers, env=env, wait=False, pass_fds=pass_fds
        )
        self.servers.append(server)
        if wait:
            server.wait_ready()
        return server

    def mixed(
        self,
        app: str,
        *args: str,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> Rwsgi:
        """An ``Rwsgi`` (any mix of listeners in ``args``), stopped with the others."""
        server = Rwsgi(app, *args, workers=workers, env=env, wait=False)
        self.servers.append(server)
        server.wait_ready()
        return server

    def stop_all(self) -> None:
        errors = []
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception as error:  # keep stopping the others
                errors.append(error)
        if errors:
            raise errors[0]


@contextlib.contextmanager
def in_threads(n: int) -> Iterator[Any]:
    """A thread pool that is always shut down."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=n)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
