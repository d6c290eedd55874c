"""The views of the Django scenarios (``django_hello``, ``django_json``,
``django_template``); their data is built once, at import, in ``data.py``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from . import data


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello, world!")


def json(request: HttpRequest) -> JsonResponse:
    """A small API answer: 20 keys, one of them a list of 5 objects."""
    return JsonResponse(data.JSON)


def template(request: HttpRequest) -> HttpResponse:
    """An HTML page: ``table.html`` extends ``base.html`` and loops over
    ``data.ROWS`` (200 orders) with a few filters per cell."""
    return render(request, "table.html", {"title": "recent orders", "rows": data.ROWS})
