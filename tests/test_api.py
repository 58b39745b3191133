"""The JSON API (`partitions.httpapi`): tokens, session and CSRF, the read endpoints' keyset pages, the start
with its Idempotency-Key, the actions through the services (their audit events name the user), and errors as
problem+json with one message per bad field, writing nothing."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from partitions.httpapi.tokens import token_create, token_revoke, token_user
from partitions.models import ApiIdempotencyKey, ApiToken, Job, JobEvent
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
    from partitions.reads.statistics import job_run_statistics

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


# Starting ---------------------------------------------------------------------------------------------------------


def start_body(**overrides: Any) -> dict[str, Any]:
    return {"type": "tests.items_serial", "params": ITEMS, **overrides}


def test_a_start_is_the_service_s_with_the_user_as_actor(operator, operator_api):
    status, body, _ = operator_api.post("/jobs", start_body(max_parallel=2))
    assert status == 201 and body["created"] is True and body["status"] == "pending"
    job = Job.objects.get(pk=body["id"])
    assert job.created_by == operator and job.max_parallel == 2
    created = JobEvent.objects.get(job=job, type="job_created")
    assert created.actor == "user:operator" and created.actor_user == operator


def test_a_retried_start_with_the_same_idempotency_key_returns_the_same_job(operator_api):
    status, first, _ = operator_api.post("/jobs", start_body(), **{"Idempotency-Key": "deploy-42"})
    assert status == 201
    status, again, _ = operator_api.post("/jobs", start_body(), **{"Idempotency-Key": "deploy-42"})
    assert status == 200 and again["id"] == first["id"] and again["created"] is False
    Job.objects.filter(pk=first["id"]).update(status="succeeded", finished_at="2020-01-01T00:00:00Z")
    status, after_end, _ = operator_api.post("/jobs", start_body(), **{"Idempotency-Key": "deploy-42"})
    assert status == 200 and after_end["id"] == first["id"]  # the key is kept, not only while the job runs
    assert Job.objects.count() == 1 and ApiIdempotencyKey.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_refused_and_writes_nothing(operator_api):
    operator_api.post("/jobs", start_body(), **{"Idempotency-Key": "deploy-42"})
    status, problem, response = operator_api.post("/jobs", start_body(max_parallel=3),
                                                  **{"Idempotency-Key": "deploy-42"})
    assert status == 422 and response["Content-Type"] == PROBLEM
    assert problem["type"].endswith("/idempotency-key-reused") and "Idempotency-Key" in problem["errors"]
    assert Job.objects.count() == 1


def test_another_user_s_key_is_theirs(operator_api, superuser):
    operator_api.post("/jobs", start_body(), **{"Idempotency-Key": "k"})
    status = Api(token_create(superuser, "x")[1]).post("/jobs", start_body(), **{"Idempotency-Key": "k"})[0]
    assert status == 201 and Job.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_with_one_idempotency_key_make_one_job(operator):
    """Five requests at once with one key (a client retrying over a flaky network): one job, one key row, and
    every request answers with that job."""
    token = token_create(operator, "ci")[1]
    barrier, answers = threading.Barrier(5), []

    def post() -> None:
        try:
            barrier.wait()
            answers.append(Api(token).post("/jobs", {"type": "tests.items_serial", "params": ITEMS},
                                           **{"Idempotency-Key": "deploy-7"})[:2])
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert Job.objects.count() == 1 and ApiIdempotencyKey.objects.count() == 1
    job = Job.objects.get()
    assert sorted(status for status, _ in answers) == [200, 200, 200, 200, 201]
    assert {body["id"] for _, body in answers} == {job.pk}


def test_a_dry_run_plans_and_writes_nothing(operator_api):
    status, body, _ = operator_api.post("/jobs", start_body(dry_run=True))
    assert status == 200 and body["dry_run"] is True
    assert len(body["partitions"]) == 3 and body["estimate"]["runs"] == 0
    assert Job.objects.count() == 0


def test_a_sample_needs_a_dry_run(operator_api):
    status, problem, _ = operator_api.post("/jobs", start_body(sample=1))
    assert status == 422 and set(problem["errors"]) == {"sample"} and Job.objects.count() == 0


@pytest.mark.parametrize(("body", "fields"), [
    (start_body(params={"count": -1, "chunk_size": "x"}), {"params.count", "params.chunk_size"}),
    (start_body(params={**ITEMS, "colour": "red"}), {"params.colour"}),
    (start_body(type="tests.nope"), {"type"}),
    (start_body(max_parallel=-1, priority=10**6), {"max_parallel", "priority"}),
    (start_body(deadline="2001-01-01T00:00:00Z"), {"deadline"}),
    (start_body(max_parallel="many"), {"max_parallel"}),
    ({"params": ITEMS}, {"type"}),
])
def test_bad_input_is_one_problem_with_a_message_per_field_and_writes_nothing(operator_api, body, fields):
    status, problem, response = operator_api.post("/jobs", body)
    assert status == 422 and response["Content-Type"] == PROBLEM
    assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == 422
    assert set(problem["errors"]) == fields
    assert all(isinstance(message, str) and message for message in problem["errors"].values())
    assert Job.objects.count() == 0 and JobEvent.objects.count() == 0


def test_an_unknown_job_is_a_404_problem(operator_api):
    status, problem, response = operator_api.get("/jobs/999999")
    assert status == 404 and response["Content-Type"] == PROBLEM and "999999" in problem["detail"]


# Steering ---------------------------------------------------------------------------------------------------------


def failed_job() -> Job:
    job = make_job(status="running", type_name="tests.items_serial", params=ITEMS)
    partition = make_partition(job, kind="items", status="failed", estimated_items=1, last_error="boom")
    make_subjob(partition, status="failed", error=REASON, reason=REASON)
    return job


def events_of(job: Job, type_: str) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job=job, type=type_))


def test_pause_resume_cancel_are_the_services_audited_with_the_user(operator_api):
    job = make_job(status="running", type_name="tests.items_serial", params=ITEMS)
    status, body, _ = operator_api.post(f"/jobs/{job.pk}/pause")
    assert status == 200 and body["status"] == "paused"
    assert operator_api.post(f"/jobs/{job.pk}/pause")[0] == 409  # already paused
    assert operator_api.post(f"/jobs/{job.pk}/resume")[1]["status"] == "running"
    status, body, _ = operator_api.post(f"/jobs/{job.pk}/cancel", {"reason": "wrong month"})
    assert status == 200 and body["status"] == "cancelled"
    for type_ in ("job_paused", "job_resumed", "job_cancelled"):
        assert [e.actor for e in events_of(job, type_)] == ["user:operator"], type_
    status, problem, _ = operator_api.post(f"/jobs/{job.pk}/resume")
    assert status == 409 and problem["type"].endswith("/invalid-transition")


def test_failures_retry_and_skip_by_reason(operator_api):
    job = failed_job()
    status, failures, _ = operator_api.get(f"/jobs/{job.pk}/failures")
    assert status == 200 and failures["total"] == 1 and failures["groups"][0]["reason"] == REASON
    status, items, _ = operator_api.get(f"/jobs/{job.pk}/failures/items?reason={REASON}")
    assert status == 200 and [i["status"] for i in items["items"]] == ["failed"]
    status, problem, _ = operator_api.post(f"/jobs/{job.pk}/skip", {"reason": "nope", "note": "x"})
    assert status == 422 and set(problem["errors"]) == {"reason"}
    status, body, _ = operator_api.post(f"/jobs/{job.pk}/skip", {"reason": REASON, "note": "known"})
    assert status == 200 and body["skipped"] == 1
    status, body, _ = operator_api.post(f"/jobs/{job.pk}/retry", {"reason": REASON})
    assert status == 200 and body == {"job": job.pk, "what": "subjobs", "retried": 1}
    assert [e.actor for e in events_of(job, "subjobs_retried")] == ["user:operator"]


def test_retry_of_failed_partitions(operator_api):
    job = failed_job()
    status, body, _ = operator_api.post(f"/jobs/{job.pk}/retry", {"what": "partitions"})
    assert status == 200 and body["retried"] == 1
    assert [e.actor for e in events_of(job, "partition_retried")] == ["user:operator"]


def test_throttle_and_set(operator_api):
    job = make_job(status="running", type_name="tests.items_serial", params=ITEMS)
    status, body, _ = operator_api.post(f"/jobs/{job.pk}/throttle", {"rate_limit": 5, "pause_ms": 10})
    assert status == 200 and body["throttle"]["rate_limit"] == 5 and body["throttle"]["pause_ms"] == 10
    status, body, _ = operator_api.post(f"/jobs/{job.pk}/throttle", {"rate_limit": None})
    assert status == 200 and body["throttle"]["rate_limit"] is None and body["throttle"]["pause_ms"] == 10
    status, problem, _ = operator_api.post(f"/jobs/{job.pk}/throttle", {"pause_ms": 10**9})
    assert status == 422 and set(problem["errors"]) == {"pause_ms"}
    status, body, _ = operator_api.post(f"/jobs/{job.pk}/set", {"max_parallel": 7})
    assert status == 200 and body["max_parallel"] == 7
    status, problem, _ = operator_api.post(f"/jobs/{job.pk}/set", {})
    assert status == 422
    assert [e.actor for e in events_of(job, "job_settings_changed")] == ["user:operator"]
    assert [e.actor for e in events_of(job, "job_throttle_changed")] == ["user:operator"] * 2


def test_partitions_and_events_are_keyset_pages(operator_api):
    job = make_job(status="running", type_name="tests.items_serial", params=ITEMS)
    for seq in range(3):
        make_partition(job, seq=seq, kind="items", estimated_items=1)
    page = operator_api.get(f"/jobs/{job.pk}/partitions?limit=2")[1]
    assert [p["seq"] for p in page["items"]] == [0, 1] and page["next_after"] == 1
    page = operator_api.get(f"/jobs/{job.pk}/partitions?limit=2&after=1")[1]
    assert [p["seq"] for p in page["items"]] == [2] and page["next_after"] is None
    events = list(JobEvent.objects.filter(job=job).order_by("id").values_list("id", flat=True))
    page = operator_api.get(f"/jobs/{job.pk}/events?limit=1")[1]
    assert [e["id"] for e in page["items"]] == events[:1]
    page = operator_api.get(f"/jobs/{job.pk}/events?after={events[0]}&limit=200")[1]
    assert [e["id"] for e in page["items"]] == events[1:] and page["next_after"] is None


def test_a_limit_past_the_maximum_is_refused(operator_api):
    status, problem, _ = operator_api.get("/jobs?limit=100000")
    assert status == 422 and set(problem["errors"]) == {"limit"}


def test_job_types_carry_their_params_schema(operator_api):
    types = operator_api.get("/job-types")[1]
    invoices = next(t for t in types if t["name"] == "billing.send_invoices")
    schema = invoices["params_schema"]
    assert schema["required"] == ["period"] and schema["properties"]["work_ms"]["maximum"] == 10_000
    assert schema["properties"]["fail_rate"]["type"] == "number"


# Schedules --------------------------------------------------------------------------------------------------------


def test_schedules_create_list_pause_delete(superuser):
    api = Api(token_create(superuser, "x")[1])
    body = {"name": "nightly", "type": "tests.items_serial", "params": ITEMS, "cron": "0 2 * * *"}
    status, created, _ = api.post("/schedules", body)
    assert status == 201 and created["enabled"] is True
    assert api.post("/schedules", body)[0] == 409
    status, problem, _ = api.post("/schedules", {**body, "name": "other", "every": "5m"})
    assert status == 422 and set(problem["errors"]) == {"cron", "every"}
    status, page, _ = api.get("/schedules")
    assert [s["name"] for s in page["items"]] == ["nightly"]
    status, paused, _ = api.post("/schedules/nightly/pause", {"reason": "holiday"})
    assert status == 200 and paused["enabled"] is False and paused["paused_reason"] == "holiday"
    assert api.post("/schedules/nightly/resume")[1]["enabled"] is True
    status, _, _ = api.delete("/schedules/nightly")
    assert status == 204 and api.delete("/schedules/nightly")[0] == 404


# Tokens in the admin ----------------------------------------------------------------------------------------------


def test_the_admin_creates_a_token_shows_it_once_and_revokes_it(superuser, admin_env):
    client = Client()
    client.force_login(superuser)
    response = client.post("/admin/partitions/apitoken/add/", {"name": "ci", "user": superuser.pk}, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    plaintext = next(word for text in shown for word in text.split() if word.startswith("pt_"))
    token = ApiToken.objects.get()
    assert token_user(plaintext) == superuser and plaintext not in str(token.__dict__)
    page = client.get(f"/admin/partitions/apitoken/{token.pk}/change/")
    assert plaintext not in page.content.decode()  # shown once: never again
    client.post("/admin/partitions/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert token_user(plaintext) is None and ApiToken.objects.get().revoked_at is not None


def test_a_nul_character_is_refused_as_a_problem(operator_api):
    status, problem, response = operator_api.get("/jobs?type=a%00b")
    assert status == 400 and response["Content-Type"] == PROBLEM and problem["type"].endswith("/nul-character")
