"""Operator actions on jobs: one table drives the job page buttons, the confirm page and the bulk actions.

Each action calls exactly one service with `actor=request.user`; the service
checks the state, makes the change and writes the JobEvent. This module only
maps a typed engine error to a message an operator can act on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages

from partitions.core import humanize
from partitions.core.exceptions import DuplicateJob, InvalidParams, InvalidTransition, JobNotFound, PartitionsError
from partitions.core.states import PartitionStatus
from partitions.core.validation import RUN_OPTIONS
from partitions.models import Job
from partitions.operations import services
from partitions.permissions import Action, may
from partitions.reads.pages import job_failed_subjobs
from partitions.reads.statistics import JobStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionResult:
    """What an operator action did, as the admin reports it (a message, its level, where to go next)."""

    message: str
    level: int = messages.SUCCESS
    job_id: int | None = None  # where to go next (re-run: the new job)


@dataclass(frozen=True)
class JobAction:
    """An operator action: its rule (`permissions.Action`: the right, the statuses that show its button; also the
    bulk action's `has_<action>_permission`), and its one service call."""

    name: str
    label: str
    verb: str  # "cannot <verb> job #5: it …"
    confirm: str  # the confirm page's question, completed by "job #5 (type)?"
    action: Action
    call: Callable[[Job, Any, str], ActionResult]
    asks_reason: bool = False
    danger: bool = False
    #: Shown only when the job has something this action works on (a failure to retry).
    needs: Callable[[JobStats], bool] | None = None
    #: What the action touches on one job, counted for its confirm page ("526 failed sub-jobs").
    touches: Callable[[Job], str] | None = None


def queued_again(job_id: int, n: int, what: str, whats: str | None = None) -> ActionResult:
    """`Job #5: 3 failed partitions queued again.` (`what`, `whats`: as `humanize.plural` takes them)."""
    return ActionResult(f"Job #{job_id}: {humanize.plural(n, what, whats)} queued again.")


def _retry_failed(job: Job, user: Any, reason: str) -> ActionResult:
    n = services.job_retry_failed(job.pk, actor=user)
    if not n:
        return ActionResult(f"Job #{job.pk} has no failed partitions to retry.", messages.WARNING)
    return queued_again(job.pk, n, "failed partition")


def _retry_subjobs(job: Job, user: Any, reason: str) -> ActionResult:
    n = services.subjobs_retry(job.pk, None, actor=user)
    if not n:
        return ActionResult(f"Job #{job.pk} has no failed sub-jobs to retry.", messages.WARNING)
    return queued_again(job.pk, n, "failed sub-job")


def _cancel(job: Job, user: Any, reason: str) -> ActionResult:
    services.job_cancel(job.pk, actor=user, reason=reason.strip() or f"cancelled by {user.get_username()}")
    return ActionResult(f"Job #{job.pk} cancelled.")


def _pause(job: Job, user: Any, reason: str) -> ActionResult:
    services.job_pause(job.pk, actor=user)
    return ActionResult(f"Job #{job.pk} paused: running partitions stop at their next batch.")


def _resume(job: Job, user: Any, reason: str) -> ActionResult:
    services.job_resume(job.pk, actor=user)
    return ActionResult(f"Job #{job.pk} resumed.")


def _rerun(job: Job, user: Any, reason: str) -> ActionResult:
    new = services.job_rerun(job.pk, actor=user)
    return ActionResult(f"Job #{job.pk} re-run as job #{new.pk}.", job_id=new.pk)


ACTIONS: dict[str, JobAction] = {a.name: a for a in [
    JobAction("retry_failed", "Retry failed partitions", "retry the failed partitions of",
              "Put every failed partition back to pending, with fresh attempts, for", Action.RETRY, _retry_failed,
              needs=lambda s: bool(s.progress.partitions.get(PartitionStatus.FAILED)),
              touches=lambda job: humanize.plural(job.partitions.filter(status=PartitionStatus.FAILED).count(),
                                         "failed partition")),
    JobAction("retry_subjobs", "Retry failed sub-jobs", "retry the failed sub-jobs of",
              "Run every failed sub-job again (in new retry partitions) for", Action.RETRY, _retry_subjobs,
              needs=lambda s: s.progress.items_failed > 0,
              touches=lambda job: humanize.plural(job_failed_subjobs(job.pk).count(), "failed sub-job")),
    JobAction("pause", "Pause", "pause", "Stop claiming new work for", Action.PAUSE, _pause),
    JobAction("resume", "Resume", "resume", "Start claiming work again for", Action.RESUME, _resume),
    JobAction("cancel", "Cancel job", "cancel", "Cancel all remaining work of", Action.CANCEL, _cancel,
              asks_reason=True, danger=True),
    JobAction("rerun", "Re-run", "re-run", "Start a new job with the same type and params as", Action.RERUN,
              _rerun),
]}


def perform(action: JobAction, job: Job, user: Any, *, reason: str = "") -> ActionResult:
    """Run one action on one job; an engine refusal becomes an error message instead of an error page."""
    return guarded(action.verb, job.pk, lambda: action.call(job, user, reason))


def guarded(verb: str, job_id: int, call: Callable[[], ActionResult]) -> ActionResult:
    """Call a service; map the engine's typed refusals to a message naming the job and why."""
    try:
        return call()
    except InvalidTransition as exc:
        return ActionResult(f"Cannot {verb} job #{job_id}: it {exc.state}"
                            + (f"; {exc.advice}." if exc.advice else "."), messages.ERROR)
    except JobNotFound:
        return ActionResult(f"Job #{job_id} no longer exists.", messages.ERROR)
    except InvalidParams as exc:
        if exc.job_type == RUN_OPTIONS:  # the operator's own input (a reason too long …)
            return ActionResult(f"Cannot {verb} job #{job_id}: {exc.detail}", messages.ERROR)
        return ActionResult(f"Cannot {verb} job #{job_id}: its params are no longer valid ({exc}).", messages.ERROR)
    except DuplicateJob as exc:
        return ActionResult(f"Cannot {verb} job #{job_id}: job #{exc.existing_id} with the same dedupe key "
                       "is still active.", messages.ERROR)
    except PartitionsError as exc:
        log.info("admin action %r on job %s refused: %s", verb, job_id, exc)
        return ActionResult(f"Cannot {verb} job #{job_id}: {exc}", messages.ERROR)


#: The job page's controls besides the actions (their names are the controls').
PAGE_CONTROLS = (Action.THROTTLE, Action.KNOB)


def job_controls(user, stats: JobStats) -> list[str]:
    """The controls a user sees on a job page now (action names, then "throttle" and "knob"): those they may use
    in the job's status, retries only when something failed. The one decision behind the first render and every
    live re-render, so a job that ends while its page is open loses its running-job controls without a reload."""
    job = stats.job
    shown = [a.name for a in ACTIONS.values() if may(user, a.action, job) and (a.needs is None or a.needs(stats))]
    return shown + [str(control) for control in PAGE_CONTROLS if may(user, control, job)]
