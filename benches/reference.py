"""The answer an app gives in-process, for compare.py to hold every server's
answers to (the Flask and Django scenarios, whose bodies the frameworks make).

    python reference.py MODULE:APP PATH

Calls the WSGI app once with a GET of PATH (a ``wsgiref`` test environ,
Host 127.0.0.1) and writes the body to stdout; exits 1, with the status on
stderr, unless the status is 200. Run with ``benches/`` as the working
directory and on ``sys.path``, from the venv that has the framework.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
from typing import Any
from wsgiref.util import setup_testing_defaults


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    module, _, name = argv[0].partition(":")
    sys.path.insert(0, os.getcwd())
    app = getattr(importlib.import_module(module), name or "application")
    environ: dict[str, Any] = {"PATH_INFO": argv[1], "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    seen: list[str] = []

    def start_response(status: str, headers: list, exc_info: Any = None) -> Any:
        seen.append(status)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    if not seen or not seen[-1].startswith("200 "):
        print(f"status {seen[-1] if seen else 'never started'}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
