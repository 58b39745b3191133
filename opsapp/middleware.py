"""Project-wide request guards."""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from partitions.engine import failover
from partitions.httpapi.problems import problem

NUL_REFUSED = "NUL characters are not allowed in a request."
#: Where the JSON API is mounted (opsapp/urls.py).
API_PREFIX = "/api/"


class RejectNulBytes:
    """400 for a query string or form field holding a NUL character.

    PostgreSQL text cannot store NUL, so such a value reaching any filter, search box or form would end in a
    DataError (a 500) rather than a clear refusal; no legitimate input contains one.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _has_nul(request.GET) or (request.method == "POST" and _has_nul(request.POST)):
            if request.path.startswith(API_PREFIX):  # the API answers every refusal as problem+json
                return problem(400, "nul-character", NUL_REFUSED)
            return HttpResponseBadRequest(f"{NUL_REFUSED}\n", content_type="text/plain")
        return self.get_response(request)


def _has_nul(data) -> bool:
    return any("\x00" in key or any("\x00" in value for value in data.getlist(key)) for key in data)


class DropLostDatabase:
    """A request that failed because the database is gone or read-only (a failover) drops the connections, so the
    next request connects again, to the new primary.

    Django's own per-request check keeps a connection that still answers `SELECT 1`, which a server that is a
    standby now (SQLSTATE 25006 on every write) does; a connection to a dead server it closes by itself.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if failover.database_lost(exception):
            for alias in connections:
                failover.connection_drop(f"request {request.path}", exception, alias)
