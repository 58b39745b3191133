"""The NinjaAPI behind `/api/v1/`: its routers, its auth (a token or the session, see `auth`), its errors as
problem+json (`problems`), and its OpenAPI 3.1 schema at `/api/v1/openapi.json` (no browsable docs page: it
would load scripts from elsewhere, which the content security policy forbids)."""

from __future__ import annotations

from typing import Any

from ninja import NinjaAPI

from partitions.httpapi import jobs, problems, schedules
from partitions.httpapi.auth import AUTH

DESCRIPTION = ("Start, watch and steer partitioned jobs. Authenticate with `Authorization: Bearer <token>` (an API "
               "token from the admin's API tokens page) or the admin's session (with the CSRF header on unsafe "
               "methods). Errors are application/problem+json (RFC 9457). Lists are keyset pages: pass a page's "
               "`next_after` as `after` for the next one.")


class Api(NinjaAPI):
    """NinjaAPI whose schema declares every error response as application/problem+json."""

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The schema, error responses re-typed as problem+json (ninja writes application/json)."""
        schema = super().get_openapi_schema(*args, **kwargs)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if int(status) >= 400 and "application/json" in content:
                        response["content"] = {problems.MEDIA_TYPE: content["application/json"]}
        return schema


api = Api(title="Partitioned jobs API", version="1", description=DESCRIPTION, auth=AUTH, docs_url=None,
          urls_namespace="api-v1")
problems.install(api)
api.add_router("", jobs.router)
api.add_router("", schedules.router)
