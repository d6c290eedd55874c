"""The three views: ``/hello/``, ``/json/``, ``/template/``."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("hello/", views.hello, name="hello"),
    path("json/", views.json, name="json"),
    path("template/", views.template, name="template"),
]
