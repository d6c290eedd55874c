"""Helpers for the uwsgi-protocol, unix-socket and nginx tests.

- ``Nginx``: a private nginx (own config, pid file, logs and temp paths in a
  temporary directory, a free 127.0.0.1 port) started as a subprocess and
  stopped by PID. A missing nginx fails the test with a clear message.
- re-exported from ``support``, where they now live: ``Rwsgi`` (rwsgi with
  any mix of listeners), ``run_to_exit``, ``short_tmpdir``, the uwsgi packet
  builders, ``uwsgi_exchange``, ``connect``, ``parse_response`` and
  ``read_to_eof`` (``support.http.read_until_closed``).

Only the standard library and pytest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from support.http import (
    RawResponse,
    UwsgiResponse,
    connect,
    parse_response,
    read_until_closed,
)
from support.process import (
    ANY_LISTENING_RE,
    LISTENER_FLAGS,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Rwsgi,
    Server,
    run_to_exit,
    short_tmpdir,
)
from support.uwsgi import (
    request_vars,
    uwsgi_exchange,
    uwsgi_header,
    uwsgi_packet,
    uwsgi_vars,
)

LISTENING_RE = ANY_LISTENING_RE
read_to_eof = read_until_closed

__all__ = [
    "LISTENER_FLAGS",
    "LISTENING_RE",
    "STOP_TIMEOUT",
    "Nginx",
    "RawResponse",
    "Rwsgi",
    "Server",
    "UwsgiResponse",
    "connect",
    "find_nginx",
    "free_port",
    "parse_response",
    "read_to_eof",
    "read_until_closed",
    "request_vars",
    "run_to_exit",
    "short_tmpdir",
    "uwsgi_exchange",
    "uwsgi_header",
    "uwsgi_packet",
    "uwsgi_vars",
]


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
