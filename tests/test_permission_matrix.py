"""One authorization model (`partitions/permissions.py`): every user kind, every action, every job status.

`may()` answers as the table below says; the table is written out here, not read from the rules. For each action,
the admin surface (a POST through the test client) and the service (called with the user as its actor) allow or
refuse together, and write nothing when they refuse. A missing right is a 403 in the admin (a login redirect for an
inactive or anonymous user) and NotPermitted from the service. A status the action does not apply in is the
service's InvalidTransition, which the admin shows as a message. The sample dry-run and the read-only pages have
no service with an actor, so the admin alone is checked for them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db import connection
from django.test import Client
from django.urls import reverse

from partitions.admin.actions import ACTIONS
from partitions.core.exceptions import InvalidTransition, NotPermitted
from partitions.models import Job, JobEvent, JobSchedule, Partition, ScheduleEvent, SubJob
from partitions.operations import knob, schedules, services
from partitions.operations.cadence import CRON, Cadence
from partitions.permissions import Action, may
from tests.conftest import VIEW_PERMS, make_staff
from tests.factories import make_job, make_partition, make_subjob

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("admin_env", "no_dispatcher")]

KINDS = ["superuser", "operator", "starter", "viewer", "inactive_operator", "anonymous"]
STATUSES = ["pending", "running", "paused", "failed", "succeeded", "cancelled"]
#: The views every staff kind holds (the operator and the starter add their one right).
LOOKING = [*VIEW_PERMS, "view_jobschedule"]
#: The rights each kind may use (an inactive user holds the operator's but may use none).
USES = {"superuser": None, "operator": {*LOOKING, "operate_job"}, "starter": {*LOOKING, "start_job"},
        "viewer": set(LOOKING), "inactive_operator": set(), "anonymous": set()}
ACTIVE = {"running", "paused"}
BEFORE_FINALIZE = {"pending", *ACTIVE}
#: What each action needs: its rights, and the statuses of the job it applies in (None: any, or no job).
NEEDS: dict[Action, tuple[set[str], set[str] | None]] = {
    Action.START: ({"start_job"}, None),
    Action.SAMPLE: ({"start_job"}, None),
    Action.RERUN: ({"operate_job", "start_job"}, None),
    Action.PAUSE: ({"operate_job"}, {"running"}),
    Action.RESUME: ({"operate_job"}, {"paused"}),
    Action.CANCEL: ({"operate_job"}, BEFORE_FINALIZE),
    Action.RETRY: ({"operate_job"}, {*ACTIVE, "failed"}),
    Action.SKIP: ({"operate_job"}, {*ACTIVE, "failed"}),
    Action.THROTTLE: ({"operate_job"}, BEFORE_FINALIZE),
    Action.KNOB: ({"operate_job"}, BEFORE_FINALIZE),
    Action.VIEW_TRACEBACKS: ({"operate_job"}, None),
    Action.VIEW_FAILURES: ({"view_subjob"}, None),
    Action.VIEW_WORKERS: ({"view_partition"}, None),
    Action.SCHEDULE_CREATE: ({"add_jobschedule", "start_job"}, None),
    Action.SCHEDULE_RUN: ({"start_job"}, None),
    Action.SCHEDULE_PAUSE: ({"operate_job"}, None),
    Action.SCHEDULE_RESUME: ({"operate_job"}, None),
    Action.SCHEDULE_DELETE: ({"delete_jobschedule"}, None),
}
REASON = "ValueError: no tax for this region"
PARAMS = {"count": 1, "chunk_size": 1}


def has_rights(kind: str, action: Action) -> bool:
    uses = USES[kind]
    return uses is None or NEEDS[action][0] <= uses


def expected(kind: str, action: Action, status: str | None) -> bool:
    statuses = NEEDS[action][1]
    return has_rights(kind, action) and (status is None or statuses is None or status in statuses)


def user_of(kind: str) -> Any:
    if kind == "anonymous":
        return AnonymousUser()
    if kind == "superuser":
        return User.objects.create_superuser("root", "root@example.com", None)
    user = make_staff(kind, *LOOKING, *{"operator": ["operate_job"], "inactive_operator": ["operate_job"],
                                        "starter": ["start_job"]}.get(kind, []))
    if kind == "inactive_operator":
        user.is_active = False
        user.save(update_fields=["is_active"])
    return user


def client_of(user: Any) -> Client:
    client = Client(raise_request_exception=False)
    if user.is_authenticated:
        client.force_login(user)  # an inactive user's session is no login: the admin sends it to the login page
    return client


def _rows(model, *columns: str) -> str:
    return f"(SELECT array_agg(({', '.join(columns)})::text ORDER BY id) FROM {model._meta.db_table})"


#: Every row an action could write or change, read in one statement (the matrix reads it hundreds of times).
SNAPSHOT = "SELECT " + ", ".join([
    _rows(Job, "id", "status", "rate_limit", "pause_ms", "max_parallel"), _rows(Partition, "id", "status", "job_id"),
    _rows(SubJob, "id", "status", "partition_id"), _rows(JobSchedule, "id", "enabled"),
    f"(SELECT count(*) FROM {JobEvent._meta.db_table})", f"(SELECT count(*) FROM {ScheduleEvent._meta.db_table})"])


def snapshot() -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(SNAPSHOT)
        return cursor.fetchone()


def assert_refused_by_rights(kind: str, response) -> None:
    if kind in ("inactive_operator", "anonymous"):
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    else:
        assert response.status_code == 403


def test_the_table_names_every_action():
    assert set(NEEDS) == set(Action)


@pytest.mark.parametrize("kind", KINDS)
def test_may_answers_for_every_action_and_status(kind):
    user = user_of(kind)
    for action in Action:
        assert may(user, action) is has_rights(kind, action), action
        for status in STATUSES:
            assert may(user, action, Job(status=status)) is expected(kind, action, status), (action, status)


@pytest.mark.parametrize("label", ["cli", "schedule:nightly", "worker-1"])
def test_a_trusted_label_may_every_action_where_the_status_allows(label):
    for action in Action:
        assert may(label, action)
        for status in STATUSES:
            assert may(label, action, Job(status=status)) is expected("superuser", action, status)


# The job's actions: the admin and the service, on two jobs alike --------------------------------------------------


def job_in(status: str) -> Job:
    """A job in `status` with something to act on: a failed partition holding a failed item of REASON."""
    job = make_job(status=status, type_name="tests.items_serial", params=PARAMS)
    partition = make_partition(job, kind="items", status="failed", estimated_items=1, last_error="boom")
    make_subjob(partition, status="failed", error=REASON, reason=REASON)
    return job


def job_action(name: str) -> Callable[[Client, Job], Any]:
    return lambda client, job: client.post(reverse("admin:partitions_job_action", args=[job.pk, name]),
                                           {"confirm": "yes", "reason": "matrix"})


def ledger_action(name: str) -> Callable[[Client, Job], Any]:
    return lambda client, job: client.post(reverse("admin:partitions_job_failures_action", args=[job.pk, name]),
                                           {"confirm": "yes", "reason": REASON, "note": "known"})


@dataclass(frozen=True)
class JobSurface:
    """One action on one job: its admin POST and its service call with the user as the actor."""

    action: Action
    post: Callable[[Client, Job], Any]
    call: Callable[[Any, Job], Any]


JOB_SURFACES = {
    "pause": JobSurface(Action.PAUSE, job_action("pause"), lambda u, j: services.job_pause(j.pk, actor=u)),
    "resume": JobSurface(Action.RESUME, job_action("resume"), lambda u, j: services.job_resume(j.pk, actor=u)),
    "cancel": JobSurface(Action.CANCEL, job_action("cancel"),
                         lambda u, j: services.job_cancel(j.pk, actor=u, reason="matrix")),
    "retry_failed": JobSurface(Action.RETRY, job_action("retry_failed"),
                               lambda u, j: services.job_retry_failed(j.pk, actor=u)),
    "retry_reason": JobSurface(Action.RETRY, ledger_action("retry"),
                               lambda u, j: services.subjobs_retry(j.pk, None, actor=u, reason=REASON)),
    "skip_reason": JobSurface(Action.SKIP, ledger_action("skip"),
                              lambda u, j: services.subjobs_skip(j.pk, reason=REASON, note="known", actor=u)),
    "throttle": JobSurface(
        Action.THROTTLE,
        lambda c, j: c.post(reverse("admin:partitions_job_throttle", args=[j.pk]),
                            {"rate_limit": "5", "pause_ms": "0"}),
        lambda u, j: services.job_throttle(j.pk, actor=u, rate_limit=5, pause_ms=0)),
    "knob": JobSurface(
        Action.KNOB,
        lambda c, j: c.post(reverse("admin:partitions_job_knob", args=[j.pk]),
                            {"max_parallel": "7", "deadline_choice": "keep"}),
        lambda u, j: knob.job_set(j.pk, actor=u, max_parallel=7)),
    "rerun": JobSurface(Action.RERUN, job_action("rerun"), lambda u, j: services.job_rerun(j.pk, actor=u)),
}


@pytest.mark.parametrize("surface", list(JOB_SURFACES))
def test_the_admin_and_the_service_allow_and_refuse_a_job_action_alike(surface):
    """Every kind on a job in every status. A refusal writes nothing, so the refused share one job a status."""
    surface = JOB_SURFACES[surface]
    users = {kind: user_of(kind) for kind in KINDS}
    clients = {kind: client_of(user) for kind, user in users.items()}
    untouched = {status: job_in(status) for status in STATUSES}
    for kind, status in itertools.product(KINDS, STATUSES):
        user, allowed, case = users[kind], expected(kind, surface.action, status), (kind, status)
        by_admin, by_service = (job_in(status), job_in(status)) if allowed else (untouched[status],) * 2
        assert may(user, surface.action, by_admin) is allowed, case

        before = snapshot()
        response = surface.post(clients[kind], by_admin)
        after_admin = snapshot()
        assert (after_admin != before) is allowed, ("admin", *case)
        if has_rights(kind, surface.action):  # done, or refused by status: a message on the job page
            assert response.status_code == 302 and reverse("admin:login") not in response["Location"], case
        else:
            assert_refused_by_rights(kind, response)

        before = after_admin
        if allowed:
            surface.call(user, by_service)
        else:
            with pytest.raises(InvalidTransition if has_rights(kind, surface.action) else NotPermitted):
                surface.call(user, by_service)
        assert (snapshot() != before) is allowed, ("service", *case)


def test_the_bulk_actions_offered_are_the_ones_the_user_may_take():
    for kind in ("superuser", "operator", "starter", "viewer"):
        user = user_of(kind)
        form = client_of(user).get(reverse("admin:partitions_job_changelist")).context["action_form"]
        offered = set() if form is None else {name for name, _ in form.fields["action"].choices if name}
        assert offered == {f"{a.name}_selected" for a in ACTIONS.values() if has_rights(kind, a.action)}, kind


# Actions without a job: starting, and the schedules ----------------------------------------------------------------


def start_post(client: Client, **extra: str) -> Any:
    return client.post(reverse("admin:partitions_job_start") + "?type=tests.items_serial", {
        "job_type": "tests.items_serial", "params-count": "1", "params-chunk_size": "1", **extra})


def schedule_of(name: str, *, paused: bool = False) -> JobSchedule:
    schedule = schedules.schedule_create(actor="test", name=name, type_name="tests.items_serial", params=PARAMS,
                                         cadence=Cadence(kind=CRON, cron="0 2 * * *"))
    return schedules.schedule_pause(name, actor="test") if paused else schedule


@dataclass(frozen=True)
class Surface:
    """An action without a job: its admin POST (on what `setup` made) and its service call."""

    action: Action
    post: Callable[[Client, Any], Any]
    call: Callable[[Any, Any], Any]
    setup: Callable[[str], Any] = lambda label: None


def _schedule_surface(action: Action, name: str, call: Callable[[str, Any], Any], *, paused: bool = False) -> Surface:
    """A schedule's action `name` in the admin and its service `call`, each on a schedule of its own."""
    def post(client: Client, schedule: JobSchedule) -> Any:
        return client.post(reverse("admin:partitions_jobschedule_action", args=[schedule.pk, name]),
                           {"confirm": "yes"})

    return Surface(action, post, lambda user, schedule: call(schedule.name, user),
                   lambda label: schedule_of(label, paused=paused))


SURFACES = {
    "start": Surface(Action.START, lambda c, _: start_post(c, _start="Start"),
                     lambda u, _: services.job_start("tests.items_serial", PARAMS, actor=u)),
    "schedule_create": Surface(
        Action.SCHEDULE_CREATE,
        lambda c, _: start_post(c, _schedule="Schedule", **{
            "schedule-name": "nightly", "schedule-kind": CRON, "schedule-cron": "0 2 * * *", "schedule-every": "1",
            "schedule-timezone": "UTC"}),
        lambda u, _: schedules.schedule_create(actor=u, name="nightly-too", type_name="tests.items_serial",
                                               params=PARAMS, cadence=Cadence(kind=CRON, cron="0 2 * * *"))),
    "schedule_run": _schedule_surface(Action.SCHEDULE_RUN, "run_now",
                                      lambda name, u: schedules.schedule_run_now(name, actor=u)),
    "schedule_pause": _schedule_surface(Action.SCHEDULE_PAUSE, "pause",
                                        lambda name, u: schedules.schedule_pause(name, actor=u)),
    "schedule_resume": _schedule_surface(Action.SCHEDULE_RESUME, "resume",
                                         lambda name, u: schedules.schedule_resume(name, actor=u), paused=True),
    "schedule_delete": _schedule_surface(Action.SCHEDULE_DELETE, "delete",
                                         lambda name, u: schedules.schedule_delete(name, actor=u)),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("surface", list(SURFACES))
def test_the_admin_and_the_service_allow_and_refuse_an_action_without_a_job_alike(surface, kind):
    surface, user = SURFACES[surface], user_of(kind)
    allowed = expected(kind, surface.action, None)
    assert may(user, surface.action) is allowed
    by_admin, by_service = surface.setup("by-admin"), surface.setup("by-service")

    before = snapshot()
    response = surface.post(client_of(user), by_admin)
    assert (snapshot() != before) is allowed
    if allowed:
        assert response.status_code == 302 and reverse("admin:login") not in response["Location"]
    else:
        assert_refused_by_rights(kind, response)

    before = snapshot()
    if allowed:
        surface.call(user, by_service)
    else:
        with pytest.raises(NotPermitted):
            surface.call(user, by_service)
    assert (snapshot() != before) is allowed


# What the admin alone decides: the sample dry-run and the pages beyond a row's own view -----------------------------


def _traceback_shown(client: Client, partition: Partition) -> bool:
    response = client.get(reverse("admin:partitions_partition_change", args=[partition.pk]))
    return response.status_code == 200 and "SECRET-FRAME" in response.content.decode()


def _a_failed_partition() -> Partition:
    partition = Partition.objects.get(job=job_in("running"))
    Partition.objects.filter(pk=partition.pk).update(last_traceback="Traceback: SECRET-FRAME")
    return partition


def _opens(url: Callable[[Any], str]) -> Callable[[Client, Any], bool]:
    return lambda client, made: client.get(url(made)).status_code == 200


#: Per action: what to make first, and whether the admin let the client do it with that.
ADMIN_ONLY: dict[Action, tuple[Callable[[], Any], Callable[[Client, Any], bool]]] = {
    Action.SAMPLE: (lambda: None, lambda client, _: start_post(
        client, _sample="Try on a sample", **{"sample-partitions": "1", "sample-items": "1"}).status_code == 200),
    Action.VIEW_TRACEBACKS: (_a_failed_partition, _traceback_shown),
    Action.VIEW_FAILURES: (lambda: job_in("failed"),
                           _opens(lambda job: reverse("admin:partitions_job_failures", args=[job.pk]))),
    Action.VIEW_WORKERS: (lambda: None, _opens(lambda _: reverse("admin:partitions_job_workers"))),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", list(ADMIN_ONLY))
def test_the_admin_alone_allows_what_may_allows_and_writes_nothing(action, kind):
    user, (make, allows) = user_of(kind), ADMIN_ONLY[action]
    allowed = expected(kind, action, None)
    assert may(user, action) is allowed
    made, client = make(), client_of(user)
    before = snapshot()
    assert allows(client, made) is allowed
    assert snapshot() == before
