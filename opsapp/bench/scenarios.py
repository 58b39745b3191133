"""The scenarios behind `manage.py bench`, by name: one module per scenario, each figure compared with a baseline
measured in the same run (the machine is shared and noisy, so only ratios travel).

Everything runs in a scratch database on the same server, created, migrated and dropped here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opsapp.bench import (
    api,
    capacity,
    claim,
    deadline,
    failover,
    harness,
    idle,
    io_bound,
    migrate,
    plan,
    scale,
    subjobs,
    tail,
)

SCENARIOS: dict[str, Callable[[harness.Options], harness.Result]] = {
    "claim": claim.run,
    "io": io_bound.run,
    "plan": plan.run,
    "migrate": migrate.run,
    "subjobs": subjobs.run,
    "failover": failover.run,
    "scale": scale.run,
    "deadline": deadline.run,
    "tail": tail.run,
    "capacity": capacity.run,
    "idle": idle.run,
    "api": api.run,
}


def run(names: list[str], opts: harness.Options, *, database: str | None = None,
        keep: bool = False) -> tuple[dict[str, Any], list[harness.Result]]:
    """Run the named scenarios in order; return the machine description and their results."""
    results = []
    with harness.quiet_logs(), harness.scratch_database(database or harness.scratch_name(), keep=keep):
        host = harness.machine()
        for name in names:
            with harness.stopwatch() as elapsed:
                try:
                    result = SCENARIOS[name](opts)
                finally:
                    harness.empty_tables()
            result.seconds = round(elapsed(), 1)
            results.append(result)
    return host, results
