"""The bench project as ``manage.py rwsgi_serve --noreload`` serves it in
production (``DJANGO_SETTINGS_MODULE=djangoproject.settings_rwsgi``): the
base settings plus ``rwsgi.django`` in INSTALLED_APPS (for the command) and
STATIC_ROOT set to ``static/``, which the command serves under STATIC_URL with
DEBUG off. Only ``benches/django_static.py`` uses it: the base settings stay
importable where that app is not installed.
"""

from __future__ import annotations

from .settings import *  # noqa: F403 (a settings variant is the base plus changes)
from .settings import BASE_DIR, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "rwsgi.django"]

STATIC_ROOT = BASE_DIR / "static"
