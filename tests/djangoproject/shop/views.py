"""The views the tests request; test_django rewrites this file (in a copy) to
prove autoreload."""

from django.http import HttpResponse
from django.shortcuts import render

from shop.models import Item

VERSION = "v0"


def hello(request):
    return HttpResponse(f"hello {VERSION}", content_type="text/plain")


def page(request):
    return render(request, "shop/page.html", {"version": VERSION})


def items(request):
    return HttpResponse(",".join(item.name for item in Item.objects.order_by("name")))
