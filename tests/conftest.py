"""Fixtures that run rwsgi as a real server process and talk to it.

``start_server(app_spec, *args, workers=1, threads=1)`` starts
``python -m rwsgi APP --http 127.0.0.1:0 --chdir tests/ ...`` and returns a
ready ``Server``; ``start_server.mixed(app, *listener_args)`` starts one with
any mix of listeners. Everything a fixture starts is stopped at teardown.

The machinery lives in ``support/`` (process harness, raw HTTP, uwsgi,
transports); the names tests import from here are re-exported below.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.http import (
    IncompleteResponse,
    RawResponse,
    Response,
    connect,
    parse_response,
    read_head,
    read_response,
    read_until_closed,
    trickle,
)
from support.process import (
    LISTENING_RE,
    READY_RE,
    START_TIMEOUT,
    STOP_TIMEOUT,
    TESTS_DIR,
    Rwsgi,
    Server,
    ServerExited,
    ServerFactory,
    _is_rwsgi_process,
    _pid_alive,
    in_threads,
    recorded_lines,
    rwsgi_argv,
    short_tmpdir,
    url_arg,
    wait_until,
)

__all__ = [
    "LISTENING_RE",
    "READY_RE",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "TESTS_DIR",
    "IncompleteResponse",
    "RawResponse",
    "Response",
    "Rwsgi",
    "Server",
    "ServerExited",
    "ServerFactory",
    "_is_rwsgi_process",
    "_pid_alive",
    "connect",
    "in_threads",
    "parse_response",
    "read_head",
    "read_response",
    "read_until_closed",
    "recorded_lines",
    "rwsgi_argv",
    "short_tmpdir",
    "start_module_server",
    "start_server",
    "trickle",
    "url_arg",
    "wait_until",
]


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """``start_server(app, *args, workers=, threads=)`` -> a ready ``Server``."""
    factory = ServerFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def start_module_server() -> Iterator[ServerFactory]:
    """Like ``start_server`` but shared by a test module (for servers nobody disturbs)."""
    factory = ServerFactory()
    try:
        yield factory
    finally:
        factory.stop_all()
