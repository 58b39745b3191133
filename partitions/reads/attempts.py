"""A job's attempts, read from its lifecycle events: run 1, then one retry per reopening.

Pure: events in, attempts out. Statistics show each attempt on its own; the projection's average rate and
the Duration figure use their work time, so time a job sat failed (between its end and a retry) or paused
is never counted as work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from partitions.core.events import ENDINGS, EventType


@dataclass(frozen=True)
class Mark:
    """One lifecycle event: its type, when (database clock), its data and who caused it."""

    type: str
    at: datetime
    data: dict = field(default_factory=dict)
    actor: str = ""


@dataclass
class Attempt:
    """Run 1 (number 0) or retry N: its steps' spans, the time it spent paused, and how it ended."""

    number: int
    started_at: datetime
    ended_at: datetime | None = None
    outcome: str | None = None
    prepare: tuple[datetime, datetime | None] | None = None
    process: tuple[datetime, datetime | None] | None = None
    finalize: tuple[datetime, datetime | None] | None = None
    paused_seconds: float = 0.0
    paused_since: datetime | None = None
    #: Items handled (done + failed + skipped) when the attempt began and ended; None when unknown.
    handled_at_start: int | None = 0
    handled_at_end: int | None = None

    @property
    def label(self) -> str:
        return "run 1" if self.number == 0 else f"retry {self.number}"

    def step_seconds(self, step: str, now: datetime) -> float | None:
        span = getattr(self, step)
        if span is None:
            return None
        seconds = ((span[1] or self.ended_at or now) - span[0]).total_seconds()
        return max(0.0, seconds - (self.paused_in(now) if step == "process" else 0.0))

    def paused_in(self, now: datetime) -> float:
        """Seconds paused, including a pause still going on."""
        ongoing = (now - self.paused_since).total_seconds() if self.paused_since and self.ended_at is None else 0.0
        return self.paused_seconds + max(0.0, ongoing)

    def active_seconds(self, now: datetime) -> float:
        """From its start to its end (or now), less the time paused."""
        return max(0.0, ((self.ended_at or now) - self.started_at).total_seconds() - self.paused_in(now))

    def items(self) -> int | None:
        if self.handled_at_start is None or self.handled_at_end is None:
            return None
        return max(0, self.handled_at_end - self.handled_at_start)


def _end(span: tuple[datetime, datetime | None] | None, at: datetime) -> tuple[datetime, datetime | None] | None:
    return None if span is None else (span[0], span[1] or at)


def _note(attempt: Attempt, mark: Mark) -> None:
    """One event inside an open attempt: a step begins or ends, a pause begins or ends, the attempt ends."""
    if mark.type == EventType.PLANNING_FINISHED:
        attempt.prepare = _end(attempt.prepare, mark.at)
        attempt.process = attempt.process or (mark.at, None)
    elif mark.type == EventType.FINALIZING_STARTED:
        attempt.process = _end(attempt.process, mark.at)
        attempt.finalize = attempt.finalize or (mark.at, None)
    elif mark.type == EventType.JOB_PAUSED and attempt.paused_since is None:
        attempt.paused_since = mark.at
    elif mark.type in (EventType.JOB_RESUMED, *ENDINGS) and attempt.paused_since is not None:
        attempt.paused_seconds += (mark.at - attempt.paused_since).total_seconds()
        attempt.paused_since = None
    if mark.type in ENDINGS:
        attempt.ended_at, attempt.outcome = mark.at, ENDINGS[mark.type]
        attempt.prepare = _end(attempt.prepare, mark.at)
        attempt.process, attempt.finalize = _end(attempt.process, mark.at), _end(attempt.finalize, mark.at)


def _finalize_again(attempt: Attempt, mark: Mark) -> None:
    """An ended attempt finalized again (an operator skipped its last failures: `states.JOB_TRANSITIONS`' failed ->
    finalizing): it ends anew with that finalize, and the time it sat ended counts as no work."""
    attempt.paused_seconds += (mark.at - attempt.ended_at).total_seconds()
    attempt.ended_at, attempt.outcome, attempt.finalize = None, None, (mark.at, None)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) else None


def attempts_of(marks: Sequence[Mark], *, handled_now: int) -> list[Attempt]:
    """The attempts the events describe, oldest first ([] before planning starts). A re-claimed step keeps its
    first opening; `handled_now` closes the count of the last attempt. A reopening's event carries the items
    handled before it (`handled`) and after the retry took failed items out of the counters (`handled_after`)."""
    attempts: list[Attempt] = []
    for mark in sorted(marks, key=lambda m: m.at):
        current = attempts[-1] if attempts else None
        if mark.type == EventType.PLANNING_STARTED and current is None:
            attempts.append(Attempt(0, mark.at, prepare=(mark.at, None)))
        elif mark.type == EventType.JOB_REOPENED and current is not None:
            current.handled_at_end = _count(mark.data.get("handled"))
            attempts.append(Attempt(current.number + 1, mark.at, process=(mark.at, None),
                                    handled_at_start=_count(mark.data.get("handled_after", mark.data.get("handled")))))
        elif mark.type == EventType.FINALIZING_STARTED and current is not None and current.ended_at is not None:
            _finalize_again(current, mark)
        elif current is not None and current.ended_at is None:
            _note(current, mark)
    if attempts and attempts[-1].handled_at_end is None:
        attempts[-1].handled_at_end = handled_now
    return attempts


def work_seconds(attempts: Sequence[Attempt], now: datetime) -> float:
    """Seconds spent processing over every attempt (paused time and time between attempts excluded)."""
    return sum(a.step_seconds("process", now) or 0.0 for a in attempts)


def active_seconds(attempts: Sequence[Attempt], now: datetime) -> float | None:
    """The job's duration as work: every attempt from its start to its end, less pauses (None before start)."""
    return sum(a.active_seconds(now) for a in attempts) if attempts else None
