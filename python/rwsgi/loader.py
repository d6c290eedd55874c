"""Turn ``module:attribute`` into the WSGI callable it names."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

TYPE_CHECKING = False

if TYPE_CHECKING:  # typing costs the master ~1 MiB and 15 ms at start-up
    from typing import Any

__all__ = ["AppLoadError", "load_app", "prepare_import_path", "serve_spec"]


class AppLoadError(Exception):
    """The app spec could not be resolved to a callable; the message says why."""


def load_app(spec: str) -> Callable[..., Any]:
    """Import ``module[:attr]`` (``attr`` defaults to ``application``) and return it.

    Exceptions raised while importing the module propagate unchanged so their
    traceback reaches the log; a missing attribute or a non-callable object is
    an ``AppLoadError`` naming the spec.
    """
    module_name, _, attr_path = spec.partition(":")
    if not module_name:
        raise AppLoadError(f"app {spec!r}: expected MODULE or MODULE:APP")
    attr_path = attr_path or "application"
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(
                f"app {spec!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(obj):
        raise AppLoadError(f"app {spec!r}: {attr_path!r} is not callable")
    return obj  # type: ignore[no-any-return]


def prepare_import_path(chdir: str | None, pythonpath: list[str]) -> None:
    """Apply --chdir and --pythonpath, and make the working directory importable
    (as gunicorn does), before the app is imported."""
    if chdir:
        os.chdir(chdir)
    for path in reversed(pythonpath):
        sys.path.insert(0, os.path.abspath(path))
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def serve_spec(spec: str, config: dict[str, Any]) -> None:
    """Serve the app ``spec`` names with a normalized ``config``: the one path
    of ``serve("module:app")``, the CLI and the Django command's server.

    The master never imports the app: a loader process does (or each worker
    with ``--lazy``), so SIGHUP can load new code. With ``autoreload``, an
    app that fails to import is served as its traceback until fixed.
    """
    from rwsgi import _rwsgi

    prepare_import_path(config["chdir"], config["pythonpath"])
    load: Callable[[], Callable[..., Any]] = lambda: load_app(spec)  # noqa: E731
    if config["autoreload"]:
        from rwsgi.autoreload import load_for_development

        load = load_for_development(load)
    _rwsgi.serve(None, load, spec, config)
