"""`bench.sleep_items`: the I/O-bound job `bench scale` runs on real qclusters, registered on import.

The qcluster subprocesses import it through `PARTITIONS_JOB_MODULES`; each item only waits, so the
machine's cores are never what limits throughput: only how work reaches the workers does.
"""

from __future__ import annotations

import time

from django import forms

from partitions.jobtypes.base import JobType
from partitions.jobtypes.registry import register
from partitions.jobtypes.splits import Items, ItemSpec

#: Dotted path for `PARTITIONS_JOB_MODULES`.
MODULE = __name__


class SleepItemsParams(forms.Form):
    items = forms.IntegerField(min_value=1)
    chunk_size = forms.IntegerField(min_value=1, help_text="Items per partition.")
    work_ms = forms.IntegerField(min_value=0, help_text="What each item waits, in milliseconds.")
    concurrency = forms.IntegerField(min_value=1, max_value=64, help_text="Items in flight per worker.")


@register
class SleepItems(JobType):
    """`items` sub-jobs in partitions of `chunk_size`; each sleeps `work_ms`, `concurrency` at once per worker."""

    name = "bench.sleep_items"
    Params = SleepItemsParams
    atomic = False
    item_concurrency = 4
    batch_size = 20

    def concurrency(self, params):
        return params["concurrency"]

    def split(self, job, params):
        return Items((ItemSpec(key=f"item-{i}") for i in range(params["items"])), chunk_size=params["chunk_size"])

    def process_item(self, ctx, item):
        time.sleep(ctx.params["work_ms"] / 1000)
