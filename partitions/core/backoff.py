"""The one backoff: how long a retry waits, for a partition (its job type's `backoff`) and a notification
delivery (`notify/outbox.py`) alike, each with its own figures."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter: attempt n waits between half and all of min(cap, base * 2^(n-1))."""

    base: float = 2.0
    cap: float = 300.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt `attempt` + 1 (the first retry follows attempt 1)."""
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return random.uniform(ceiling / 2, ceiling)
