from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from opsapp.views import favicon, healthz
from partitions.httpapi.site import api
from partitions.views import metrics

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("favicon.ico", favicon, name="favicon"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]
