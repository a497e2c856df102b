"""URLs of the example project."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("downloads/<str:name>", views.download),
    path("healthz", views.healthz),
    path("search", views.search),
    path("export", views.export),
    path("logout", views.logout),
    path("async-export", views.async_export),
]
