"""The hand-over from ``manage.py rwsgi_serve`` to a fresh interpreter that
becomes the rwsgi master.

Why a fresh interpreter: the master forks one loader per code generation and
the loader imports the app. ``manage.py`` has already run ``django.setup()``
and the system checks (which import the URLconf and the views), so if the
command's own process became the master, every reload would fork loaders
that still hold the old modules. The command therefore does its checks,
prints its banner, then ``exec_server()`` replaces the process (same PID, so
whatever started ``manage.py`` can signal it) with
``python -m rwsgi.django._serve``, whose ``main()`` calls
``rwsgi.serve(app, **options)`` without importing Django at all.

The protocol between the two is one environment variable, ``RWSGI_DJANGO``:
JSON with the app spec, the rwsgi options (as ``serve()`` takes them, already
validated once by the command) and the command's ``sys.path`` (manage.py's
folder, ``--pythonpath``), so the loader imports the project exactly as
manage.py did. ``DJANGO_SETTINGS_MODULE`` is inherited as it is (``--settings``
has set it). The variable is removed before the app sees the environment.
"""

from __future__ import annotations

import errno
import json
import os
import sys

TYPE_CHECKING = False

if TYPE_CHECKING:  # typing costs the master ~1 MiB and 15 ms at start-up
    from typing import Any, NoReturn

__all__ = ["ENV_VAR", "exec_server", "friendly_os_error", "main"]

ENV_VAR = "RWSGI_DJANGO"
"""The environment variable carrying the hand-over (see the module docstring)."""

# runserver's wording, so its users recognise them.
_BIND_ERRORS = {
    errno.EACCES: "You don't have permission to access that port.",
    errno.EADDRINUSE: "That port is already in use.",
    errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
}


def friendly_os_error(error: OSError) -> str:
    """runserver's one-line text for a bind error, else the error itself."""
    return _BIND_ERRORS.get(error.errno or 0, str(error))


def exec_server(app: str, options: dict[str, Any]) -> NoReturn:
    """Replace this process with a fresh interpreter serving ``app`` (an
    ``module:attr`` spec) with ``options``; never returns."""
    import subprocess

    env = dict(os.environ)
    env[ENV_VAR] = json.dumps({"app": app, "options": options, "sys_path": sys.path})
    # The interpreter's own flags (-W, -X dev, -O...) carry over, as
    # multiprocessing does it.
    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    argv = [sys.executable, *flags, "-m", "rwsgi.django._serve"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def main() -> int:
    """Run the rwsgi master from the hand-over; the exit status."""
    raw = os.environ.pop(ENV_VAR, None)
    if raw is None:
        print("rwsgi.django._serve is started by `manage.py rwsgi_serve`", file=sys.stderr)
        return 2
    handover = json.loads(raw)
    sys.path[:] = handover["sys_path"]
    import rwsgi

    try:
        rwsgi.serve(handover["app"], **handover["options"])
    except OSError as error:
        print(f"Error: {friendly_os_error(error)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, RuntimeError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
