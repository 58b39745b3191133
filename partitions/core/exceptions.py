"""Typed errors of the engine, and the control-flow exceptions job code may raise."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import timedelta

from partitions.core.limits import ECHO, ERROR_LINE, clip


def error_line(error: BaseException | str) -> str:
    """One clear line for operators: `Type: message` of an exception, or the last line of a traceback text."""
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}"
    else:
        lines = [line.strip() for line in (error or "").strip().splitlines() if line.strip()]
        text = lines[-1] if lines and lines[0].startswith("Traceback (most recent call last)") else " ".join(lines)
    return clip(text, ERROR_LINE, one_line=True)


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `known` to a mistyped `word`, or "" when none is close."""
    if not isinstance(word, str) or len(word) > 200:  # nothing that long is a typo of a name
        return ""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class PartitionsError(Exception):
    """Base class of every error the engine raises on purpose."""


#: Why an operator's change is refused, by (target, current status) or by target alone: what the operator can
#: do instead. Targets are statuses or the verbs of services' guards ("retry", "adjusted", "throttle").
TRANSITION_ADVICE: dict[tuple[str, str | None] | str, str] = {
    ("retry", "succeeded"): "nothing failed to retry",
    ("retry", "pending"): "nothing has failed yet",
    ("retry", "planning"): "nothing has failed yet",
    ("retry", "cancelled"): "a cancelled job cannot be retried: re-run it instead",
    ("cancelled", "finalizing"): "its work is done, it can no longer be cancelled",
    "retry": "retry applies to running, paused or failed jobs",
    ("skip", "succeeded"): "nothing failed to skip",
    ("skip", "pending"): "nothing has failed yet",
    ("skip", "planning"): "nothing has failed yet",
    "skip": "skipping failed items applies to running, paused or failed jobs",
    "adjusted": "max parallel and the deadline apply only before a job finalizes",
    "throttle": "the throttle applies only to jobs that have not ended",
    "cancelled": "only a job that has not ended can be cancelled",
    "paused": "only a running job can be paused",
    "running": "only a paused job can be resumed",
}
#: Statuses after which nothing runs again (`states.JOB_TERMINAL`'s values: this module imports nothing).
_ENDED = frozenset({"succeeded", "failed", "cancelled"})


class InvalidTransition(PartitionsError):
    """A status change that the transition table does not allow from the current status. Its message says, in
    operator words, what the row is and what the operator can do ("job 3 has finished (succeeded); nothing
    failed to retry"): `state` and `advice` are its two halves, for surfaces that phrase their own sentence."""

    def __init__(self, model: str, pk: int, current: str | None, target: str):
        self.model, self.pk, self.current, self.target = model, pk, current, target
        self.state, self.advice = self._state(), self._advice()
        subject = {"Job": "job", "Partition": "partition", "SubJob": "sub-job"}.get(model, model.lower())
        super().__init__(f"{subject} {pk} {self.state}" + (f"; {self.advice}" if self.advice else ""))

    def _state(self) -> str:
        if self.current is None:
            return "does not exist"
        if self.current == self.target:
            return f"is already {self.current}"
        return f"has finished ({self.current})" if self.current in _ENDED else f"is {self.current}"

    def _advice(self) -> str:
        if self.current is None or self.current == self.target:
            return ""
        return TRANSITION_ADVICE.get((self.target, self.current)) or TRANSITION_ADVICE.get(
            self.target, f"it cannot become {self.target}")


class LeaseLost(PartitionsError):
    """A fenced write matched no row: another worker holds the lease now (or the row moved on)."""

    def __init__(self, partition_id: int, token: int):
        self.partition_id, self.token = partition_id, token
        super().__init__(f"lease on partition {partition_id} with token {token} is no longer held")


class BoundsMoved(PartitionsError):
    """A checkpoint of a batch that read past the bounds a split has moved since: nothing was written; the
    holder (still holding the lease) runs the batch again within its new bounds."""

    def __init__(self, partition_id: int, token: int):
        self.partition_id, self.token = partition_id, token
        super().__init__(f"partition {partition_id} was split: its bounds moved under token {token}")


class JobTypeNotFound(PartitionsError):
    def __init__(self, name: str, known: Iterable[str] = ()):
        self.name = name
        super().__init__(f"unknown job type {name!r}{did_you_mean(name, known)}")


class JobNotFound(PartitionsError):
    def __init__(self, job_id: object):
        self.job_id = job_id
        super().__init__(f"job {job_id} does not exist")


class UnknownReason(PartitionsError):
    """No failed or skipped item of the job has this failure reason (the closest one is named)."""

    def __init__(self, job_id: int, reason: str, known: Iterable[str] = ()):
        self.job_id, self.reason = job_id, reason
        super().__init__(f"job {job_id} has no failed or skipped items with reason {clip(reason, ECHO)!r}"
                         + did_you_mean(reason, known))


class DuplicateJob(PartitionsError):
    """A non-terminal job with the same dedupe key exists; carries it."""

    def __init__(self, existing_id: int, dedupe_key: str):
        self.existing_id, self.dedupe_key = existing_id, dedupe_key
        super().__init__(f"job {existing_id} with dedupe key {dedupe_key!r} is still active")


#: The `job_type` of an InvalidParams about a run's own options (max parallel, deadline, throttle, reason).
RUN_OPTIONS = "run options"


def error_detail(errors: dict[str, list[str]]) -> str:
    """A form's errors in one line: `field: message; …`, a form-wide error (`__all__`) without its key."""
    return "; ".join(" ".join(msgs) if field == "__all__" else f"{field}: {' '.join(msgs)}"
                     for field, msgs in errors.items())


class InvalidParams(PartitionsError):
    """Params did not validate; `errors` is the form's error dict (field -> messages). About RUN_OPTIONS, the
    message names the option ("invalid deadline: …"), not a job type's params."""

    def __init__(self, job_type: str, errors: dict[str, list[str]]):
        self.job_type, self.errors = job_type, errors
        self.detail = error_detail(errors)
        super().__init__(f"invalid {self.detail}" if job_type == RUN_OPTIONS
                         else f"invalid params for {job_type}: {self.detail}")


class JobNotPlannable(InvalidParams):
    """The job type's split fails with these params, so the job is not created (every surface refuses it as
    it refuses invalid params); `reason` is the failure in one line."""

    def __init__(self, job_type: str, reason: str):
        self.reason = reason
        super().__init__(job_type, {"__all__": [f"the plan cannot be made ({reason})"]})


class ScheduleNotFound(PartitionsError):
    def __init__(self, name: object, known: Iterable[str] = ()):
        self.name = name
        super().__init__(f"schedule {name!r} does not exist{did_you_mean(name, known)}")


class ScheduleNameTaken(PartitionsError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"schedule name {name!r} is already in use")


class InvalidSchedule(PartitionsError):
    """A schedule's name, cadence, time zone or deadline offset did not validate; `errors`: field -> messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        self.detail = error_detail(errors)
        super().__init__(f"invalid schedule: {self.detail}")


class NotPermitted(PartitionsError):
    """The acting user lacks the permission an operator command needs; carries it."""

    def __init__(self, permission: str, what: str):
        self.permission = permission
        super().__init__(f"not permitted: {what} needs the {permission} permission")


class JobCodeError(PartitionsError):
    """A job type is declared wrongly (caught at registration, not at run time)."""


# Control flow raised by job code ------------------------------------------------------


class JobControl(Exception):
    """Base of the exceptions job code raises to steer the runner."""


class Retry(JobControl):
    """Give the partition back and try again after `after` (counts as an attempt)."""

    def __init__(self, after: timedelta | float | None = None, reason: str = "retry requested"):
        self.after = after.total_seconds() if isinstance(after, timedelta) else after
        self.reason = reason
        super().__init__(reason)


class SkipItem(JobControl):
    """This item cannot be processed; record it as skipped and go on."""

    def __init__(self, reason: str = "skipped"):
        self.reason = reason
        super().__init__(reason)


class CancelJob(JobControl):
    """Stop the whole job now (the job ends cancelled with this reason)."""

    def __init__(self, reason: str = "cancelled by job code"):
        self.reason = reason
        super().__init__(reason)
