"""Errors as `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`, and `errors` with one
message per bad field. Every refusal of the API goes through here: the engine's typed errors (each mapped to
one status), ninja's request validation (422), authentication (401) and ninja's own HTTP errors."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError

from partitions.core.encoding import dumps
from partitions.core.exceptions import (
    RUN_OPTIONS,
    DuplicateJob,
    InvalidParams,
    InvalidSchedule,
    InvalidTransition,
    JobNotFound,
    JobTypeNotFound,
    NotPermitted,
    PartitionsError,
    ScheduleNameTaken,
    ScheduleNotFound,
    UnknownReason,
)
from partitions.worker.sample_run import SampleFailed, SampleRefused

MEDIA_TYPE = "application/problem+json"
#: Problem types are relative URIs under the API (RFC 9457 allows them): `/api/v1/problems/<slug>`.
TYPE_BASE = "/api/v1/problems/"
TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 422: "Invalid input"}


class Problem(Schema):
    """An error (RFC 9457); `errors`: one message per bad field (dotted paths for nested ones)."""

    type: str
    title: str
    status: int
    detail: str
    errors: dict[str, str] | None = None


#: The error responses every endpoint declares.
ERRORS = {status: Problem for status in (400, 401, 403, 404, 409, 422)}


class ApiProblem(Exception):
    """A refusal the API itself makes (not the engine's): raised in an endpoint, answered as a problem."""

    def __init__(self, status: int, slug: str, detail: str, errors: dict[str, str] | None = None):
        self.status, self.slug, self.detail, self.errors = status, slug, detail, errors
        super().__init__(detail)


def problem(status: int, slug: str, detail: str, errors: dict[str, str] | None = None) -> HttpResponse:
    """The problem+json response."""
    body = {"type": TYPE_BASE + slug, "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return HttpResponse(dumps(body), status=status, content_type=MEDIA_TYPE)


def field_errors(errors: dict[str, list[str]], *, under: str = "") -> dict[str, str]:
    """A form's errors (field -> messages) as one message per field; `__all__` is the object itself."""
    def name(field: str) -> str:
        if field == "__all__":
            return under or "__all__"
        return f"{under}.{field}" if under else field
    return {name(field): " ".join(messages) for field, messages in errors.items()}


#: The engine's errors: (status, slug), the most specific class first.
ENGINE_ERRORS: list[tuple[type[PartitionsError], int, str]] = [
    (NotPermitted, 403, "not-permitted"),
    (JobNotFound, 404, "job-not-found"),
    (ScheduleNotFound, 404, "schedule-not-found"),
    (JobTypeNotFound, 422, "unknown-job-type"),
    (InvalidTransition, 409, "invalid-transition"),
    (DuplicateJob, 409, "duplicate-job"),
    (ScheduleNameTaken, 409, "schedule-name-taken"),
    (UnknownReason, 422, "unknown-reason"),
    (SampleRefused, 422, "sample-refused"),
    (SampleFailed, 422, "sample-failed"),
    (InvalidParams, 422, "invalid-params"),
    (InvalidSchedule, 422, "invalid-schedule"),
]


def engine_problem(exc: PartitionsError) -> HttpResponse:
    """The response for an engine error (400 for one this table does not name)."""
    status, slug = next(((status, slug) for cls, status, slug in ENGINE_ERRORS if isinstance(exc, cls)),
                        (400, "refused"))
    errors = None
    if isinstance(exc, InvalidParams):
        errors = field_errors(exc.errors, under="" if exc.job_type == RUN_OPTIONS else "params")
    elif isinstance(exc, InvalidSchedule):
        errors = field_errors(exc.errors)
    elif isinstance(exc, JobTypeNotFound):
        errors = {"type": str(exc)}
    elif isinstance(exc, UnknownReason):
        errors = {"reason": str(exc)}
    return problem(status, slug, str(exc), errors)


def _location(loc: tuple | list) -> str:
    """A pydantic error location as a field path: `body.payload.params.x` -> `params.x`, `query.limit` -> `limit`."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie", "form"}:
        parts = parts[1:]
        if loc[0] == "body" and parts and parts[0] == "payload":
            parts = parts[1:]
    return ".".join(parts) or "body"


def validation_problem(exc: ValidationError) -> HttpResponse:
    """Ninja's request validation: one message per field (the first pydantic gives for it)."""
    errors: dict[str, str] = {}
    for error in exc.errors:
        errors.setdefault(_location(error.get("loc", ())), str(error.get("msg", "invalid")))
    detail = "; ".join(f"{field}: {message}" for field, message in errors.items())
    return problem(422, "invalid-request", f"invalid request: {detail}", errors)


def install(api: NinjaAPI) -> None:
    """Answer every error of `api` as a problem."""
    def on_engine(request: HttpRequest, exc: PartitionsError) -> HttpResponse:
        return engine_problem(exc)

    def on_api(request: HttpRequest, exc: ApiProblem) -> HttpResponse:
        return problem(exc.status, exc.slug, exc.detail, exc.errors)

    def on_validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        return validation_problem(exc)

    def on_auth(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        response = problem(401, "not-authenticated", "Send `Authorization: Bearer <token>` (an API token from the "
                                                    "admin) or log in to the admin.")
        response["WWW-Authenticate"] = "Bearer"
        return response

    def on_http(request: HttpRequest, exc: HttpError) -> HttpResponse:
        slug = "csrf-failed" if exc.status_code == 403 and "CSRF" in str(exc) else "http-error"
        detail = ("CSRF check failed: a browser session must send the X-CSRFToken header on unsafe methods; "
                  "use a token instead" if slug == "csrf-failed" else str(exc))
        return problem(exc.status_code, slug, detail)

    def on_404(request: HttpRequest, exc: Http404) -> HttpResponse:
        return problem(404, "not-found", str(exc) or "not found")

    api.add_exception_handler(PartitionsError, on_engine)
    api.add_exception_handler(ApiProblem, on_api)
    api.add_exception_handler(ValidationError, on_validation)
    api.add_exception_handler(AuthenticationError, on_auth)
    api.add_exception_handler(HttpError, on_http)
    api.add_exception_handler(Http404, on_404)

