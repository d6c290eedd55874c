"""Helpers for the uwsgi-protocol, unix-socket and nginx tests.

- ``Rwsgi``: runs ``python -m rwsgi APP ...`` with any mix of ``--socket``,
  ``--http-socket`` and ``--http`` listeners (conftest's fixture assumes one
  ``--http`` listener) and waits for every ``listening on`` banner and every
  worker's ``ready`` line; stops it by PID (SIGTERM, then SIGKILL).
- ``uwsgi_packet`` / ``uwsgi_exchange``: a uwsgi client written from the
  protocol description (DESIGN.md), reading the close-delimited answer.
- ``Nginx``: a private nginx (own config, pid file, logs and temp paths in a
  temporary directory, a free 127.0.0.1 port) started as a subprocess and
  stopped by PID. A missing nginx fails the test with a clear message.

Only the standard library and pytest.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import START_TIMEOUT, STOP_TIMEOUT, Server

# Every kind of listener, unlike conftest's HTTP-only pattern.
LISTENING_RE = re.compile(r"listening on (\S+)")
LISTENER_FLAGS = ("--http", "--http-socket", "--socket")


def short_tmpdir() -> str:
    """A fresh directory under /tmp whose path is short enough for unix sockets."""
    return tempfile.mkdtemp(prefix="rw", dir="/tmp")


# -- rwsgi --------------------------------------------------------------------


class Rwsgi(Server):
    """conftest's ``Server`` for any mix of listeners (uwsgi, unix sockets), not
    only ``--http``: ``listeners`` holds every ``listening on`` URL."""

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
        self.wait_for_log(LISTENING_RE, timeout, count=max(self.expected_listeners, 1))
        with self._cond:
            self.listeners = [
                m.group(1) for line in self._lines if (m := LISTENING_RE.search(line))
            ]
        self.wait_for_ready_workers(self.expected_workers, timeout)

    def tcp(self, scheme: str, index: int = 0) -> tuple[str, int]:
        """The (host, port) of the ``index``-th ``scheme://`` listener (uwsgi or http)."""
        found = [url for url in self.listeners if url.startswith(scheme + "://")]
        host, _, port = found[index][len(scheme) + 3 :].rpartition(":")
        return host.strip("[]"), int(port)

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


# -- the uwsgi protocol -------------------------------------------------------


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


def uwsgi_vars(pairs: Iterable[tuple[str | bytes, str | bytes]]) -> bytes:
    """A vars block: (u16 LE length, key, u16 LE length, value) for each pair."""
    block = bytearray()
    for key, value in pairs:
        key_bytes, value_bytes = _as_bytes(key), _as_bytes(value)
        block += struct.pack("<H", len(key_bytes)) + key_bytes
        block += struct.pack("<H", len(value_bytes)) + value_bytes
    return bytes(block)


def uwsgi_header(datasize: int, modifier1: int = 0, modifier2: int = 0) -> bytes:
    return struct.pack("<BHB", modifier1, datasize, modifier2)


def uwsgi_packet(
    pairs: dict[str, str | bytes] | Sequence[tuple[str | bytes, str | bytes]],
    body: bytes = b"",
    modifier1: int = 0,
    modifier2: int = 0,
) -> bytes:
    """A whole request: header, vars block, body (CONTENT_LENGTH is the caller's business)."""
    items = list(pairs.items()) if isinstance(pairs, dict) else list(pairs)
    block = uwsgi_vars(items)
    return uwsgi_header(len(block), modifier1, modifier2) + block + body


def request_vars(
    method: str = "GET", path: str = "/env", query: str = "", body: bytes = b"", **extra: str
) -> dict[str, str | bytes]:
    """The vars nginx's ``uwsgi_params`` would send for a simple request."""
    result: dict[str, str | bytes] = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": "application/octet-stream" if body else "",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "REQUEST_URI": path + ("?" + query if query else ""),
        "PATH_INFO": path,
        "DOCUMENT_ROOT": "/usr/share/nginx/html",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "SERVER_PORT": "80",
        "SERVER_NAME": "localhost",
        "HTTP_HOST": "localhost",
    }
    result.update(extra)
    return result


def connect(address: str | tuple[str, int], timeout: float = 10.0) -> socket.socket:
    """A connected stream socket: a unix path (``\\0name`` for abstract) or (host, port)."""
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (a reset counts as a close)."""
    data = bytearray()
    while True:
        try:
            piece = sock.recv(1 << 16)
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
    return bytes(data)


@dataclass
class UwsgiResponse:
    """A close-delimited HTTP/1.x answer to a uwsgi request."""

    raw: bytes
    status_line: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None


def parse_response(raw: bytes) -> UwsgiResponse:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {raw[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    assert parts[0] in ("HTTP/1.0", "HTTP/1.1"), status_line
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return UwsgiResponse(raw, status_line, int(parts[1]), headers, body)


def uwsgi_exchange(
    address: str | tuple[str, int], packet: bytes, timeout: float = 10.0
) -> UwsgiResponse:
    """Send one packet, read until the server closes, parse the answer."""
    with connect(address, timeout) as sock:
        sock.sendall(packet)
        return parse_response(read_to_eof(sock))


# -- nginx --------------------------------------------------------------------

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def find_nginx() -> str:
    """The nginx binary, or a failed test saying how to get one (never a skip)."""
    found = shutil.which("nginx") or next(
        (path for path in NGINX_CANDIDATES if os.access(path, os.X_OK)), None
    )
    if found is None:
        pytest.fail(
            "nginx is not installed: the uwsgi_pass tests need a real nginx "
            "(apt-get install nginx-light; scripts/test.sh installs it in CI)",
            pytrace=False,
        )
    return found


def free_port() -> int:
    """A port that was free a moment ago (nginx cannot take a pre-bound socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


NGINX_CONF = """\
{user}
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi;
    fastcgi_temp_path {tmp}/fastcgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 20m;
    large_client_header_buffers 4 64k;
    uwsgi_read_timeout 30s;
    proxy_read_timeout 30s;

    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
{locations}
    }}
}}
"""


class Nginx:
    """A private nginx serving ``locations`` (server-block text) on a free port."""

    def __init__(self, locations: str, tmp: str | None = None) -> None:
        self.binary = find_nginx()
        self._own_tmp = tmp is None
        self.tmp = Path(tmp or short_tmpdir())
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        for _attempt in range(5):
            self.port = free_port()
            conf = NGINX_CONF.format(
                user="user root;" if os.geteuid() == 0 else "",
                tmp=self.tmp,
                port=self.port,
                locations=locations,
            )
            self.conf_path = self.tmp / "nginx.conf"
            self.conf_path.write_text(conf)
            if self._start():
                return
        raise AssertionError(f"nginx did not start; error.log:\n{self.error_log()}")

    def _start(self) -> bool:
        """Start nginx; True once its port accepts, False if the port was taken meanwhile."""
        with open(self.tmp / "stderr.log", "ab") as stderr:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "-c",
                    str(self.conf_path),
                    "-p",
                    str(self.tmp),
                    "-e",
                    str(self.tmp / "error.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc.wait()
                if "Address already in use" in self.error_log():
                    return False
                raise AssertionError(
                    f"nginx exited with {self.proc.returncode}; error.log:\n{self.error_log()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise AssertionError(f"nginx did not accept on port {self.port} within {START_TIMEOUT} s")

    def error_log(self) -> str:
        text = ""
        for name in ("stderr.log", "error.log"):
            path = self.tmp / name
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def stop(self) -> None:
        """SIGQUIT (graceful), then SIGTERM, then SIGKILL, by PID; idempotent."""
        proc = self.proc
        if proc is not None:
            self._stop(proc)
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        for signum, wait in ((signal.SIGQUIT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        proc.wait()
