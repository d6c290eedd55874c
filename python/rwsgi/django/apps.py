"""The Django app config that makes ``manage.py rwsgi_serve`` available."""

from __future__ import annotations

from django.apps import AppConfig


class RwsgiConfig(AppConfig):
    """rwsgi's Django app: it has no models, only the ``rwsgi_serve`` command."""

    name = "rwsgi.django"
    label = "rwsgi"
    verbose_name = "rwsgi"
