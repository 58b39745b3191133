"""Operational endpoints."""

import logging

from django.db import DatabaseError, connection
from django.http import JsonResponse
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
