"""Prometheus metrics read from the database at scrape time, by a custom collector in a private registry.

Every figure comes from the tables (and django-q2's broker table), so any process (a gunicorn worker, a
sidecar) answers with the fleet's state and nothing needs prometheus_client's multiprocess mode. The
`_total` counters are sums over partition counters, so they only grow (a sub-job retry takes failed items
out again: Prometheus reads that as a counter reset). Label values are escaped by the library.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connection
from django.db.models import Count, Sum
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from partitions import tasks
from partitions.core.states import JOB_TERMINAL, PARTITION_TERMINAL, JobStatus
from partitions.engine.claiming import lapsed_lease_q, live_lease_q, partitions_claimable_count
from partitions.engine.sql import queries
from partitions.models import Job, Partition
from partitions.reads.statistics import jobs_stats

ACTIVE = sorted(set(JobStatus) - JOB_TERMINAL - {JobStatus.PENDING})
#: Running jobs given per-job series at most (the oldest first), so a runaway fleet cannot explode cardinality.
RUNNING_JOBS_SHOWN = 100


def _scalar(sql: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        (value,) = cursor.fetchone()
    return float(value or 0)


def _gauge(name: str, documentation: str, labels: list[str], rows) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for *values, value in rows:
        family.add_metric([str(v) for v in values], value or 0)
    return family


class EngineCollector(Collector):
    """Jobs, partitions, items, leases and the broker queue, one grouped query per family."""

    def collect(self) -> Iterator[Metric]:
        yield _gauge("partitions_jobs", "Jobs by status and type.", ["status", "type"],
                     Job.objects.values_list("status", "type_name").annotate(n=Count("id")).order_by())
        active = Partition.objects.filter(job__status__in=ACTIVE)
        yield _gauge("partitions_active_partitions", "Partitions of active jobs by status.", ["status"],
                     active.values_list("status").annotate(n=Count("id")).order_by())
        items = list(active.values_list("job__type_name").annotate(
            total=Sum("estimated_items"), done=Sum("done_items"), failed=Sum("failed_items")).order_by())
        for column, what in enumerate(["estimated", "done", "failed"], start=1):
            yield _gauge(f"partitions_active_items_{what}", f"Items {what} in active jobs, by type.", ["type"],
                         [(row[0], row[column]) for row in items])
        yield _gauge("partitions_live_leases", "Partitions held by a live lease.", [],
                     [(Partition.objects.filter(live_lease_q()).count(),)])
        yield _gauge("partitions_expired_leases", "Running partitions whose lease lapsed (taken over by the next "
                     "claim, or reaped by tick).", [], [(Partition.objects.filter(lapsed_lease_q()).count(),)])
        yield _gauge("partitions_claimable_partitions", "Partitions of running jobs that a worker could claim now.",
                     [], [(partitions_claimable_count(),)])
        yield _gauge("partitions_oldest_running_partition_seconds", "Seconds since the longest-running partition "
                     "was first claimed (database clock); 0 when none runs.", [],
                     [(_scalar(queries["oldest_running_partition_seconds"]),)])
        yield _gauge("partitions_throttled_jobs",
                     "Running jobs a health check holds (partitions.engine.health), by type.",
                     ["type"], Job.objects.filter(status="running", throttled_since__isnull=False)
                     .values_list("type_name").annotate(n=Count("id")).order_by())
        yield from self._running_jobs()
        yield _gauge("django_q_queued_tasks", "Tasks in the django-q2 ORM broker.", [], [(tasks.queued_tasks(),)])
        yield from self._counters()

    def _running_jobs(self) -> Iterator[Metric]:
        """Rate, ETA and workers needed of each running job: `JobStats.figures()`, the computation the job page,
        the CLI and the deadline warning show (labels: job id and type; only running jobs, so few series)."""
        stats = jobs_stats(list(Job.objects.filter(status=JobStatus.RUNNING).order_by("id")[:RUNNING_JOBS_SHOWN]))
        figures = [(str(pk), s.job.type_name, s.figures()) for pk, s in stats.items()]
        for name, key, doc in [
            ("partitions_job_items_per_second", "items_per_second", "Current throughput of a running job."),
            ("partitions_job_eta_seconds", "eta_seconds", "Seconds a running job needs at its current rate."),
            ("partitions_job_workers_needed", "workers_needed", "Parallel workers a running job needs to meet "
             "its deadline, when workers or max parallel limit it."),
            ("partitions_job_rate_needed", "rate_needed", "Items/s a running job needs to meet its deadline, when "
             "its rate limit limits it."),
        ]:
            yield _gauge(name, doc, ["job", "type"], [(pk, type_name, f[key]) for pk, type_name, f in figures
                                                      if f[key] is not None])
        yield _gauge("partitions_job_limited", "What limits a running job now (rate_limit, max_parallel, workers, "
                     "health, paused): 1 for its one limit.", ["job", "type", "limited_by"],
                     [(pk, type_name, f["limited_by"], 1) for pk, type_name, f in figures if f["limited_by"]])

    def _counters(self) -> Iterator[Metric]:
        by_type = list(Partition.objects.values_list("job__type_name").annotate(
            done=Sum("done_items"), failed=Sum("failed_items"), skipped=Sum("skipped_items")).order_by())
        items = CounterMetricFamily("partitions_items", "Items processed, by job type and outcome.",
                                    labels=["type", "outcome"])
        for type_name, *counts in by_type:
            for outcome, n in zip(["done", "failed", "skipped"], counts, strict=True):
                items.add_metric([type_name, outcome], n or 0)
        yield items
        finished = CounterMetricFamily("partitions_partitions_finished", "Partitions that reached a terminal "
                                       "status, by job type and status.", labels=["type", "status"])
        for type_name, status, n in (Partition.objects.filter(status__in=sorted(PARTITION_TERMINAL))
                                     .values_list("job__type_name", "status").annotate(n=Count("id")).order_by()):
            finished.add_metric([type_name, status], n)
        yield finished


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(EngineCollector())


def metrics_text() -> bytes:
    """The Prometheus text exposition of the engine's registry (the database is read now)."""
    return generate_latest(REGISTRY)
