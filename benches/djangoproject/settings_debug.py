"""The bench project as ``manage.py runserver`` serves it in development
(``DJANGO_SETTINGS_MODULE=djangoproject.settings_debug``): DEBUG on, so
runserver's staticfiles handler serves what the finders find, and ``static/``
among STATICFILES_DIRS for them to find it.
"""

from __future__ import annotations

from .settings import *  # noqa: F403 (a settings variant is the base plus changes)
from .settings import BASE_DIR

DEBUG = True

STATICFILES_DIRS = [BASE_DIR / "static"]
