"""Operator actions through the admin: who may act, POST + CSRF + confirmation, and clear refusals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from partitions.models import Job, JobEvent, Partition, SubJob
from tests.conftest import VIEW_PERMS, make_staff
from tests.factories import make_job, make_partition, make_subjob
from tests.support import year_ahead

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("admin_env")]

CHANGELIST = "admin:partitions_job_changelist"


def action_url(job: Job, name: str) -> str:
    return reverse("admin:partitions_job_action", args=[job.pk, name])


def job_page(job_id: int) -> str:
    return reverse("admin:partitions_job_change", args=[job_id])


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def offered_actions(client: Client) -> set[str]:
    """Names of the bulk actions the job list offers this client (none at all: no action form)."""
    form = client.get(reverse(CHANGELIST)).context["action_form"]
    return set() if form is None else {name for name, _ in form.fields["action"].choices if name}


def snapshot(job: Job) -> tuple:
    """Everything an action could change about a job: its status, its rows' statuses, the job count, events."""
    return (
        Job.objects.get(pk=job.pk).status,
        sorted(Partition.objects.filter(job=job).values_list("pk", "status")),
        sorted(SubJob.objects.filter(job=job).values_list("pk", "status", "partition_id")),
        Job.objects.count(),
        JobEvent.objects.count(),
    )


# One scenario per action: a job in which the action is legal, and what must be true afterwards.


@dataclass
class Scenario:
    action: str
    setup: Any
    check: Any
    event: str


def _failed_partition_job():
    job = make_job(status="failed")
    make_partition(job, status="failed", last_error="boom")
    return job


def _check_partitions_retried(job, user):
    assert Job.objects.get(pk=job.pk).status == "running"
    assert list(Partition.objects.filter(job=job).values_list("status", flat=True)) == ["pending"]


def _failed_subjob_job():
    job = make_job(status="failed", type_name="tests.items_serial")
    partition = make_partition(job, kind="items", status="succeeded", estimated_items=2)
    make_subjob(partition, seq=0, key="item-0", status="succeeded")
    make_subjob(partition, seq=1, key="item-1", status="failed", error="smtp down")
    return job


def _check_subjobs_retried(job, user):
    assert Job.objects.get(pk=job.pk).status == "running"
    retried = SubJob.objects.get(job=job, key="item-1")
    assert retried.status == "pending"
    assert retried.partition.kind == "retry"
    assert SubJob.objects.get(job=job, key="item-0").status == "succeeded"


def _running_job():
    job = make_job(status="running")
    make_partition(job, status="pending")
    return job


def _check_status(expected):
    def check(job, user):
        assert Job.objects.get(pk=job.pk).status == expected

    return check


def _check_cancelled(job, user):
    assert Job.objects.get(pk=job.pk).status == "cancelled"
    assert list(Partition.objects.filter(job=job).values_list("status", flat=True)) == ["cancelled"]


def _check_rerun(job, user):
    new = Job.objects.exclude(pk=job.pk).get()
    assert (new.type_name, new.status, new.created_by) == (job.type_name, "pending", user)
    assert new.params == {**job.params, "sleep_ms": None}  # the same params, cleaned again by the Params form
    assert Job.objects.get(pk=job.pk).status == "succeeded"


SCENARIOS = {s.action: s for s in [
    Scenario("retry_failed", _failed_partition_job, _check_partitions_retried, "partition_retried"),
    Scenario("retry_subjobs", _failed_subjob_job, _check_subjobs_retried, "subjobs_retried"),
    Scenario("cancel", _running_job, _check_cancelled, "job_cancelled"),
    Scenario("pause", _running_job, _check_status("paused"), "job_paused"),
    Scenario("resume", lambda: make_job(status="paused"), _check_status("running"), "job_resumed"),
    Scenario("rerun", lambda: make_job(status="succeeded"), _check_rerun, "job_rerun"),
]}


@pytest.fixture
def users(superuser, operator, viewer):
    return {"superuser": superuser, "operator": operator, "viewer": viewer, "anonymous": None}


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.parametrize("role", ["superuser", "operator", "viewer", "anonymous"])
@pytest.mark.parametrize("action", list(SCENARIOS))
def test_job_page_action_is_allowed_only_with_the_permission(action, role, users):
    scenario, user = SCENARIOS[action], users[role]
    job = scenario.setup()
    before = snapshot(job)

    response = client_for(user).post(action_url(job, action), {"confirm": "yes"})

    if role in {"superuser", "operator"}:
        new_job = Job.objects.exclude(pk=job.pk).first()
        assert response.status_code == 302
        assert response["Location"] == job_page(new_job.pk if action == "rerun" else job.pk)
        scenario.check(job, user)
        assert JobEvent.objects.filter(job=job, type=scenario.event, actor_user=user).exists()
        assert messages_of(response)
    else:
        if role == "anonymous":
            assert response.status_code == 302
            assert reverse("admin:login") in response["Location"]
        else:
            assert response.status_code == 403
        assert snapshot(job) == before


@pytest.mark.parametrize("action", list(SCENARIOS))
def test_get_and_unconfirmed_post_only_ask_for_confirmation(action, superuser):
    job = SCENARIOS[action].setup()
    before = snapshot(job)
    client = client_for(superuser)

    asked = client.get(action_url(job, action), {"confirm": "yes"})
    posted = client.post(action_url(job, action))

    for response in (asked, posted):
        assert response.status_code == 200
        assert response.templates[0].name == "admin/partitions/action_confirmation.html"
        assert b'name="confirm" value="yes"' in response.content
        assert b"csrfmiddlewaretoken" in response.content
    assert snapshot(job) == before


@pytest.mark.parametrize("action", list(SCENARIOS))
def test_missing_csrf_token_is_rejected_and_a_real_token_is_accepted(action, superuser):
    job = SCENARIOS[action].setup()
    before = snapshot(job)
    client = client_for(superuser, enforce_csrf_checks=True)

    rejected = client.post(action_url(job, action), {"confirm": "yes"})
    assert rejected.status_code == 403
    assert snapshot(job) == before

    confirm_page = client.get(action_url(job, action))
    token = confirm_page.context["csrf_token"]
    accepted = client.post(action_url(job, action), {"confirm": "yes", "csrfmiddlewaretoken": str(token)})
    assert accepted.status_code == 302
    SCENARIOS[action].check(job, superuser)


@pytest.mark.parametrize(("action", "status", "expected"), [
    ("pause", "succeeded", "Cannot pause job #{}: it has finished (succeeded); only a running job can be paused."),
    ("resume", "running", "Cannot resume job #{}: it is already running."),
    ("cancel", "cancelled", "Cannot cancel job #{}: it is already cancelled."),
    ("retry_failed", "succeeded",
     "Cannot retry the failed partitions of job #{}: it has finished (succeeded); nothing failed to retry."),
    ("retry_subjobs", "pending", "Cannot retry the failed sub-jobs of job #{}: it is pending; nothing has failed yet."),
])
def test_action_illegal_for_the_state_gives_a_message_not_an_error_page(action, status, expected, operator):
    job = make_job(status=status)
    before = snapshot(job)

    response = client_for(operator).post(action_url(job, action), {"confirm": "yes"}, follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(job_page(job.pk), 302)]
    assert expected.format(job.pk) in response.content.decode()
    assert snapshot(job) == before


def test_retry_with_nothing_failed_says_so(operator):
    job = make_job(status="running")
    make_partition(job, status="running")
    response = client_for(operator).post(action_url(job, "retry_failed"), {"confirm": "yes"})
    assert messages_of(response) == [f"Job #{job.pk} has no failed partitions to retry."]


def test_cancel_keeps_the_operators_reason(operator):
    job = _running_job()
    client_for(operator).post(action_url(job, "cancel"), {"confirm": "yes", "reason": "wrong product list"})
    job.refresh_from_db()
    assert (job.status, job.error) == ("cancelled", "wrong product list")
    assert JobEvent.objects.get(job=job, type="job_cancelled").data == {"reason": "wrong product list"}


def test_rerun_needs_start_permission_as_well_as_operate(db):
    operate_only = make_staff("operate-only", *VIEW_PERMS, "operate_job")
    job = make_job(status="succeeded")
    client = client_for(operate_only)

    assert client.post(action_url(job, "rerun"), {"confirm": "yes"}).status_code == 403
    assert Job.objects.count() == 1
    page = client.get(job_page(job.pk)).content.decode()
    assert 'data-job-action="rerun"' not in page
    assert 'data-job-action="retry_failed"' in page
    offered = offered_actions(client)
    assert "rerun_selected" not in offered and "pause_selected" in offered


def test_unknown_action_and_unknown_job_are_not_found(superuser):
    client = client_for(superuser)
    job = make_job(status="running")
    assert client.post(action_url(job, "explode"), {"confirm": "yes"}).status_code == 404
    missing = client.post(reverse("admin:partitions_job_action", args=[job.pk + 999, "pause"]), {"confirm": "yes"})
    assert missing.status_code == 302 and Job.objects.get(pk=job.pk).status == "running"
    huge = action_url(job, "pause").replace(f"/{job.pk}/", f"/{10**30}/")
    assert client.post(huge, {"confirm": "yes"}).status_code == 302


# Bulk actions on the job list -------------------------------------------------------------------------------------


def bulk(client: Client, name: str, jobs: list[Job], **extra):
    data = {"action": name, ACTION_CHECKBOX_NAME: [j.pk for j in jobs], "index": 0, **extra}
    return client.post(reverse(CHANGELIST), data)


@pytest.mark.parametrize("role", ["superuser", "operator"])
def test_bulk_pause_confirms_then_pauses_each_job_and_reports_refusals(role, users):
    user = users[role]
    running = [_running_job(), _running_job()]
    finished = make_job(status="succeeded")
    client = client_for(user)

    confirm = bulk(client, "pause_selected", [*running, finished])
    assert confirm.status_code == 200
    assert confirm.templates[0].name == "admin/partitions/action_confirmation.html"
    assert set(Job.objects.values_list("status", flat=True)) == {"running", "succeeded"}

    done = bulk(client, "pause_selected", [*running, finished], post="yes")
    assert done.status_code == 302
    assert [Job.objects.get(pk=j.pk).status for j in running] == ["paused", "paused"]
    assert Job.objects.get(pk=finished.pk).status == "succeeded"
    assert JobEvent.objects.filter(type="job_paused", actor_user=user).count() == 2
    assert (f"Cannot pause job #{finished.pk}: it has finished (succeeded); only a running job can be paused."
            in messages_of(done))


@pytest.mark.parametrize("action", list(SCENARIOS))
def test_bulk_action_works_for_an_operator_and_is_not_offered_to_a_viewer(action, operator, viewer):
    scenario = SCENARIOS[action]
    job = scenario.setup()
    before = snapshot(job)

    viewer_client = client_for(viewer)
    assert offered_actions(viewer_client) == set()
    assert f"{action}_selected" in offered_actions(client_for(operator))
    refused = bulk(viewer_client, f"{action}_selected", [job], post="yes")
    assert refused.status_code in {200, 302}
    assert snapshot(job) == before

    done = bulk(client_for(operator), f"{action}_selected", [job], post="yes")
    assert done.status_code == 302
    scenario.check(job, operator)
    assert JobEvent.objects.filter(job=job, type=scenario.event, actor_user=operator).exists()


def test_bulk_action_on_all_filtered_jobs_confirms_then_applies_to_the_same_filter(operator):
    mine = [_running_job() for _ in range(3)]
    other = make_job(status="running", type_name="tests.items_serial")
    client = client_for(operator)
    url = reverse(CHANGELIST) + "?type_name=tests.bump_range"
    data = {"action": "pause_selected", ACTION_CHECKBOX_NAME: [mine[0].pk], "select_across": "1", "index": 0}

    confirm = client.post(url, data)
    hidden = confirm.context["hidden"]
    assert ("select_across", "1") in hidden and ("post", "yes") in hidden
    assert len(confirm.context["items"]) == 3
    assert confirm.context["question"].endswith("these 3 jobs?"), "the count of everything the filter matches"
    assert confirm.context["form_url"] == url
    replay: dict[str, list] = {}
    for name, value in hidden:
        replay.setdefault(name, []).append(value)
    assert client.post(url, replay).status_code == 302
    assert [Job.objects.get(pk=j.pk).status for j in mine] == ["paused"] * 3
    assert Job.objects.get(pk=other.pk).status == "running"


def test_bulk_action_without_csrf_token_is_rejected(superuser):
    job = _running_job()
    client = client_for(superuser, enforce_csrf_checks=True)
    response = bulk(client, "pause_selected", [job], post="yes")
    assert response.status_code == 403
    assert Job.objects.get(pk=job.pk).status == "running"


# Sub-job and partition lists ----------------------------------------------------------------------------------------


def test_retry_selected_subjobs_moves_only_the_selection(operator, viewer):
    job = _failed_subjob_job()
    partition = Partition.objects.get(job=job)
    other = make_subjob(partition, seq=2, key="item-2", status="failed", error="x")
    target = SubJob.objects.get(job=job, key="item-1")
    url = reverse("admin:partitions_subjob_changelist")
    data = {"action": "retry_selected", ACTION_CHECKBOX_NAME: [target.pk], "index": 0}

    assert client_for(viewer).post(url, {**data, "post": "yes"}).status_code in {200, 302}
    assert SubJob.objects.get(pk=target.pk).status == "failed"

    client = client_for(operator)
    assert client.post(url, data).templates[0].name == "admin/partitions/action_confirmation.html"
    assert SubJob.objects.get(pk=target.pk).status == "failed"
    assert client.post(url, {**data, "post": "yes"}).status_code == 302
    assert SubJob.objects.get(pk=target.pk).status == "pending"
    assert SubJob.objects.get(pk=other.pk).status == "failed"
    assert JobEvent.objects.filter(job=job, type="subjobs_retried", actor_user=operator).exists()
    assert Job.objects.get(pk=job.pk).status == "running"


def test_retry_failed_subjobs_of_selected_partitions(operator):
    job = _failed_subjob_job()
    partition = Partition.objects.get(job=job)
    url = reverse("admin:partitions_partition_changelist")
    data = {"action": "retry_subjobs_selected", ACTION_CHECKBOX_NAME: [partition.pk], "index": 0, "post": "yes"}
    response = client_for(operator).post(url, data)
    assert response.status_code == 302
    assert SubJob.objects.get(job=job, key="item-1").status == "pending"
    assert f"Job #{job.pk}: 1 failed sub-job queued again." in messages_of(response)


# Start page ---------------------------------------------------------------------------------------------------------


START = "admin:partitions_job_start"


def rows() -> tuple[int, int, int, int]:
    return Job.objects.count(), Partition.objects.count(), SubJob.objects.count(), JobEvent.objects.count()


@pytest.mark.parametrize(("role", "expected"), [("superuser", 200), ("operator", 200), ("viewer", 403),
                                                ("anonymous", 302)])
def test_start_page_needs_the_start_permission(role, expected, users):
    response = client_for(users[role]).get(reverse(START), {"type": "tests.items_serial"})
    assert response.status_code == expected
    posted = client_for(users[role]).post(
        reverse(START), {"job_type": "tests.items_serial", "params-count": 3, "params-chunk_size": 2, "_start": "1"})
    assert Job.objects.count() == (1 if expected == 200 else 0)
    assert posted.status_code == (302 if expected == 200 else expected)


def test_start_page_rejects_invalid_params_with_the_forms_errors_and_creates_nothing(operator):
    before = rows()
    response = client_for(operator).post(reverse(START), {
        "job_type": "tests.items_serial", "params-count": "-1", "params-chunk_size": "", "max_parallel": "2",
        "_start": "Start",
    })
    assert response.status_code == 200
    form = response.context["params_form"]
    assert form.errors == {"count": ["Ensure this value is greater than or equal to 0."],
                           "chunk_size": ["This field is required."]}
    html = response.content.decode()
    assert "Ensure this value is greater than or equal to 0." in html and "This field is required." in html
    assert 'name="params-count"' in html and 'value="-1"' in html  # the form keeps what was typed
    assert rows() == before


def test_start_page_rejects_invalid_run_options_and_creates_nothing(operator):
    before = rows()
    response = client_for(operator).post(reverse(START), {
        "job_type": "tests.items_serial", "params-count": "3", "params-chunk_size": "2", "max_parallel": "-4",
        "deadline": "not a date", "_start": "Start",
    })
    assert response.status_code == 200
    assert set(response.context["options_form"].errors) == {"max_parallel", "deadline"}
    assert rows() == before


def test_preview_shows_the_plan_and_writes_nothing(operator):
    before = rows()
    response = client_for(operator).post(reverse(START), {
        "job_type": "tests.items_serial", "params-count": "10", "params-chunk_size": "4", "_preview": "Preview plan",
    })
    assert response.status_code == 200
    preview = response.context["preview"]
    assert (preview["partitions"], preview["subjobs"]) == (3, 10)
    assert [r["estimated"] for r in preview["rows"]] == [4, 4, 2]
    assert "Plan preview (nothing was written)" in response.content.decode()
    assert rows() == before


def test_preview_of_a_key_range_split_shows_bounds_and_estimated_rows(operator):
    from tests.support import seed

    seed(subscriptions=120)
    before = rows()
    response = client_for(operator).post(reverse(START), {
        "job_type": "tests.bump_range", "params-partitions": "3", "_preview": "Preview plan",
    })
    preview = response.context["preview"]
    assert preview["partitions"] == 3 and preview["estimated"] == 120
    assert all(r["bounds"].startswith("[(") for r in preview["rows"])
    assert rows() == before


def test_preview_with_invalid_params_shows_errors_and_writes_nothing(operator):
    before = rows()
    response = client_for(operator).post(reverse(START), {
        "job_type": "tests.items_serial", "params-count": "x", "params-chunk_size": "0", "_preview": "Preview plan",
    })
    assert set(response.context["params_form"].errors) == {"count", "chunk_size"}
    assert "preview" not in response.context
    assert rows() == before


def test_start_creates_the_job_as_the_user_with_options_and_opens_its_page(operator):
    response = client_for(operator).post(reverse(START), {
        "job_type": "tests.items_serial", "params-count": "5", "params-chunk_size": "2", "max_parallel": "3",
        "deadline": f"{year_ahead()}-01-02T03:04", "_start": "Start",
    })
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == job_page(job.pk)
    assert (job.type_name, job.status, job.max_parallel, job.created_by) == ("tests.items_serial", "pending", 3,
                                                                            operator)
    assert job.params["count"] == 5 and job.params["chunk_size"] == 2
    assert job.deadline.isoformat().startswith(f"{year_ahead()}-01-02T03:04")
    assert JobEvent.objects.filter(job=job, type="job_created", actor_user=operator).exists()


def test_start_without_csrf_token_is_rejected(operator):
    client = client_for(operator, enforce_csrf_checks=True)
    response = client.post(reverse(START), {"job_type": "tests.items_serial", "params-count": "5",
                                            "params-chunk_size": "2", "_start": "Start"})
    assert response.status_code == 403
    assert Job.objects.count() == 0


# The throttle page ------------------------------------------------------------------------------------------

def throttle_url(job: Job) -> str:
    return reverse("admin:partitions_job_throttle", args=[job.pk])


def test_the_throttle_page_changes_a_running_job_with_csrf_and_logs_the_operator(operator):
    job = make_job(status="running")
    client = client_for(operator, enforce_csrf_checks=True)
    page = client.get(throttle_url(job))
    assert page.status_code == 200 and b'name="rate_limit"' in page.content
    assert client.post(throttle_url(job), {"rate_limit": "50", "pause_ms": "10"}).status_code == 403
    token = str(page.context["csrf_token"])
    response = client.post(throttle_url(job), {"rate_limit": "50", "pause_ms": "10", "ignore_health": "on",
                                               "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == job_page(job.pk)
    job.refresh_from_db()
    assert (job.rate_limit, job.pause_ms, job.ignore_health) == (50.0, 10, True)
    changed = JobEvent.objects.get(job=job, type="job_throttle_changed")
    assert changed.actor_user == operator and changed.data["after"]["rate_limit"] == 50.0
    assert "Throttle" in job_page_text(client, job)


def job_page_text(client: Client, job: Job) -> str:
    return client.get(job_page(job.pk)).content.decode()


@pytest.mark.parametrize("data", [{"rate_limit": "-1"}, {"rate_limit": "nan"}, {"rate_limit": "inf"},
                                  {"rate_limit": "1e300"}, {"pause_ms": "-5"}, {"pause_ms": "10000000"},
                                  {"pause_ms": "abc"}])
def test_bad_throttle_input_is_a_form_error_and_writes_nothing(operator, data):
    job = make_job(status="running")
    before = snapshot(job)
    response = client_for(operator).post(throttle_url(job), data)
    assert response.status_code == 200 and response.context["form"].errors
    assert snapshot(job) == before
    job.refresh_from_db()
    assert (job.rate_limit, job.pause_ms) == (None, 0)


def test_viewers_cannot_throttle_and_finished_jobs_are_refused_with_a_message(viewer, operator):
    job = make_job(status="running")
    assert client_for(viewer).get(throttle_url(job)).status_code == 403
    assert client_for(viewer).post(throttle_url(job), {"rate_limit": "5"}).status_code == 403
    done = make_job(status="succeeded")
    response = client_for(operator).post(throttle_url(done), {"rate_limit": "5"})
    assert response.status_code == 302
    assert messages_of(response) == [f"Cannot throttle job #{done.pk}: it has finished (succeeded); the throttle "
                                     "applies only to jobs that have not ended."]
    assert Job.objects.get(pk=done.pk).rate_limit is None
