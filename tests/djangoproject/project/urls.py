"""The test project's URLs: the shop pages and the admin."""

from django.contrib import admin
from django.urls import path
from shop import views

urlpatterns = [
    path("", views.hello, name="hello"),
    path("page/", views.page, name="page"),
    path("items/", views.items, name="items"),
    path("admin/", admin.site.urls),
]
