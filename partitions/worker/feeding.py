"""Feeds a partition's items through its item pool batch after batch, so no slot idles at a batch edge.

The next batch is fetched (after the last *fetched* key, not the checkpoint) while
the current one's tail is still in flight, and joins the same flow; the
checkpoint only ever covers the contiguous completed prefix, so it lags behind
the items in flight and never passes one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from partitions.core.exceptions import JobControl, SkipItem
from partitions.worker.concurrency import ItemPool, ItemResult
from partitions.worker.sources import ItemSource


def first_control(results: list[ItemResult]) -> tuple[int, JobControl] | None:
    """Position and exception of the first Retry/CancelJob (not SkipItem) among results."""
    for position, result in enumerate(results):
        if isinstance(result.error, JobControl) and not isinstance(result.error, SkipItem):
            return position, result.error
    return None


def feed_items(pool: ItemPool, source: ItemSource, *, fetch: Callable[[Any, int], list], after: Any,
               batch_size: Callable[[], int], admit: Callable[[int], bool], may_start: Callable[[], bool],
               release: Callable[[int], None],
               run_item: Callable[[Any], ItemResult], commit: Callable[[list, list[ItemResult]], bool],
               every: float) -> int:
    """Run every item after `after` through `pool`, checkpointing as it goes; return the batches fetched.

    `fetch(after, limit)` reads the next batch of `source`; `batch_size()` is the size of the next fetch;
    `admit(n)` is called with each fetched batch before its items start (it may wait: the rate limit); False
    leaves that batch unprocessed and stops like a refused commit. `may_start()` is asked before each new
    item starts (the drain's budget); False stops the same way. `release(n)` is told, once the flow stops,
    how many of the last admitted items never started.

    `commit(items, results)` receives the completed prefix in order, in pieces: whenever it passes the end
    of a fetched batch, and at least every `every` seconds. It returns False to stop: nothing more is
    fetched, the items already started finish (with those their ordering key held back before them), are
    committed, and the rest is left for the next run. A Retry or CancelJob from an item stops at once: the
    items before it are committed, then it is raised.
    """
    flow = pool.flow(run_item, key_of=source.ordering_key, may_start=may_start)
    batch_ends: deque[int] = deque()  # item counts at which a fetched batch ends
    fetched = taken = batches = 0
    exhausted = False
    pending_items: list = []
    pending_results: list[ItemResult] = []
    last_commit = time.monotonic()

    def refill() -> None:
        nonlocal after, fetched, batches, exhausted
        # Fetch while fewer items wait to start than there are slots, so the pool never runs dry at a batch
        # edge; but run at most a batch (plus the slots) past the oldest unfinished item, so one slow item
        # holds back a bounded number of finished ones (memory, and what a crash would repeat).
        while (not (exhausted or flow.stopped) and flow.unstarted < pool.concurrency
               and fetched - taken < (size := batch_size()) + pool.concurrency):
            batch = fetch(after, size)
            if not batch:
                exhausted = True
                break
            if not admit(len(batch)):
                flow.stop(fill_gaps=True)
                break
            flow.add(batch)
            after, fetched, batches = source.checkpoint_of(batch[-1]), fetched + len(batch), batches + 1
            batch_ends.append(fetched)
            # Admitted items start now, not after the next batch's admission (a rate limit's wait): a refused
            # admission stops the flow after the items already started, and must not strand admitted ones.
            flow.start()
        flow.start()

    def flush() -> None:
        nonlocal last_commit
        if pending_items and not commit(pending_items, pending_results):
            flow.stop(fill_gaps=True)
        pending_items.clear()
        pending_results.clear()
        last_commit = time.monotonic()

    refill()
    while flow.start():
        flow.wait()
        items, results = flow.take()
        taken += len(items)
        if control := first_control(results):
            position, error = control
            flow.stop(fill_gaps=False)
            release(flow.unstarted)
            pending_items.extend(items[:position])
            pending_results.extend(results[:position])
            flush()
            raise error
        refill()  # before committing, so the commit runs with every slot busy
        pending_items.extend(items)
        pending_results.extend(results)
        if pending_items and (_pop_passed(batch_ends, taken) or time.monotonic() - last_commit >= every):
            flush()
    release(flow.unstarted)
    flush()
    return batches


def _pop_passed(batch_ends: deque[int], taken: int) -> bool:
    """Drop the batch ends `taken` items passed; whether there was one."""
    passed = False
    while batch_ends and batch_ends[0] <= taken:
        batch_ends.popleft()
        passed = True
    return passed
