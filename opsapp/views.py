"""Operational endpoints."""

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.http import require_safe


@require_safe
def healthz(request):
    """200 when the database answers a query, 503 with the reason when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return JsonResponse({"database": "unavailable", "error": str(exc).strip()[:500]}, status=503)
    return JsonResponse({"database": "ok"})
