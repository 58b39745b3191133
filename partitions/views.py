"""`/metrics`: Prometheus text for dashboards and alerts (see partitions.metrics), for scrapers or staff."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from partitions.metrics import metrics_text


def _utf8(text: str) -> bytes:
    # compare_digest refuses non-ASCII str, and a header may hold any str (even a lone surrogate).
    return text.encode("utf-8", "surrogatepass")


def _allowed(request: HttpRequest) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    if token:  # `Authorization: Bearer <token>` only: a bare token or another scheme is refused
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(_utf8(given), _utf8(token))
    return request.user.is_authenticated and request.user.is_staff


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """The engine's metrics, read from the database now; 403 without the bearer token or a staff session."""
    if not _allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
