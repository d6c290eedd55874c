"""Python's ``logging`` into the server log.

Each worker (or, after a preload, the loader) calls ``install()`` once the
app is loaded and if the app imported ``logging`` by then (frameworks do; an
app that does not is spared the import, and its later records reach the same
stream through Python's last-resort handler). When the app left the root
logger without handlers (it configured no logging), its records go to
rwsgi's log (``--log-file`` or stderr) in the server's own line format
(``--log-format``), filtered by ``--log-level``, each line naming its logger.
An app that configured logging keeps its own setup untouched.
"""

from __future__ import annotations

import logging

from rwsgi import _rwsgi

__all__ = ["ServerLogHandler", "install"]


class ServerLogHandler(logging.Handler):
    """Write each record as one server log line (the GIL is released while
    the line is written)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` (with its traceback, if any) and hand it to the server log."""
        try:
            _rwsgi.log_line(record.levelno, record.name, self.format(record))
        except Exception:  # logging's own contract: emit never raises
            self.handleError(record)


def install() -> bool:
    """Route the root logger to the server log if nothing else handles it;
    True when it did."""
    root = logging.getLogger()
    if root.handlers:
        return False
    handler = ServerLogHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(_rwsgi.log_level())
    return True
