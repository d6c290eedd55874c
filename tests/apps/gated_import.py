"""``apps.core``, but importing it waits (up to 30 s) for the file named by
``$RWSGI_TEST_GATE``: with ``--lazy``, a test decides when workers get ready."""

from __future__ import annotations

import os
import time

from apps.core import application

GATE_LIMIT = 30.0

_gate = os.environ.get("RWSGI_TEST_GATE")
if _gate:
    _deadline = time.monotonic() + GATE_LIMIT
    while not os.path.exists(_gate) and time.monotonic() < _deadline:
        time.sleep(0.02)

__all__ = ["application"]
