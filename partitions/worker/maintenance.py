"""Duties of `tick`: each one runs once, returns counts, and is safe to run on several hosts at once."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models.functions import Now

from partitions import conf
from partitions.core.states import JobStatus
from partitions.engine import claiming, dispatch
from partitions.models import Job
from partitions.notify import outbox, relay
from partitions.operations import schedules
from partitions.operations.deadline_alerts import deadline_alerts_check
from partitions.operations.retention import history_prune
from partitions.reads import sampling
from partitions.worker import splitting, steps

log = logging.getLogger(__name__)

#: A partition whose lease lapsed this many times is halved when it is requeued (it may be too big for a lease).
HALVE_AFTER_LAPSES = 2


def fire_schedules() -> dict[str, int]:
    """Due schedules start their job (once across every cluster: each fire is claimed on its row)."""
    return schedules.schedules_fire_due()


def reap_expired_leases() -> dict[str, int]:
    """Crashed or stalled workers: their partitions go back to pending (or fail when out of attempts); one
    whose lease lapsed again is halved before its next attempt."""
    lapsed_again = claiming.partitions_lease_lapsed(min_attempts=HALVE_AFTER_LAPSES)
    reaped = claiming.partitions_reap_expired(actor="tick")
    reaped["halved"] = sum(
        splitting.halve_after_failure(partition_id, actor="tick", why="its lease lapsed again") is not None
        for partition_id in lapsed_again)
    return reaped


def _finalize(job_ids) -> int:
    """The finalize step of each job, run here (tick calls steps directly); how many this tick finalized."""
    done = sum(steps.job_finalize(job_id, worker_id="tick") is not None for job_id in job_ids)
    if done:
        dispatch.notifications_due()  # the jobs ended
    return done


def finalize_finished_jobs() -> dict[str, int]:
    """Running jobs whose partitions are all terminal (a lost finalize task) are finalized now."""
    return {"finalized": _finalize(claiming.jobs_without_unfinished_partitions())}


def restart_lost_steps() -> dict[str, int]:
    """Pending jobs nobody planned, and plan steps whose owner died, are dispatched again (a plan may run long:
    a worker takes it, not tick); finalize steps whose owner died are finalized here."""
    # The database clock, like the step leases themselves.
    stale_pending = Job.objects.filter(status=JobStatus.PENDING, created_at__lt=Now() - timedelta(seconds=30))
    expired_steps = Job.objects.filter(claiming.step_lapsed_q())
    planned = 0
    for job_id in list(stale_pending.values_list("pk", flat=True)) + list(
        expired_steps.filter(status=JobStatus.PLANNING).values_list("pk", flat=True)
    ):
        dispatch.job_created(job_id)
        planned += 1
    refinalized = _finalize(list(expired_steps.filter(status=JobStatus.FINALIZING).values_list("pk", flat=True)))
    return {"plans_dispatched": planned, "refinalized": refinalized}


def top_up_drains() -> dict[str, int]:
    """Running jobs with claimable work (e.g. a whole cluster died, or work became due) get drains."""
    job_ids = claiming.jobs_with_claimable_work()
    if job_ids:  # once: drains serve every job
        dispatch.work_available()
    return {"jobs_topped_up": len(job_ids)}


def sample_throughput() -> dict[str, int]:
    """A JobSample of each running job its workers have not sampled lately (the charts and the ETA read these)."""
    job_ids = list(Job.objects.filter(status=JobStatus.RUNNING).values_list("pk", flat=True))
    return {"sampled": sum(sampling.job_sample_take(job_id) for job_id in job_ids)}


def alert_deadlines() -> dict[str, int]:
    """One `deadline_at_risk` event per episode of a job projected late past the grace, one
    `deadline_recovered` when it is back on time (partitions.operations.deadline_alerts); relayed by the next duty."""
    return deadline_alerts_check()


def relay_notifications() -> dict[str, int]:
    """Job events to the outbox (a lost relay, the deadline alerts above), and a sender when some are due."""
    counts = relay.notifications_relay()
    if outbox.deliveries_due():
        dispatch.notifications_due()
        counts["senders_dispatched"] = 1
    return counts


def prune_history() -> dict[str, int]:
    """Finished jobs past PARTITIONS_RETENTION_DAYS lose their history, a bounded share per tick."""
    days = conf.get("RETENTION_DAYS")
    if not days:
        return {"jobs": 0}
    return history_prune(older_than=timedelta(days=days), batch_size=conf.get("PRUNE_BATCH"),
                         max_batches=conf.get("PRUNE_BATCHES_PER_TICK")).as_dict()


DUTIES = [fire_schedules, reap_expired_leases, finalize_finished_jobs, restart_lost_steps, top_up_drains,
          sample_throughput, alert_deadlines, relay_notifications, prune_history]


def run_once() -> dict[str, dict[str, int]]:
    """Run every duty; one failing duty does not stop the others."""
    results: dict[str, dict[str, int]] = {}
    for duty in DUTIES:
        try:
            results[duty.__name__] = duty()
        except Exception:
            log.exception("tick duty %s failed", duty.__name__)
            results[duty.__name__] = {"error": 1}
    log.info("tick: %s", results)
    return results



