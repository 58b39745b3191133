"""Who may do what: the engine's permissions, the operator actions, and the one rule behind each action.

Every surface asks here. The admin calls `may` to show a control or to refuse a request (403), and its
`has_<action>_permission` hooks (for `@admin.action(permissions=[...])`) call `may` as well. The job and
schedule services call `require` with their actor. The admin passes `request.user`, so a refusal there is the
service's too. An actor that is not a user is a trusted label: it is not a login, so it has no permissions
to check. Such labels are the CLI's "cli", a schedule's "schedule:<name>", a worker, the system and the
benches. The status rules still apply to them.

A user may act when they are active and hold every permission the action's rule names. With a job, the job
must also be in one of the statuses the action applies in. Those sets come from `partitions.core.states`; a service
checks them under the job's row lock (with `require(actor, action, job)`, or through the transition table).

Django's own per-model view permission (`view_job`, `view_jobschedule`, …) still opens each admin list and
page (the ModelAdmin's `has_view_permission`). The actions here are what goes beyond looking at a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from partitions.core.exceptions import InvalidTransition, NotPermitted
from partitions.core.states import (
    JOB_ADJUSTABLE,
    JOB_CANCELLABLE,
    JOB_PAUSABLE,
    JOB_RESUMABLE,
    JOB_RETRYABLE,
    JOB_SKIPPABLE,
    JOB_THROTTLEABLE,
    JobStatus,
)


class Perm(StrEnum):
    """The permissions the engine checks, as `user.has_perm` takes them (app label and codename)."""

    START = "partitions.start_job"
    OPERATE = "partitions.operate_job"
    VIEW_PARTITIONS = "partitions.view_partition"
    VIEW_ITEMS = "partitions.view_subjob"
    ADD_SCHEDULE = "partitions.add_jobschedule"
    DELETE_SCHEDULE = "partitions.delete_jobschedule"


class Action(StrEnum):
    """What an operator does. Each value also names the admin's `has_<value>_permission` hook."""

    START = "start"
    SAMPLE = "sample"  # the start page's sample dry-run: it runs the job type's code (rolled back)
    RERUN = "rerun"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    RETRY = "retry"  # failed partitions, failed sub-jobs, the items of one failure reason
    SKIP = "skip"  # the failed items of one failure reason, with a note
    THROTTLE = "throttle"
    KNOB = "knob"  # max parallel and the deadline
    VIEW_TRACEBACKS = "view_tracebacks"  # tracebacks show server paths and code
    VIEW_FAILURES = "view_failures"  # the failure ledger's items and its CSV
    VIEW_WORKERS = "view_workers"  # the workers page: live leases
    SCHEDULE_CREATE = "schedule_create"
    SCHEDULE_RUN = "schedule_run"  # a manual fire
    SCHEDULE_PAUSE = "schedule_pause"
    SCHEDULE_RESUME = "schedule_resume"
    SCHEDULE_DELETE = "schedule_delete"


@dataclass(frozen=True)
class Rule:
    """What an action needs: every one of `perms`, and a job in one of `statuses` (None: any status, or no job)."""

    perms: tuple[Perm, ...]
    #: Names the action in a refusal: "not permitted: <what> needs the <perm> permission".
    what: str
    statuses: frozenset[str] | None = None
    #: The target a refusal by status names (InvalidTransition's; it picks the advice).
    target: str = ""


RULES: dict[Action, Rule] = {
    Action.START: Rule((Perm.START,), "starting a job"),
    Action.SAMPLE: Rule((Perm.START,), "trying a job on a sample"),
    # A re-run starts a new job from an old one: both rights.
    Action.RERUN: Rule((Perm.OPERATE, Perm.START), "re-running a job"),
    Action.PAUSE: Rule((Perm.OPERATE,), "pausing a job", JOB_PAUSABLE, JobStatus.PAUSED),
    Action.RESUME: Rule((Perm.OPERATE,), "resuming a job", JOB_RESUMABLE, JobStatus.RUNNING),
    Action.CANCEL: Rule((Perm.OPERATE,), "cancelling a job", JOB_CANCELLABLE, JobStatus.CANCELLED),
    Action.RETRY: Rule((Perm.OPERATE,), "retrying failed work", JOB_RETRYABLE, "retry"),
    Action.SKIP: Rule((Perm.OPERATE,), "skipping failed items", JOB_SKIPPABLE, "skip"),
    Action.THROTTLE: Rule((Perm.OPERATE,), "throttling a job", JOB_THROTTLEABLE, "throttle"),
    Action.KNOB: Rule((Perm.OPERATE,), "changing a job's max parallel or deadline", JOB_ADJUSTABLE, "adjusted"),
    Action.VIEW_TRACEBACKS: Rule((Perm.OPERATE,), "reading tracebacks"),
    Action.VIEW_FAILURES: Rule((Perm.VIEW_ITEMS,), "reading failed items"),
    Action.VIEW_WORKERS: Rule((Perm.VIEW_PARTITIONS,), "reading the workers page"),
    # A schedule starts jobs: creating one needs the right to start them too.
    Action.SCHEDULE_CREATE: Rule((Perm.ADD_SCHEDULE, Perm.START), "creating a schedule"),
    Action.SCHEDULE_RUN: Rule((Perm.START,), "running a schedule now"),
    # Steering, like a job's pause.
    Action.SCHEDULE_PAUSE: Rule((Perm.OPERATE,), "pausing a schedule"),
    Action.SCHEDULE_RESUME: Rule((Perm.OPERATE,), "resuming a schedule"),
    Action.SCHEDULE_DELETE: Rule((Perm.DELETE_SCHEDULE,), "deleting a schedule"),
}


def is_user(actor: Any) -> bool:
    """A login (a Django user, anonymous included) rather than a trusted label such as "cli" or a worker id."""
    return hasattr(actor, "has_perm")


def _missing(user: Any, rule: Rule) -> Perm | None:
    """The first permission of `rule` that `user` lacks (an inactive user lacks them all), or None."""
    if not user.is_active:
        return rule.perms[0]
    return next((perm for perm in rule.perms if not user.has_perm(perm)), None)


def _status_allows(rule: Rule, job: Any) -> bool:
    return job is None or rule.statuses is None or job.status in rule.statuses


def may(user: Any, action: Action, job: Any = None) -> bool:
    """Whether `user` may take `action` (on `job`, in its status now). A trusted label may always, status allowing."""
    rule = RULES[action]
    return _status_allows(rule, job) and (not is_user(user) or _missing(user, rule) is None)


def require(actor: Any, action: Action, job: Any = None) -> None:
    """Raise NotPermitted when `actor` is a user who may not take `action`. With `job`, also raise
    InvalidTransition when its status does not allow the action (a trusted label included)."""
    rule = RULES[action]
    if is_user(actor) and (missing := _missing(actor, rule)) is not None:
        raise NotPermitted(missing, rule.what)
    if not _status_allows(rule, job):
        raise InvalidTransition("Job", job.pk, job.status, rule.target)
