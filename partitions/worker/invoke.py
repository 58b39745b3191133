"""How the engine calls a job type's code on a batch: `before_batch` on what was fetched, then `process_batch`,
or `process_item` on each item with the type's immediate retries, then `on_checkpoint` with the items that
succeeded. The one calling sequence of the runner (`worker/run.py`) and the sample dry-run (`sample_run.py`):
they differ only in what they do around it (transactions, pacing, the fenced checkpoint).
"""

from __future__ import annotations

import time
import traceback as tb
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from django.db import transaction

from partitions.core.exceptions import JobControl
from partitions.jobtypes.base import JobType
from partitions.worker.concurrency import ItemResult
from partitions.worker.context import Context
from partitions.worker.feeding import first_control


def _no_observer(seconds: float) -> None:
    """Nobody paces on the time work takes (the sample)."""


class JobCode:
    """A job type's code on one partition, called as every run calls it.

    `item_savepoints`: each process_item call in its own transaction (a savepoint inside the batch's);
    `observe(seconds)` is told how long each item or whole batch that succeeded took (the pacer's estimate).
    """

    def __init__(self, job_type: JobType, ctx: Context, *, item_savepoints: bool,
                 observe: Callable[[float], None] = _no_observer):
        self.job_type, self.ctx, self.item_savepoints, self.observe = job_type, ctx, item_savepoints, observe

    def before_batch(self, items: list) -> list:
        """What the type reads in bulk for a fetched batch (`before_batch`; nothing for an empty one); the batch."""
        if items:
            self.job_type.before_batch(self.ctx, items)
        return items

    def process(self, items: list, *, commit: Callable[[list, list[ItemResult]], None],
                may_run: Callable[[], bool] = lambda: True, unstarted: Callable[[int], None] = lambda n: None,
                ) -> list[ItemResult]:
        """`process_batch` on the batch, or `process_item` on each item while `may_run()` (the first always
        runs; `unstarted(n)` is told how many did not), then `commit(items, results)` with the items that ran:
        it calls `on_checkpoint` (below). A Retry or CancelJob an item raised is raised instead, nothing
        committed. Returns the results, in the items' order."""
        if not self.job_type.processes_items_one_by_one():
            started = time.perf_counter()
            self.job_type.process_batch(self.ctx, items)
            self.observe(time.perf_counter() - started)  # the batch is the unit of work
            results = [ItemResult(i) for i in range(len(items))]
        else:
            results = []
            for item in items:
                if results and not may_run():
                    break
                results.append(self.run_item(item))
            unstarted(len(items) - len(results))
            if control := first_control(results):
                raise control[1]
        commit(items[:len(results)], results)
        return results

    def run_item(self, item: Any) -> ItemResult:
        """`process_item` with the type's immediate retries: its value, or the error of its last attempt (a
        JobControl at once, never retried)."""
        attempts = self.job_type.item_retries + 1
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                with transaction.atomic() if self.item_savepoints else nullcontext():
                    value = self.job_type.process_item(self.ctx, item)
                self.observe(time.perf_counter() - started)
                return ItemResult(0, value=value, duration_ms=_ms_since(started))
            except JobControl as exc:
                return ItemResult(0, error=exc, duration_ms=_ms_since(started))
            except Exception as exc:
                if attempt == attempts:
                    return ItemResult(0, error=exc, traceback=tb.format_exc(), duration_ms=_ms_since(started))
        raise AssertionError("unreachable")

    def on_checkpoint(self, items: list, results: list[ItemResult]) -> None:
        """`on_checkpoint` with the items that succeeded and their values (not called when none did); the
        caller runs it inside the transaction that commits them."""
        ok = [(item, result.value) for item, result in zip(items, results, strict=True) if result.error is None]
        if ok:
            self.job_type.on_checkpoint(self.ctx, [item for item, _ in ok], [value for _, value in ok])


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
