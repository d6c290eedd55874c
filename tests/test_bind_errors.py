"""A listener that cannot be bound is an ``OSError`` carrying the real errno
(also when rwsgi rewrote its message), so callers such as the Django command
can say "That port is already in use." as runserver does."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys

from conftest import TESTS_DIR

PROBE = """
import sys, rwsgi
try:
    rwsgi.serve("apps.core", http=sys.argv[1])
except OSError as error:
    print(error.errno)
"""


def errno_of_serving(address: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, address],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(TESTS_DIR),
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout.strip(), done.stderr
    return int(done.stdout.strip())


def test_an_address_in_use_is_eaddrinuse() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert errno_of_serving(f"127.0.0.1:{port}") == errno.EADDRINUSE


def test_an_address_not_on_this_host_is_eaddrnotavail() -> None:
    # TEST-NET-3 (RFC 5737): never assigned to a local interface.
    assert errno_of_serving("203.0.113.7:8000") == errno.EADDRNOTAVAIL
