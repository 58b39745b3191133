"""`bench api`: the JSON API's read latency with many jobs: a page of the job list and one job's status, through
the whole Django stack (middleware, token auth, validation, serialization) with an in-process client, each
compared with the same read made in the same run as a direct call: the ORM's page of rows, and the selector the
endpoint calls (`job_summary` over `jobs_stats`; `job_summary` + `job_run_statistics`) without HTTP.

The jobs are inserted in bulk (N finished ones and a few running, each with two partitions and its events), so
what is measured is the read, at the size of a busy installation's history.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from django.contrib.auth.models import User
from django.db.models.functions import Now
from django.test import Client
from django.test.utils import override_settings

from opsapp.bench import harness
from partitions.core.events import EventType
from partitions.engine.lifecycle import event_row, events_insert
from partitions.httpapi.tokens import token_create
from partitions.management.cli_output import job_summary
from partitions.models import Job, Partition
from partitions.reads.statistics import job_run_statistics, job_stats, jobs_stats

#: Reads timed per figure (after WARMUP untimed ones), and the page size of the list.
READS, QUICK_READS, WARMUP, PAGE = 200, 30, 5, 50
TYPE = "billing.send_invoices"
PARAMS = {"period": "2026-11", "work_ms": 0}
INSERT_BATCH = 2_000


def _insert(n: int) -> list[int]:
    """N jobs (every 20th running, the rest succeeded), two partitions and two events each; their ids."""
    ids: list[int] = []
    for start in range(0, n, INSERT_BATCH):
        count = min(INSERT_BATCH, n - start)
        jobs = Job.objects.bulk_create([
            Job(type_name=TYPE, params=PARAMS, status="running" if (start + i) % 20 == 0 else "succeeded",
                started_at=Now(), finished_at=None if (start + i) % 20 == 0 else Now())
            for i in range(count)])
        Partition.objects.bulk_create([
            Partition(job=job, seq=seq, kind="items", key=["id"], status="succeeded", estimated_items=20,
                      done_items=20, finished_at=Now()) for job in jobs for seq in range(2)])
        events_insert([event_row(job.pk, type_, "bench") for job in jobs
                       for type_ in (EventType.JOB_CREATED, EventType.PLANNING_FINISHED)])
        ids += [job.pk for job in jobs]
    return ids


def _percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds."""
    cuts = statistics.quantiles(samples, n=20, method="inclusive")
    return statistics.median(samples) * 1000, cuts[18] * 1000


def _timed(reads: int, read: Callable[[int], object], ids: list[int]) -> tuple[float, float]:
    chosen = random.Random(7).choices(ids, k=reads + WARMUP)
    samples = []
    for i, job_id in enumerate(chosen):
        began = time.perf_counter()
        read(job_id)
        if i >= WARMUP:
            samples.append(time.perf_counter() - began)
    return _percentiles(samples)


def _report(result: harness.Result, key: str, label: str, figures: dict[str, tuple[float, float]]) -> None:
    """p50 and p95 of the API read and of its two baselines, the API's as ratios to both."""
    for q, index in (("p50", 0), ("p95", 1)):
        orm = result.baseline(f"{key}_orm_{q}", f"{label}: ORM rows, {q}", figures["orm"][index], "ms")
        direct = result.baseline(f"{key}_direct_{q}", f"{label}: selector call, {q}", figures["direct"][index], "ms")
        result.figure(f"{key}_api_{q}", f"{label}: GET through the API, {q}", figures["api"][index], "ms",
                      vs=(orm, direct))


def _check(response, what: str) -> None:
    if response.status_code != 200:
        raise harness.BenchError(f"api: {what} answered {response.status_code}: {response.content[:300]!r}")


def run(opts: harness.Options) -> harness.Result:
    n = opts.pick(default=10_000, quick=400)
    reads = QUICK_READS if opts.quick else READS
    result = harness.Result("api", params={"jobs": n, "reads": reads, "page": PAGE})
    opts.log(f"api: inserting {n:,} jobs")
    ids = _insert(n)
    harness.vacuum("partitions_job", "partitions_partition", "partitions_jobevent")
    user = User.objects.create_superuser("bench-api", "bench@example.com", None)
    client = Client(headers={"Authorization": f"Bearer {token_create(user, 'bench')[1]}"})
    with override_settings(ALLOWED_HOSTS=["testserver"], SECURE_SSL_REDIRECT=False):
        def api_list(after: int) -> None:
            _check(client.get(f"/api/v1/jobs?limit={PAGE}&after={after}"), "the job list")

        def api_status(job_id: int) -> None:
            _check(client.get(f"/api/v1/jobs/{job_id}"), "a job's status")

        def orm_list(after: int) -> None:
            list(Job.objects.filter(id__lt=after).order_by("-id")[: PAGE + 1])

        def direct_list(after: int) -> None:
            page = list(Job.objects.filter(id__lt=after).order_by("-id")[: PAGE + 1])[:PAGE]
            stats = jobs_stats(page)
            [job_summary(job, stats[job.pk]) for job in page]

        def direct_status(job_id: int) -> None:
            job = Job.objects.get(pk=job_id)
            stats = job_stats(job)
            job_summary(job, stats), job_run_statistics(job, stats=stats)

        opts.log(f"api: {reads} list pages and {reads} statuses, each through the API and as direct calls")
        _report(result, "list", f"job list page of {PAGE}", {
            "orm": _timed(reads, orm_list, ids), "direct": _timed(reads, direct_list, ids),
            "api": _timed(reads, api_list, ids)})
        _report(result, "status", "one job's status", {
            "orm": _timed(reads, lambda job_id: Job.objects.get(pk=job_id), ids),
            "direct": _timed(reads, direct_status, ids), "api": _timed(reads, api_status, ids)})
    result.checks["jobs"] = Job.objects.count()
    return result
