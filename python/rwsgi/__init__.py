"""rwsgi: a WSGI application server with a Rust network core.

``serve(app, **options)`` runs the master process: it binds the listeners,
forks the workers and supervises them until SIGINT or SIGTERM.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping

from rwsgi import _rwsgi
from rwsgi._rwsgi import RequestTimeout
from rwsgi.loader import AppLoadError, prepare_import_path, serve_spec
from rwsgi.options import OPTIONS, OptionError, normalize, parse_mounts

TYPE_CHECKING = False

if TYPE_CHECKING:  # typing costs the master ~1 MiB and 15 ms at start-up
    from typing import Any

__all__ = ["OPTIONS", "AppLoadError", "OptionError", "RequestTimeout", "__version__", "serve"]

__version__: str = _rwsgi.__version__


def serve(app: Callable[..., Any] | str, **options: Any) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; blocks in the master process.

    ``app`` is a WSGI callable, or a ``"module:attr"`` string. A string is
    imported once per code generation by a loader process that forks the
    workers (the default), or in every worker when ``preload=False``; the
    master never imports it, so SIGHUP reloads new code. A callable is
    already imported: SIGHUP replaces the workers but cannot change its code.
    ``static={"/static": "dir"}`` is ``static_map`` written as a mapping.
    With ``autoreload=SECONDS`` (a string ``app`` only), changed source files
    start a new code generation, and an app that fails to import answers 500
    with its traceback until the next change.
    Options are those of ``rwsgi.OPTIONS`` (``workers``, ``threads``, ``http``...);
    a wrong one raises ``TypeError`` or ``ValueError`` naming it.
    """
    if sys.platform == "win32":  # pragma: no cover - rwsgi forks
        raise RuntimeError("rwsgi needs a Unix system (it forks worker processes)")
    static = options.pop("static", None)
    if static is not None:
        if not isinstance(static, Mapping):
            raise TypeError("static must be a mapping of URL prefix to folder")
        options["static_map"] = [
            *(options.get("static_map") or []),
            *parse_mounts("static", static),
        ]
    config = normalize(options)
    if isinstance(app, str):
        serve_spec(app, config)
        return
    prepare_import_path(config["chdir"], config["pythonpath"])
    if config["autoreload"]:
        raise OptionError(
            "autoreload: give the app as a 'module:app' string; a callable is already "
            "imported, so its code cannot be reloaded"
        )
    if not callable(app):
        raise TypeError(f"app must be a WSGI callable or 'module:app', not {type(app).__name__}")
    label = f"{getattr(app, '__module__', '?')}:{getattr(app, '__qualname__', type(app).__name__)}"
    _rwsgi.serve(app, None, label, config)
