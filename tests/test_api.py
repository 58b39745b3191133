"""The JSON API (`partitions.httpapi`): tokens, session and CSRF, the read endpoints' keyset pages, the start
with its Idempotency-Key, the actions through the services (their audit events name the user), and errors as
problem+json with one message per bad field, writing nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from partitions.httpapi.tokens import token_create, token_revoke, token_user
from partitions.models import ApiIdempotencyKey, ApiToken, Job, JobEvent
from tests.conftest import make_staff
from tests.factories import make_job, make_partition, make_subjob

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher")]

API = "/api/v1"
PROBLEM = "application/problem+json"
ITEMS = {"count": 3, "chunk_size": 1}
REASON = "ValueError: no tax for this region"


class Api:
    """A client with a bearer token: `get`/`post`/`delete` a path under /api/v1 and get (status, JSON)."""

    def __init__(self, token: str | None, client: Client | None = None):
        self.client = client or Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def call(self, method: str, path: str, body: Any = None, **headers: str):
        kwargs: dict[str, Any] = {"headers": {**self.headers, **headers}}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/json")
        response = getattr(self.client, method)(API + path, **kwargs)
        return response.status_code, (json.loads(response.content) if response.content else None), response

    def get(self, path: str, **headers: str):
        return self.call("get", path, **headers)

    def post(self, path: str, body: Any = None, **headers: str):
        return self.call("post", path, {} if body is None else body, **headers)

    def delete(self, path: str, **headers: str):
        return self.call("delete", path, **headers)


@pytest.fixture
def operator_api(operator) -> Api:
    return Api(token_create(operator, "ci")[1])


def test_a_token_is_kept_hashed_and_found_by_its_prefix(operator):
    token, plaintext = token_create(operator, "ci")
    assert plaintext not in token.secret_hash and token.prefix in plaintext
    assert ApiToken.objects.filter(secret_hash=plaintext).count() == 0
    assert token_user(plaintext) == operator
    assert token_user(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    assert token_user("pt_nothing") is None and token_user("") is None
    assert token_revoke(token) and not token_revoke(token)
    assert token_user(plaintext) is None


def test_the_job_list_is_keyset_paged_newest_first(operator_api):
    jobs = [make_job(status="pending", type_name="tests.items_serial", params=ITEMS) for _ in range(5)]
    status, page, _ = operator_api.get("/jobs?limit=2")
    assert status == 200
    assert [j["id"] for j in page["items"]] == [jobs[4].pk, jobs[3].pk] and page["next_after"] == jobs[3].pk
    seen = [j["id"] for j in page["items"]]
    while page["next_after"] is not None:
        status, page, _ = operator_api.get(f"/jobs?limit=2&after={page['next_after']}")
        seen += [j["id"] for j in page["items"]]
    assert seen == [job.pk for job in reversed(jobs)]


def test_the_status_has_the_figures_of_jobs_status_json(operator_api):
    from partitions.management.cli_output import job_summary
    from partitions.statistics import job_run_statistics

    job = make_job(status="running", type_name="tests.items_serial", params=ITEMS)
    make_partition(job, kind="items", status="running", estimated_items=3, done_items=1)
    status, body, response = operator_api.get(f"/jobs/{job.pk}")
    assert status == 200 and response["Content-Type"].startswith("application/json")
    expected = json.loads(json.dumps({**job_summary(job), "statistics": job_run_statistics(job)}, default=str))
    for key in ("items_total", "items_done", "percent", "partitions", "verdict", "limited_by", "live_leases"):
        assert body[key] == expected[key], key


def test_the_schema_is_openapi_3_1_with_problem_errors(operator_api):
    response = Client().get(f"{API}/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.1")
    errors = schema["paths"]["/api/v1/jobs"]["post"]["responses"]["422"]["content"]
    assert list(errors) == [PROBLEM]
