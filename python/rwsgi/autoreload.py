"""Development autoreload, the Python side: which files to watch, and an app
that failed to import shown in the browser instead of stopping the server.

The Rust loader process (``--autoreload SECONDS``) builds one ``Watcher``
right after it loaded the app and calls ``changed()`` every SECONDS with the
GIL held; a path back starts a new code generation, exactly as SIGHUP does
(the listening sockets stay open). What is watched is what Django's
``runserver`` watches: every imported module's file, the files that failed to
import, and, when Django is loaded, whatever its ``autoreload_started``
receivers add (template and locale folders), through Django's own
``StatReloader``. Polling ``stat()`` needs no dependency and no thread.

``load_for_development(load)`` wraps the loader callable: an exception while
importing (``SyntaxError``, ``ImportError``, anything) is printed to stderr
and becomes an app answering every request with a 500 page showing the
traceback, and the files it names are watched, so the edit that fixes them
reloads. This lives outside Django's setup: it does not depend on the command
being called ``runserver``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False

if TYPE_CHECKING:  # typing costs the master ~1 MiB and 15 ms at start-up
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    WSGIApp = Callable[..., Any]

__all__ = ["ErrorApp", "Watcher", "failed_files", "load_for_development"]

_failed_files: list[str] = []


def failed_files() -> list[str]:
    """The files named by the tracebacks of failed loads in this process (watched
    by every ``Watcher`` built afterwards)."""
    return list(_failed_files)


class Watcher:
    """The modification times of the loaded app's files, and which changed since.

    Built in the loader process right after the app loaded: the baseline is
    taken then. ``changed()`` only calls ``stat()``, so it is quick enough to
    run with the GIL held between two polls.
    """

    def __init__(self, sources: bool = True, touch: Iterable[str] = ()) -> None:
        """``sources``: watch the app's files (``--autoreload``); ``touch``:
        files whose modification (or creation) reloads (``--touch-reload``)."""
        self._sources = sources
        self._django = _django_reloader() if sources else None
        self._mtimes: dict[str, float] = dict(self._snapshot()) if sources else {}
        self._touch: dict[str, float | None] = {path: _mtime(path) for path in touch}

    @property
    def uses_django(self) -> bool:
        """Whether Django's reloader chooses the files (Django was loaded)."""
        return self._django is not None

    def watched(self) -> list[str]:
        """Every file watched now, sorted (for tests and debugging)."""
        return sorted(path for path, _ in self._snapshot())

    def changed(self) -> str | None:
        """The path of a file whose mtime changed since the last call (or the
        baseline), or None. A file first seen now is not a change (as Django's
        StatReloader); a file that vanished is not one either."""
        found: str | None = None
        for path, before in self._touch.items():
            now = _mtime(path)
            self._touch[path] = now
            if found is None and now is not None and now != before:
                found = path
        if not self._sources:
            return found
        for path, mtime in self._snapshot():
            previous = self._mtimes.get(path)
            self._mtimes[path] = mtime
            # != rather than >: a backup restored with its old mtime is a change too.
            if found is None and previous is not None and previous != mtime:
                found = path
        return found

    def _snapshot(self) -> Iterator[tuple[str, float]]:
        if self._django is not None:
            for file, mtime in self._django.snapshot_files():
                yield str(file), mtime
            return
        seen: set[str] = set()
        for path in (*_module_files(), *_failed_files):
            if path in seen:
                continue
            seen.add(path)
            try:
                mtime = os.stat(path).st_mtime
            except (OSError, ValueError):  # removed, or a NUL in a strange path
                continue
            yield path, mtime


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except (OSError, ValueError):
        return None


def _module_files() -> list[str]:
    """The source file of every imported module, as Django's
    ``iter_all_python_module_files`` finds them (``__main__`` by ``__file__``)."""
    files = []
    for name, module in list(sys.modules.items()):
        if name in ("__main__", "__mp_main__"):
            path = getattr(module, "__file__", None)
        else:
            spec = getattr(module, "__spec__", None)
            path = spec.origin if spec is not None and spec.has_location else None
        if isinstance(path, str) and path:
            files.append(os.path.abspath(path))
    return files


def _django_reloader() -> Any:
    """Django's ``StatReloader`` with its receivers' folders added, when Django
    is loaded; None for a plain WSGI app."""
    if "django" not in sys.modules:
        return None
    try:
        from pathlib import Path

        from django.apps import apps
        from django.utils import autoreload
    except Exception:  # a broken or partial Django install: watch modules only
        return None
    reloader = autoreload.StatReloader()
    reloader.extra_files.update(Path(path) for path in _failed_files)
    if apps.ready:
        try:
            # Connects the template folders (and locale ones with USE_I18N).
            autoreload.autoreload_started.send(sender=reloader)
        except Exception:
            import traceback

            print(
                "rwsgi autoreload: Django's autoreload_started receivers failed:", file=sys.stderr
            )
            traceback.print_exc()
    return reloader


class ErrorApp:
    """A WSGI app answering every request with a 500 page that shows why the
    real app failed to load."""

    def __init__(self, error_text: str, summary: str) -> None:
        import html

        self.body = (
            "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(summary)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}"
            "pre{background:#fee;padding:1em;overflow:auto}</style></head><body>\n"
            "<h1>The app failed to load</h1>\n"
            f"<p><strong>{html.escape(summary)}</strong></p>\n"
            f"<pre>{html.escape(error_text)}</pre>\n"
            "<p>rwsgi reloads when a watched file changes: fix it and save it.</p>\n"
            "</body></html>\n"
        ).encode()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """Answer 500 with the traceback page."""
        start_response(
            "500 Internal Server Error",
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(self.body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [self.body]


def load_for_development(load: Callable[[], WSGIApp]) -> Callable[[], WSGIApp]:
    """Wrap the loader callable for ``--autoreload``: an exception while loading
    is printed to stderr and served as a 500 page, and its files are watched."""

    def load_or_explain() -> WSGIApp:
        try:
            return load()
        except (Exception, SystemExit) as error:
            import traceback

            text = "".join(traceback.format_exception(error))
            summary = traceback.format_exception_only(error)[-1].strip()
            print(
                f"rwsgi autoreload: the app failed to load; every request gets a 500 page "
                f"until a watched file changes:\n{text}",
                file=sys.stderr,
                end="",
                flush=True,
            )
            for path in _files_of(error):
                if path not in _failed_files:
                    _failed_files.append(path)
            return ErrorApp(text, summary)

    return load_or_explain


def _files_of(error: BaseException) -> Iterable[str]:
    """The files a failed import's traceback names: a SyntaxError's file and
    each frame's, through the chained exceptions (``raise ... from``)."""
    import traceback

    seen: set[int] = set()
    pending: list[BaseException] = [error]
    files: list[str] = []
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SyntaxError) and current.filename:
            files.append(current.filename)
        files.extend(frame.filename for frame in traceback.extract_tb(current.__traceback__))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return [os.path.abspath(path) for path in dict.fromkeys(files) if os.path.isfile(path)]
