"""Bounded in-partition concurrency with per-key ordering (serial / parallel / hybrid).

Items with different ordering keys run in parallel, up to `concurrency` at once;
items that share a key never overlap and start in their original order. Items
may join a flow while earlier ones run (the next batch is added before the
current one's tail finishes), and results leave it only as the contiguous
completed prefix, so a checkpoint never passes an item that is still in flight.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextvars import copy_context
from dataclasses import dataclass
from typing import Any

from django.db import connections


@dataclass
class ItemResult:
    """What happened to one item: `error` is the exception it raised, or None."""

    index: int
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""
    duration_ms: int = 0


class ItemPool:
    """A thread pool kept for one partition run; closes its threads' DB connections on exit."""

    def __init__(self, concurrency: int):
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="partition-item")

    def __enter__(self) -> ItemPool:
        return self

    def __exit__(self, *exc) -> None:
        # Each thread holds its own Django connection; a barrier makes every
        # thread run exactly one close task before the pool shuts down.
        barrier = threading.Barrier(self.concurrency)

        def close_own_connections() -> None:
            barrier.wait(timeout=30)
            connections.close_all()

        for future in [self._pool.submit(close_own_connections) for _ in range(self.concurrency)]:
            future.exception()
        self._pool.shutdown(wait=True)

    def flow(self, fn: Callable[[Any], ItemResult], *, key_of: Callable[[Any], str],
             may_start: Callable[[], bool] | None = None) -> ItemFlow:
        """A new stream of items through this pool's threads."""
        return ItemFlow(self._pool, self.concurrency, fn, key_of, may_start)

    def run(self, items: Sequence[Any], fn: Callable[[Any], ItemResult], *, key_of: Callable[[Any], str],
            on_prefix: Callable[[int, list], None] | None = None) -> list[ItemResult]:
        """Run fn over a fixed list of items; return results in item order.

        `on_prefix(n, results)` is called (in the caller's thread) whenever the
        contiguous completed prefix grows: results[:n] are all filled.
        """
        flow = self.flow(fn, key_of=key_of)
        flow.add(items)
        results: list[ItemResult] = []
        while flow.start():
            flow.wait()
            if done := flow.take()[1]:
                results += done
                if on_prefix:
                    on_prefix(len(results), results)
        return results


class ItemFlow:
    """Items in order through a pool: added at the end, started by key order, taken back as a completed prefix.

    Every method is called from one thread (the caller's); only `fn` runs on the pool's threads.
    """

    def __init__(self, executor: ThreadPoolExecutor, concurrency: int, fn: Callable[[Any], ItemResult],
                 key_of: Callable[[Any], str], may_start: Callable[[], bool] | None = None):
        self._executor, self._concurrency, self._fn, self._key_of = executor, concurrency, fn, key_of
        #: Asked before an item past every started one starts; False stops the flow (as `stop(fill_gaps=True)`).
        self._may_start = may_start
        self._waiting: dict[str, deque[tuple[int, Any]]] = {}  # key -> its unstarted (index, item), in order
        # Heap of (index, key): the head of every waiting key that has nothing in flight, so the
        # earliest startable item is found in O(log n) however many keys wait.
        self._ready: list[tuple[int, str]] = []
        self._in_flight: dict[Future, tuple[int, Any, str]] = {}
        self._finished: dict[int, tuple[Any, ItemResult]] = {}
        self._added = 0  # index of the next item added
        self._taken = 0  # index of the next item take() hands back
        self._highest_started = -1
        self._limit: int | None = None  # no item at or past this index starts
        self.unstarted = 0

    def add(self, items: Sequence[Any]) -> None:
        """Queue items after every item added so far."""
        for item in items:
            index = self._added
            key = self._key_of(item) or f"\0{index}"
            if key not in self._waiting:
                self._waiting[key] = deque()
                if not self._busy(key):
                    heapq.heappush(self._ready, (index, key))
            self._waiting[key].append((index, item))
            self._added += 1
        self.unstarted += len(items)

    def start(self) -> bool:
        """Start the earliest startable items until the pool is full; True while any item is in flight."""
        while len(self._in_flight) < self._concurrency and self._ready:
            index, key = self._ready[0]
            if self._limit is not None and index >= self._limit:
                break
            if index > self._highest_started and self._may_start is not None and not self._may_start():
                self.stop(fill_gaps=True)
                continue
            heapq.heappop(self._ready)
            queue = self._waiting[key]
            _, item = queue.popleft()
            if not queue:
                del self._waiting[key]
            # The item thread logs with this partition's context (job, partition, lease_token, worker).
            self._in_flight[self._executor.submit(copy_context().run, self._fn, item)] = (index, item, key)
            self._highest_started = max(self._highest_started, index)
            self.unstarted -= 1
        return bool(self._in_flight)

    def wait(self) -> None:
        """Block until at least one item in flight finishes; its key's next item becomes startable."""
        done, _ = wait(self._in_flight, return_when=FIRST_COMPLETED)
        for future in done:
            index, item, key = self._in_flight.pop(future)
            result = future.result()
            result.index = index
            self._finished[index] = (item, result)
            if key in self._waiting:
                heapq.heappush(self._ready, (self._waiting[key][0][0], key))

    def take(self) -> tuple[list, list[ItemResult]]:
        """The completed items after those already taken, up to the first unfinished one, with their results."""
        items, results = [], []
        while self._taken in self._finished:
            item, result = self._finished.pop(self._taken)
            items.append(item)
            results.append(result)
            self._taken += 1
        return items, results

    def stop(self, *, fill_gaps: bool) -> None:
        """Start nothing new; with fill_gaps, still start the items before the last one started (those held back
        by their ordering key), so the completed prefix can reach every item that ran."""
        limit = self._highest_started + 1 if fill_gaps else 0
        self._limit = limit if self._limit is None else min(self._limit, limit)

    @property
    def stopped(self) -> bool:
        """Whether `stop` was called (or `may_start` said no): nothing new starts."""
        return self._limit is not None

    def _busy(self, key: str) -> bool:
        return any(k == key for _, _, k in self._in_flight.values())
