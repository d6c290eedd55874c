"""The app ``manage.py rwsgi_serve`` serves: the project's ``WSGI_APPLICATION``,
loaded as runserver loads it, in each code generation's loader process.

``rwsgi.django.wsgi:application`` is the project's app;
``rwsgi.django.wsgi:application_with_staticfiles`` wraps it in Django's
``StaticFilesHandler``, for projects with a staticfiles finder whose files
rwsgi cannot map to a folder (Rust serves the folders it can; the rest falls
through to the handler, as under runserver). Both are built on first access
(PEP 562), so importing this module imports nothing of the project.

Loading also imports the URLconf (and so the views), as Django's autoreloader
does before it starts watching: otherwise views would be imported lazily by
each worker, the loader would not know their files, and an edit to a view
would not reload; a syntax error in a view is then a load error, shown by
``rwsgi.autoreload``'s error page in development. Database connections opened
while loading are closed before the workers are forked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["application", "application_with_staticfiles"]

application: Callable[..., Any]
application_with_staticfiles: Callable[..., Any]

_loaded: dict[str, Callable[..., Any]] = {}


def __getattr__(name: str) -> Callable[..., Any]:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _loaded:
        _loaded[name] = _load(staticfiles=name == "application_with_staticfiles")
    return _loaded[name]


def _load(staticfiles: bool) -> Callable[..., Any]:
    import django

    django.setup(set_prefix=False)
    from django.core.servers.basehttp import get_internal_wsgi_application
    from django.db import connections
    from django.urls import get_resolver

    handler = get_internal_wsgi_application()
    get_resolver().urlconf_module  # noqa: B018 - imported for its side effect
    for connection in connections.all(initialized_only=True):
        connection.close()
    if staticfiles:
        from django.contrib.staticfiles.handlers import StaticFilesHandler

        return StaticFilesHandler(handler)
    return handler
