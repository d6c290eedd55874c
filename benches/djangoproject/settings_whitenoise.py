"""The bench project as a gunicorn + whitenoise deployment serves it
(``DJANGO_SETTINGS_MODULE=djangoproject.settings_whitenoise``): the base
settings, STATIC_ROOT set to ``static/`` (what ``collectstatic`` would fill;
the bench's files are already there) and WhiteNoiseMiddleware right after
SecurityMiddleware, as whitenoise's documentation places it.

``benches/django_static.py`` runs gunicorn with it, on the Django rows too:
a view then pays the middleware's check of the path, as it does in such a
deployment.
"""

from __future__ import annotations

from .settings import *  # noqa: F403 (a settings variant is the base plus changes)
from .settings import BASE_DIR, MIDDLEWARE

STATIC_ROOT = BASE_DIR / "static"

MIDDLEWARE = [MIDDLEWARE[0], "whitenoise.middleware.WhiteNoiseMiddleware", *MIDDLEWARE[1:]]
