"""`bench subjobs`: no-op sub-jobs per second end to end (start, plan, W processes drain, finalize),
vs tuned django-q2 running one no-op task per sub-job (enqueue and run).
"""

from __future__ import annotations

from django import forms

from opsapp.bench import djangoq, harness
from partitions.jobtypes.base import JobType
from partitions.jobtypes.splits import Items, ItemSpec
from partitions.models import Job, SubJob
from partitions.worker import steps

CHUNK_SIZE = 1000
#: django-q2 runs this share of the sub-jobs' count as tasks (its rate does not depend on the queue's length).
Q2_SHARE = 1 / 10


class NoopItemsParams(forms.Form):
    items = forms.IntegerField(min_value=1)


class NoopItems(JobType):
    """`items` sub-jobs that do nothing, in chunks of CHUNK_SIZE, 500 per batch."""

    name = "bench.noop_items"
    Params = NoopItemsParams
    batch_size = 500

    def split(self, job, params):
        return Items((ItemSpec(key=f"item-{i}") for i in range(params["items"])), chunk_size=CHUNK_SIZE)

    def process_batch(self, ctx, items):
        """Nothing: the cost measured is the engine's own."""


def run(opts: harness.Options) -> harness.Result:
    items, workers = opts.pick(default=50_000, quick=2_000), opts.workers
    tasks = max(50, int(items * Q2_SHARE))
    result = harness.Result("subjobs", params={"subjobs": items, "workers": workers, "chunk_size": CHUNK_SIZE,
                                               "batch_size": NoopItems.batch_size, "q2_tasks": tasks})
    opts.log(f"subjobs: {djangoq.TUNED.label}, {tasks} tasks")
    q2_seconds = djangoq.run_tasks(djangoq.TUNED, workers=workers, tasks=tasks, time_enqueue=True)
    q2 = result.baseline(djangoq.TUNED.key, f"{djangoq.TUNED.label} (1 task per sub-job)", tasks / q2_seconds,
                         "sub-jobs/s")
    opts.log(f"subjobs: engine, {items} sub-jobs, {workers} processes")
    with harness.engine_for_bench(NoopItems), harness.stopwatch() as end_to_end:
        job, planning = harness.planned_job(NoopItems.name, {"items": items})
        drain_seconds, _ = harness.run_workers(workers, harness.drain_job, job.pk)
        steps.job_finalize(job.pk, worker_id="bench")
    job = Job.objects.get(pk=job.pk)
    succeeded = SubJob.objects.filter(job=job, status="succeeded").count()
    if job.status != "succeeded" or succeeded != items:
        raise harness.BenchError(f"subjobs: job {job.status}, {succeeded} of {items} sub-jobs succeeded")
    result.figure("engine_e2e", "engine end to end", items / end_to_end(), "sub-jobs/s", vs=(q2,))
    result.figure("engine_drain", "engine drain only", items / drain_seconds, "sub-jobs/s", vs=(q2,))
    result.figure("plan_s", "engine plan (sub-job rows written)", planning, "s")
    result.checks["subjobs_succeeded"] = succeeded
    return result
