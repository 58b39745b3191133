"""Bounded in-partition concurrency with per-key ordering (serial / parallel / hybrid).

Items with different ordering keys run in parallel, up to `concurrency` at once;
items that share a key never overlap and start in their original order. The
caller learns, through `on_prefix`, how far the contiguous completed prefix has
advanced, so a checkpoint never passes an item that is still in flight.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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

    def run(self, items: Sequence[Any], fn: Callable[[Any], ItemResult], *, key_of: Callable[[Any], str],
            on_prefix: Callable[[int, list], None] | None = None) -> list[ItemResult]:
        """Run fn over items; return results in item order.

        `on_prefix(n, results)` is called (in the caller's thread) whenever the
        contiguous completed prefix grows: results[:n] are all filled.
        """
        waiting: OrderedDict[str, deque[int]] = OrderedDict()
        for index, item in enumerate(items):
            waiting.setdefault(key_of(item) or f"\0{index}", deque()).append(index)
        results: list[ItemResult | None] = [None] * len(items)
        in_flight: dict[Future, tuple[int, str]] = {}
        prefix = 0
        while waiting or in_flight:
            while len(in_flight) < self.concurrency:
                busy = {key for _, key in in_flight.values()}
                ready = [(queue[0], key) for key, queue in waiting.items() if key not in busy]
                if not ready:
                    break
                index, key = min(ready)
                waiting[key].popleft()
                if not waiting[key]:
                    del waiting[key]
                in_flight[self._pool.submit(fn, items[index])] = (index, key)
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                index, _ = in_flight.pop(future)
                result = future.result()
                result.index = index
                results[index] = result
            advanced = prefix
            while advanced < len(results) and results[advanced] is not None:
                advanced += 1
            if advanced != prefix:
                prefix = advanced
                if on_prefix:
                    on_prefix(prefix, results)
        return results  # type: ignore[return-value]
