"""What benches/nginx.py runs: the private nginx (its config, start and stop)
and the app servers that speak uwsgi on a unix socket behind it."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from compare import RunFailed, free_port, tail
from servers import HOST, Scenario, venv_bin, venv_python

NGINX = Path("/usr/sbin/nginx")
UWSGI_PARAMS = Path("/etc/nginx/uwsgi_params")

# {tmp}, {port} and {sock} are filled in per run.
NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_timeout 65;
    keepalive_requests 100000;
    client_max_body_size 20m;
    client_body_buffer_size 2m;
    uwsgi_buffers 16 128k;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi;
    fastcgi_temp_path {tmp}/fastcgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include {params};
            uwsgi_pass unix:{sock};
        }}
    }}
}}
"""


@dataclasses.dataclass(frozen=True)
class Upstream:
    """An app server speaking uwsgi on a unix socket, and how it says it is ready."""

    name: str
    command: Callable[[Path, Scenario, str], list[str]]
    supported: Callable[[Path], str | None]
    ready: str  # regex, matched once per worker in its log
    note: str = ""


def _rwsgi(venv: Path, s: Scenario, sock: str) -> list[str]:
    return [
        venv_python(venv), "-m", "rwsgi", s.target, "--socket", sock,
        "--workers", str(s.workers), "--threads", str(s.threads),
    ]  # fmt: skip


def _uwsgi(venv: Path, s: Scenario, sock: str) -> list[str]:
    threads = ["--threads", str(s.threads)] if s.threads > 1 else []
    return [
        str(venv_bin(venv, "uwsgi")), "--socket", sock, "--master",
        "--processes", str(s.workers), *threads, "--module", s.target,
        "--listen", "1024", "--disable-logging", "--die-on-term", "--need-app", "--strict",
        "--buffer-size", "32768",
    ]  # fmt: skip


def _gunicorn(venv: Path, s: Scenario, sock: str) -> list[str]:
    worker = ["--worker-class", "gthread", "--threads", str(s.threads)] if s.threads > 1 else []
    return [
        str(venv_bin(venv, "gunicorn")), "--protocol", "uwsgi", "--bind", f"unix:{sock}",
        "--workers", str(s.workers), *worker, "--backlog", "1024", s.target,
    ]  # fmt: skip


def _has(venv: Path, module: str) -> str | None:
    if not venv_bin(venv, "python").exists():
        return f"not installed (no venv at {venv}; run benches/setup.sh)"
    done = subprocess.run(
        [venv_python(venv), "-c", f"import {module}"], capture_output=True, timeout=60, check=False
    )
    return None if done.returncode == 0 else "not installed"


def _gunicorn_supported(venv: Path) -> str | None:
    """gunicorn speaks uwsgi only from the version that has ``--protocol``."""
    binary = venv_bin(venv, "gunicorn")
    if not binary.exists():
        return "not installed"
    version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
    ).stdout.strip()
    helptext = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    if not re.search(r"^\s+--protocol\b", helptext, re.MULTILINE):
        number = re.search(r"[\d.]+\w*", version)
        return f"not supported by gunicorn {number.group(0) if number else version}"
    return None


UPSTREAMS = {
    u.name: u
    for u in (
        Upstream(
            "rwsgi", _rwsgi, lambda v: _has(v, "rwsgi._rwsgi"), r"worker \d+ \(pid \d+\) ready"
        ),
        Upstream(
            "uwsgi",
            _uwsgi,
            lambda v: None if venv_bin(v, "uwsgi").exists() else "not installed",
            r"spawned uWSGI worker \d+",
            note="buffer-size raised from its 4 KiB default to 32 KiB; listen 1024",
        ),
        Upstream(
            "gunicorn",
            _gunicorn,
            _gunicorn_supported,
            r"Booting worker with pid",
            note="sync worker, --protocol uwsgi; backlog 1024",
        ),
    )
}


def nginx_conf(tmp: str, port: int | str, sock: str) -> str:
    return NGINX_CONF.format(tmp=tmp, port=port, sock=sock, params=UWSGI_PARAMS)


def nginx_version() -> str:
    done = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().replace("nginx version: ", "")


def start_nginx(tmp: Path, sock: str, timeout: float) -> tuple[subprocess.Popen[bytes], int]:
    """A private nginx in ``tmp``, in its own session; returns once its port accepts."""
    for sub in ("client_body", "proxy", "uwsgi", "fastcgi", "scgi"):
        (tmp / sub).mkdir(exist_ok=True)
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(str(tmp), port, sock))
    with open(tmp / "nginx.out", "wb") as out:
        proc = subprocess.Popen(
            [str(NGINX), "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RunFailed(f"nginx exited ({proc.returncode}): {tail(tmp / 'error.log')}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    stop_nginx(proc)
    raise RunFailed(f"nginx did not listen within {timeout:.0f} s")


def stop_nginx(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGQUIT (graceful) to the nginx we started, then SIGKILL, by its PID."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGQUIT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def error_log_summary(text: str) -> dict:
    """nginx's error.log lines by level, and a few distinct messages."""
    levels: dict[str, int] = {}
    messages: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)", line)
        if not match:
            continue
        levels[match.group(1)] = levels.get(match.group(1), 0) + 1
        message = re.sub(r", client: .*", "", match.group(2))
        message = re.sub(r"/tmp/[^/\s]+/", "TMP/", message)
        messages[message] = messages.get(message, 0) + 1
    top = sorted(messages.items(), key=lambda kv: -kv[1])[:3]
    return {"levels": levels, "top": [f"{n} x {m}" for m, n in top]}
