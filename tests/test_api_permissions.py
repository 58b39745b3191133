"""The API's permission matrix: every user kind against every endpoint, with a token and with the session.

The rule is the admin's (`partitions.permissions`, the same table `tests/test_permission_matrix.py` writes out):
a kind's right decides, and a refusal writes nothing. With a token: no token (or a revoked one, or an inactive
user's) is a 401, a missing right a 403, both as problem+json. With the session: reads work as they do in the
admin, and an unsafe method needs the CSRF token; a token request needs none and ignores the session cookie.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from partitions.httpapi.tokens import token_create, token_revoke
from partitions.models import Job
from partitions.permissions import Action
from tests.factories import make_job
from tests.test_api import ITEMS, PROBLEM, REASON, Api
from tests.test_permission_matrix import KINDS, job_in, snapshot, user_of
from tests.test_permission_matrix import has_rights as may_act

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher")]

#: What each kind holds of the view permissions (the kinds of test_permission_matrix; anonymous: nothing).
VIEW = {"view_job", "view_partition", "view_subjob", "view_jobevent", "view_jobschedule"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: Callable[[Job], str]
    #: A read's view permission, or the action whose rule decides.
    needs: str | Action
    body: dict[str, Any] | None = None
    #: The job's status the action applies in (so only the right decides).
    status: str = "running"


def schedule_body(name: str) -> dict[str, Any]:
    return {"name": name, "type": "tests.items_serial", "params": ITEMS, "cron": "0 2 * * *"}


ENDPOINTS = {
    "job-types": Endpoint("get", lambda j: "/job-types", "view_job"),
    "jobs": Endpoint("get", lambda j: "/jobs", "view_job"),
    "job": Endpoint("get", lambda j: f"/jobs/{j.pk}", "view_job"),
    "partitions": Endpoint("get", lambda j: f"/jobs/{j.pk}/partitions", "view_partition"),
    "events": Endpoint("get", lambda j: f"/jobs/{j.pk}/events", "view_jobevent"),
    "failures": Endpoint("get", lambda j: f"/jobs/{j.pk}/failures", Action.VIEW_FAILURES),
    "failed-items": Endpoint("get", lambda j: f"/jobs/{j.pk}/failures/items?reason={REASON}", Action.VIEW_FAILURES),
    "schedules": Endpoint("get", lambda j: "/schedules", "view_jobschedule"),
    "start": Endpoint("post", lambda j: "/jobs", Action.START, {"type": "tests.items_serial", "params": ITEMS}),
    "dry-run": Endpoint("post", lambda j: "/jobs", Action.START,
                        {"type": "tests.items_serial", "params": ITEMS, "dry_run": True}),
    "pause": Endpoint("post", lambda j: f"/jobs/{j.pk}/pause", Action.PAUSE, {}),
    "resume": Endpoint("post", lambda j: f"/jobs/{j.pk}/resume", Action.RESUME, {}, status="paused"),
    "cancel": Endpoint("post", lambda j: f"/jobs/{j.pk}/cancel", Action.CANCEL, {"reason": "matrix"}),
    "retry": Endpoint("post", lambda j: f"/jobs/{j.pk}/retry", Action.RETRY, {"what": "partitions"}),
    "retry-reason": Endpoint("post", lambda j: f"/jobs/{j.pk}/retry", Action.RETRY, {"reason": REASON}),
    "skip": Endpoint("post", lambda j: f"/jobs/{j.pk}/skip", Action.SKIP, {"reason": REASON, "note": "known"}),
    "throttle": Endpoint("post", lambda j: f"/jobs/{j.pk}/throttle", Action.THROTTLE, {"rate_limit": 5}),
    "set": Endpoint("post", lambda j: f"/jobs/{j.pk}/set", Action.KNOB, {"max_parallel": 7}),
    "schedule-create": Endpoint("post", lambda j: "/schedules", Action.SCHEDULE_CREATE, schedule_body("new")),
    "schedule-pause": Endpoint("post", lambda j: "/schedules/nightly/pause", Action.SCHEDULE_PAUSE, {}),
    "schedule-resume": Endpoint("post", lambda j: "/schedules/nightly/resume", Action.SCHEDULE_RESUME, {}),
    "schedule-delete": Endpoint("delete", lambda j: "/schedules/nightly", Action.SCHEDULE_DELETE),
}


def allowed(kind: str, endpoint: Endpoint) -> bool:
    if kind in ("anonymous", "inactive_operator"):
        return False
    if isinstance(endpoint.needs, Action):
        return may_act(kind, endpoint.needs)
    return kind == "superuser" or endpoint.needs in VIEW


def setting(endpoint: Endpoint) -> Job:
    """A job for the endpoint (a failed item of REASON to act on) and a paused schedule `nightly`."""
    from partitions.operations import schedules
    from partitions.operations.cadence import CRON, Cadence

    schedules.schedule_create(actor="cli", name="nightly", type_name="tests.items_serial", params=ITEMS,
                              cadence=Cadence(kind=CRON, cron="0 2 * * *"))
    if endpoint.needs == Action.SCHEDULE_RESUME:
        schedules.schedule_pause("nightly", actor="cli")
    return job_in(endpoint.status)


def call(api: Api, endpoint: Endpoint, job: Job):
    if endpoint.method == "get":
        return api.get(endpoint.path(job))
    if endpoint.method == "delete":
        return api.delete(endpoint.path(job))
    return api.post(endpoint.path(job), endpoint.body)


def token_of(user: Any) -> str | None:
    return token_create(user, "matrix")[1] if user.is_authenticated else None


@pytest.mark.parametrize("name", list(ENDPOINTS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_token_may_what_its_user_may_and_a_refusal_writes_nothing(kind, name):
    endpoint = ENDPOINTS[name]
    job = setting(endpoint)
    api = Api(token_of(user_of(kind)))
    before = snapshot()
    status, body, response = call(api, endpoint, job)
    if allowed(kind, endpoint):
        assert status in (200, 201, 204), (status, body)
        return
    assert status == (403 if kind in ("superuser", "operator", "starter", "viewer") else 401), body
    assert response["Content-Type"] == PROBLEM and body["status"] == status
    assert snapshot() == before


def test_a_revoked_token_is_refused(operator):
    token, plaintext = token_create(operator, "old")
    assert Api(plaintext).get("/jobs")[0] == 200
    token_revoke(token)
    status, _, response = Api(plaintext).get("/jobs")
    assert status == 401 and response["WWW-Authenticate"] == "Bearer" and response["Content-Type"] == PROBLEM


@pytest.mark.parametrize("header", ["Bearer", "Bearer nonsense", "Basic b3BlcmF0b3I6eA==", "Token pt_x_y"])
def test_a_malformed_authorization_is_a_401_even_with_a_session(operator, header):
    client = Client()
    client.force_login(operator)  # a valid session beside a bad token does not let the request in
    response = client.get("/api/v1/jobs", headers={"Authorization": header})
    assert response.status_code == 401


def session_client(user: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_the_session_reads_and_needs_the_csrf_token_for_a_post(operator, admin_env):
    job = make_job(status="running", type_name="tests.items_serial", params=ITEMS)
    client = session_client(operator)
    assert client.get("/api/v1/jobs").status_code == 200
    before = snapshot()
    refused = client.post(f"/api/v1/jobs/{job.pk}/pause", "{}", content_type="application/json")
    assert refused.status_code == 403 and refused["Content-Type"] == PROBLEM
    assert refused.json()["type"].endswith("/csrf-failed") and snapshot() == before
    client.get("/admin/")  # the admin's page sets the CSRF cookie, as a browser gets it
    token = client.cookies["csrftoken"].value
    paused = client.post(f"/api/v1/jobs/{job.pk}/pause", "{}", content_type="application/json",
                         headers={"X-CSRFToken": token})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"


def test_a_token_post_needs_no_csrf_token_and_ignores_the_session(operator, viewer):
    job = make_job(status="running", type_name="tests.items_serial", params=ITEMS)
    client = session_client(viewer)  # the viewer's cookie may not pause; the operator's token may
    api = Api(token_create(operator, "ci")[1], client=client)
    status, body, _ = api.post(f"/jobs/{job.pk}/pause")
    assert status == 200 and body["status"] == "paused"


