"""Operational endpoints."""

import logging
from pathlib import Path

from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)


@require_safe
def healthz(request):
    """200 when the database answers a query, else 503.

    Anyone may call this, so the answer never carries the database error (it names the
    socket or host, port, database and role); the log gets it.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("healthz: database unavailable: %s", str(exc).strip())
        return JsonResponse({"database": "unavailable"}, status=503)
    return JsonResponse({"database": "ok"})


FAVICON = Path(__file__).resolve().parent / "static" / "opsapp" / "favicon.ico"


@require_safe
@cache_control(max_age=86400, public=True)
def favicon(request):
    """The console's icon at the path browsers ask for on every page (also served as static opsapp/favicon.ico)."""
    return HttpResponse(FAVICON.read_bytes(), content_type="image/x-icon")
