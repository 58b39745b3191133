"""The event vocabulary: every type a job's timeline (JobEvent) or a schedule's history (ScheduleEvent) may
hold, each labelled with when it is written, and the sets the engine reads, all derived from it.

`JobEvent.type` and `ScheduleEvent.type` take their choices from here (state only: the database column stays
free text, with no CHECK, so a label reworded or a type added is a migration that runs no SQL). Rows are written
by one helper each: `partitions.engine.lifecycle.event` (`events_insert` for the hot paths' bulk inserts) and
`partitions.operations.schedules.schedule_event`; the SQL registry's inserts (a claim, a completion) use the `{event_…}`
words rendered from this vocabulary. The writers do not check a type at run time: code names a member, and
`tests/test_event_vocabulary.py` checks that the engine's flows write only these types and that no module
spells one as a literal.
"""

from __future__ import annotations

from django.db import models

from partitions.core.states import JobStatus, SubJobStatus


class EventType(models.TextChoices):
    """What happened to a job, one of its partitions or one of its sub-jobs (past tense)."""

    # A job's course: its steps, its end, and an operator's actions on it.
    JOB_CREATED = "job_created", "a job started (services.job_start), with its params and run options"
    PLANNING_STARTED = "planning_started", "a worker took the plan step (prepare, then split)"
    PLANNING_FINISHED = "planning_finished", "the plan step wrote the partitions: the job runs"
    PLANNING_FAILED = "planning_failed", "prepare or split raised: the job failed before it ran"
    FINALIZING_STARTED = "finalizing_started", "every partition ended: a worker took the finalize step"
    JOB_SUCCEEDED = "job_succeeded", "finalize returned and nothing failed: the job succeeded"
    JOB_FAILED = "job_failed", "finalize raised, partitions or items failed, or the circuit breaker tripped"
    JOB_CANCELLED = "job_cancelled", "an operator (or the job type's CancelJob) cancelled the job"
    JOB_PAUSED = "job_paused", "an operator paused the job: its partitions stop at their next batch"
    JOB_RESUMED = "job_resumed", "an operator resumed a paused job"
    JOB_REOPENED = "job_reopened", "an operator retried a failed job's failures: a new attempt runs"
    JOB_FINALIZE_REQUESTED = ("job_finalize_requested", "an operator skipped a failed job's last failures: it "
                              "finalizes again, and succeeds if its completion proof holds")
    JOB_RERUN = "job_rerun", "an operator re-ran the job: a new job with its params started (data: new_job)"
    JOB_THROTTLE_CHANGED = "job_throttle_changed", "an operator changed the rate limit, pause or health override"
    JOB_SETTINGS_CHANGED = "job_settings_changed", "an operator changed max_parallel or the deadline (the knob)"
    JOB_THROTTLED = "job_throttled", "a health check began holding the job's partitions (once per episode)"
    JOB_THROTTLE_LIFTED = "job_throttle_lifted", "the health check passed (or was overridden): the job goes on"
    DEADLINE_AT_RISK = "deadline_at_risk", "tick's projection says the job will miss its deadline (once per episode)"
    DEADLINE_RECOVERED = "deadline_recovered", "tick's projection says the job at risk will meet its deadline again"
    SUBJOBS_RETRIED = "subjobs_retried", "an operator retried failed or skipped items (one event for them all)"
    SUBJOBS_SKIPPED = "subjobs_skipped", "an operator skipped the failed items of one reason, with a note"
    # A partition's.
    PARTITION_CLAIMED = "partition_claimed", "a worker took the partition's lease (data: token, attempt)"
    PARTITION_SUCCEEDED = "partition_succeeded", "a worker processed the partition's last item"
    PARTITION_FAILED = "partition_failed", "the partition's last attempt failed (or its lease lapsed on it)"
    PARTITION_RETRY_SCHEDULED = "partition_retry_scheduled", "an attempt failed: the partition waits, then retries"
    PARTITION_RELEASED = "partition_released", "its worker handed it back unfinished (budget spent, job paused)"
    PARTITION_CANCELLED = "partition_cancelled", "its worker stopped it because its job ended"
    PARTITION_LEASE_EXPIRED = "partition_lease_expired", "the reaper requeued it: its lease lapsed (worker gone)"
    PARTITION_RETRIED = "partition_retried", "an operator retried the failed partition with fresh attempts"
    PARTITION_SPLIT = "partition_split", "idle workers took over part of its remainder as a new partition"
    BATCH_SIZE_CHANGED = "batch_size_changed", "its worker resized the batches towards the target duration"
    # A sub-job's: an item that did not succeed (the runner writes these in one insert per batch).
    SUBJOB_FAILED = "subjob_failed", "a worker's item raised (data: error)"
    SUBJOB_SKIPPED = "subjob_skipped", "the job type skipped an item (SkipItem; data: reason)"
    # Written by a job type's own code, through `partitions.event`.
    PREPARE_SUMMARIZED = "prepare_summarized", "a job type's prepare recorded what it found"
    NOTIFICATION_SENT = "notification_sent", "a job type's own code sent a notification"


class ScheduleEventType(models.TextChoices):
    """What happened to a schedule: an operator's action, or one fire's outcome."""

    SCHEDULE_CREATED = "schedule_created", "an operator created the schedule"
    SCHEDULE_PAUSED = "schedule_paused", "an operator paused the schedule"
    SCHEDULE_RESUMED = "schedule_resumed", "an operator resumed the schedule"
    SCHEDULE_DELETED = "schedule_deleted", "an operator deleted the schedule (the history stays)"
    FIRE_STARTED = "fire_started", "a fire started a job"
    FIRE_SKIPPED = "fire_skipped", "a fire started nothing: the last run is still active (repeats are counted)"
    FIRE_MISSED = "fire_missed", "a fire came later than the misfire grace (data: missed, caught_up)"
    FIRE_FAILED = "fire_failed", "a fire raised: the schedule is paused with the reason"
    SCHEDULE_AUTO_PAUSED = "schedule_auto_paused", "a fire could not start its job (params, type): paused"


def event_type_choices() -> list[tuple[str, str]]:
    """JobEvent.type's choices. A callable, so a migration names it instead of copying the list: a type added or
    a sentence reworded needs no migration (choices never reach the database anyway)."""
    return EventType.choices


def schedule_event_type_choices() -> list[tuple[str, str]]:
    """ScheduleEvent.type's choices, by the same rule as `event_type_choices`."""
    return ScheduleEventType.choices


class NotificationKind(models.TextChoices):
    """What a notification (a Delivery) says: the names PARTITIONS_NOTIFY["events"] chooses from."""

    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    JOB_SUCCEEDED = "job_succeeded"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"
    DEADLINE_AT_RISK = "deadline_at_risk"
    DEADLINE_RECOVERED = "deadline_recovered"
    PARTITIONS_FAILED = "partitions_failed"


E, N = EventType, NotificationKind

#: Events that end an attempt of a job, and the status it ended in (partitions.reads.attempts).
ENDINGS: dict[EventType, JobStatus] = {E.JOB_SUCCEEDED: JobStatus.SUCCEEDED, E.JOB_FAILED: JobStatus.FAILED,
                                       E.JOB_CANCELLED: JobStatus.CANCELLED, E.PLANNING_FAILED: JobStatus.FAILED}
#: The events a job's attempts are read from (partitions.reads.attempts).
LIFECYCLE_EVENTS = frozenset({E.PLANNING_STARTED, E.PLANNING_FINISHED, E.FINALIZING_STARTED, E.JOB_PAUSED,
                              E.JOB_RESUMED, E.JOB_REOPENED, *ENDINGS})
#: Events after which the rate is measured afresh: what changes how fast a job may go (partitions.reads.projection).
SETTINGS_EVENTS = frozenset({E.PLANNING_FINISHED, E.JOB_THROTTLE_CHANGED, E.JOB_SETTINGS_CHANGED, E.JOB_PAUSED,
                             E.JOB_RESUMED, E.JOB_THROTTLED, E.JOB_THROTTLE_LIFTED, E.JOB_REOPENED})
#: The events that shape a job's course (its attempts and its settings); a partial index
#: (jobevent_course_idx) keeps reading them cheap on a job with a long timeline.
COURSE_EVENTS = LIFECYCLE_EVENTS | SETTINGS_EVENTS
#: The event a worker writes for an item that ended without succeeding, by the item's status.
SUBJOB_PROBLEMS: dict[SubJobStatus, EventType] = {SubJobStatus.FAILED: E.SUBJOB_FAILED,
                                                  SubJobStatus.SKIPPED: E.SUBJOB_SKIPPED}
#: The notifications an event makes, (kind, step) each: the notification-worthy events are its keys
#: (partitions.notify.relay).
NOTIFICATIONS: dict[EventType, tuple[tuple[NotificationKind, str], ...]] = {
    E.PLANNING_STARTED: ((N.STEP_STARTED, "prepare"),),
    E.PLANNING_FINISHED: ((N.STEP_FINISHED, "prepare"), (N.STEP_STARTED, "process")),
    E.PLANNING_FAILED: ((N.JOB_FAILED, "prepare"),),
    E.FINALIZING_STARTED: ((N.STEP_FINISHED, "process"), (N.STEP_STARTED, "finalize")),
    E.JOB_SUCCEEDED: ((N.STEP_FINISHED, "finalize"), (N.JOB_SUCCEEDED, "")),
    E.JOB_FAILED: ((N.JOB_FAILED, ""),),
    E.JOB_CANCELLED: ((N.JOB_CANCELLED, ""),),
    E.DEADLINE_AT_RISK: ((N.DEADLINE_AT_RISK, ""),),
    E.DEADLINE_RECOVERED: ((N.DEADLINE_RECOVERED, ""),),
    E.PARTITION_FAILED: ((N.PARTITIONS_FAILED, ""),),
}
#: What one fire of a schedule can end in (partitions.operations.schedules: a FireResult's outcome, tick's counts).
FIRE_OUTCOMES = (ScheduleEventType.FIRE_STARTED, ScheduleEventType.FIRE_SKIPPED, ScheduleEventType.FIRE_MISSED,
                 ScheduleEventType.SCHEDULE_AUTO_PAUSED, ScheduleEventType.FIRE_FAILED)
