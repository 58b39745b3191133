"""Schemathesis fuzzes every endpoint of the API from the schema it serves (`/api/v1/openapi.json`), against the
project's own WSGI application in this process, with a superuser's token (so no request stops at a 403): no
request may end in a server error (5xx), and every response must match the schema (status code, content type
and body; errors are problem+json). The examples per endpoint are bounded, so it runs in the fast lane."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from opsapp.wsgi import application
from partitions.httpapi.tokens import token_create
from partitions.models import Job
from partitions.operations import schedules
from partitions.operations.cadence import CRON, Cadence
from tests.factories import make_job, make_partition, make_subjob
from tests.test_api import ITEMS, REASON

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher")]

#: Examples per endpoint: enough to reach each field's bounds and types, few enough for the fast lane.
EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def wsgi_in_test(settings):
    """The WSGI application served inside the test's transaction: as Django's test client does, the end of a
    request does not close the test's database connection, and the test host is allowed, over plain HTTP."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    settings.SECURE_SSL_REDIRECT = False
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(superuser) -> str:
    """A superuser's token, and rows for the fuzzed ids to find: jobs with a failed item, and a schedule."""
    for status in ("running", "paused", "failed"):
        job = make_job(status=status, type_name="tests.items_serial", params=ITEMS)
        partition = make_partition(job, kind="items", status="failed", estimated_items=1, last_error="boom")
        make_subjob(partition, status="failed", error=REASON, reason=REASON)
    schedules.schedule_create(actor="fuzz", name="nightly", type_name="tests.items_serial", params=ITEMS,
                              cadence=Cadence(kind=CRON, cron="0 2 * * *"))
    return token_create(superuser, "fuzz")[1]


#: The served schema, read through the WSGI application as a client reads it (no database is needed for it).
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_server_error_and_no_schema_violation(case, token, wsgi_in_test):
    aim_at_rows(case)
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


def aim_at_rows(case) -> None:
    """Most generated ids, names and reasons made to name the rows the fixture made (still values the schema
    allows), so the actions and reads get past their 404s; every fourth stays as generated."""
    path, query = case.path_parameters or {}, case.query or {}
    job_id = path.get("job_id")
    if isinstance(job_id, int) and not isinstance(job_id, bool) and job_id % 4:
        jobs = list(Job.objects.order_by("id").values_list("id", flat=True))
        path["job_id"] = jobs[job_id % len(jobs)]
    if isinstance(path.get("name"), str) and len(path["name"]) % 4:
        path["name"] = "nightly"
    if isinstance(query.get("reason"), str) and len(query["reason"]) % 4:
        query["reason"] = REASON
