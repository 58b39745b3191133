"""Project-wide request guards."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

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
