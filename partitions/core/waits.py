"""The engine's one way to sleep: every wait (a pacer's pause, a drain standing by, the CLI's refresh) goes through
`sleep_for`, which clamps at zero, so a budget that ran out while computing a wait never raises
`ValueError: sleep length must be non-negative` (a negative, NaN or zero wait returns at once)."""

from __future__ import annotations

import time


def sleep_for(seconds: float) -> None:
    """Sleep `seconds`, or not at all when it is not positive (NaN included)."""
    if seconds > 0:
        time.sleep(seconds)


def seconds_left(deadline: float | None) -> float:
    """Seconds until the monotonic `deadline` (never negative; infinite without one)."""
    return float("inf") if deadline is None else max(0.0, deadline - time.monotonic())
