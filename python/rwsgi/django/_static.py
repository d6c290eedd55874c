"""Which folders ``rwsgi_serve`` hands to Rust's static file server, as
``--static-map PREFIX=DIR`` entries (rwsgi serves them without Python).

- DEBUG (or ``--insecure``), with ``django.contrib.staticfiles`` installed:
  what the staticfiles finders search, in their order, under STATIC_URL, as
  runserver serves it. A prefix listed several times is searched in order,
  which is exactly how the finders search: ``FileSystemFinder`` (each of
  STATICFILES_DIRS, with its optional prefix), then ``AppDirectoriesFinder``
  (each app's ``static/``, in INSTALLED_APPS order). A finder whose files are
  not in a folder (a custom one) cannot be mapped: the app is then wrapped in
  Django's ``StaticFilesHandler`` and what Rust does not find falls through.
- Otherwise: STATIC_ROOT under STATIC_URL (``collectstatic``'s output).
- In both: MEDIA_ROOT under MEDIA_URL when both are set.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from django.conf import settings

__all__ = ["StaticPlan", "plan_static"]


class StaticPlan(NamedTuple):
    """The static_map entries, what to tell the user, and whether some
    finder's files are left to Django's StaticFilesHandler."""

    static_map: list[str]
    notes: list[str]
    needs_handler: bool


def _url_prefix(url: str | None) -> str | None:
    """A served URL prefix from STATIC_URL/MEDIA_URL, or None when it is empty
    or on another host (a CDN), where runserver serves nothing either."""
    if not url or not url.startswith("/") or url.startswith("//"):
        return None
    return url.rstrip("/") or "/"


def _entry(prefix: str, sub: str, folder: str) -> str:
    sub = sub.strip("/")
    return f"{prefix.rstrip('/')}/{sub}={folder}" if sub else f"{prefix}={folder}"


def plan_static(*, finders: bool) -> StaticPlan:
    """The folders to serve: the finders' (``finders=True``) or STATIC_ROOT,
    plus MEDIA_ROOT."""
    entries: list[str] = []
    notes: list[str] = []
    needs_handler = False
    static_prefix = _url_prefix(settings.STATIC_URL)
    if static_prefix is not None:
        if finders:
            if "django.contrib.staticfiles" in settings.INSTALLED_APPS:
                found, needs_handler = _finder_folders(static_prefix)
                entries += found
                notes.append(
                    f"{static_prefix}/ from the staticfiles finders ({len(found)} folders)"
                    + (", the rest through StaticFilesHandler" if needs_handler else "")
                )
        elif settings.STATIC_ROOT:
            root = os.fspath(settings.STATIC_ROOT)
            if os.path.isdir(root):
                entries.append(f"{static_prefix}={root}")
                notes.append(f"{static_prefix}/ from STATIC_ROOT {root}")
            else:
                notes.append(
                    f"STATIC_ROOT {root} does not exist: run `manage.py collectstatic`; "
                    f"{static_prefix}/ is not served"
                )
    media_prefix = _url_prefix(settings.MEDIA_URL)
    if media_prefix is not None and settings.MEDIA_ROOT and media_prefix != static_prefix:
        root = os.fspath(settings.MEDIA_ROOT)
        if os.path.isdir(root):
            entries.append(f"{media_prefix}={root}")
            notes.append(f"{media_prefix}/ from MEDIA_ROOT {root}")
        else:
            notes.append(f"MEDIA_ROOT {root} does not exist; {media_prefix}/ is not served")
    return StaticPlan(entries, notes, needs_handler)


def _finder_folders(prefix: str) -> tuple[list[str], bool]:
    """The finders' folders under ``prefix``, in search order, and whether a
    finder was left that only Django can search."""
    from django.contrib.staticfiles.finders import (
        AppDirectoriesFinder,
        BaseStorageFinder,
        FileSystemFinder,
        get_finders,
    )
    from django.core.files.storage import FileSystemStorage

    entries: list[str] = []
    unmapped = False
    for finder in get_finders():
        if isinstance(finder, FileSystemFinder):
            for sub, root in finder.locations:
                if os.path.isdir(root):
                    entries.append(_entry(prefix, sub, os.fspath(root)))
        elif isinstance(finder, AppDirectoriesFinder):
            for app in finder.apps:
                storage = finder.storages[app]
                sub = getattr(storage, "prefix", None) or ""
                entries.append(_entry(prefix, sub, os.fspath(storage.location)))
        elif isinstance(finder, BaseStorageFinder) and isinstance(
            finder.storage, FileSystemStorage
        ):
            if os.path.isdir(finder.storage.location):
                entries.append(_entry(prefix, "", os.fspath(finder.storage.location)))
        else:
            unmapped = True
    return entries, unmapped
