"""Pre-forking launcher for servers that have no workers of their own.

    python prefork.py bjoern   MODULE:APP HOST PORT WORKERS
    python prefork.py waitress MODULE:APP HOST PORT WORKERS THREADS

The app is imported once in the parent, then WORKERS children are forked:
- bjoern: each child binds its own listener with SO_REUSEPORT (bjoern's own
  ``reuse_port=True``) and runs bjoern's single-threaded loop; bjoern has no
  threads, so there is no THREADS argument.
- waitress: the parent binds one listener before forking and every child
  serves it with ``waitress.serve(sockets=[...], threads=THREADS)``.

Each child prints ``<server> worker (pid P) ready`` on stderr once it is
listening. The parent waits; when a child dies or the parent gets SIGTERM or
SIGINT it stops the other children and exits. compare.py starts this in a new
session and ends the whole group, so no worker outlives a run.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import sys
from typing import Any


def load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "application")


def child_bjoern(app: Any, host: str, port: int) -> None:
    import bjoern

    bjoern.listen(app, host, port, reuse_port=True)
    print(f"bjoern worker (pid {os.getpid()}) ready", file=sys.stderr, flush=True)
    bjoern.run()


def child_waitress(app: Any, sock: socket.socket, threads: int) -> None:
    import waitress

    print(f"waitress worker (pid {os.getpid()}) ready", file=sys.stderr, flush=True)
    waitress.serve(app, sockets=[sock], threads=threads, ident="waitress", _quiet=True)


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[0] not in ("bjoern", "waitress"):
        print(__doc__, file=sys.stderr)
        return 2
    server, spec, host, port, workers = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    threads = int(argv[5]) if len(argv) > 5 else 1
    sys.path.insert(0, os.getcwd())
    app = load(spec)

    sock = None
    if server == "waitress":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)

    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                if server == "bjoern":
                    child_bjoern(app, host, port)
                else:
                    assert sock is not None
                    child_waitress(app, sock, threads)
            finally:
                os._exit(1)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pid, status = os.wait()
    print(f"prefork: worker {pid} exited with status {status}", file=sys.stderr, flush=True)
    stop(signal.SIGTERM, None)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
