"""What a worker does every few seconds while it runs a job, besides the work: it samples the job's throughput
(so the chart and the ETA have data from the first seconds) and reads the time/cost knob (so a lowered
`max_parallel` takes leases away within seconds, at a batch boundary, without losing a batch).

Called at every batch boundary of a partition run; costs nothing between beats (one clock read), and a beat
costs three or four short queries per job and process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from partitions import conf
from partitions.engine.claiming import partitions_over_cap
from partitions.reads import sampling


@dataclass
class _Beat:
    at: float = float("-inf")
    yielding: frozenset[int] = field(default_factory=frozenset)


_beats: dict[tuple[int, int], _Beat] = {}  # (pid, job id) -> last beat in this process


def should_yield(job_id: int, partition_id: int) -> bool:
    """At a batch boundary: sample the job if due, and say whether this partition should hand itself back
    because the job's max_parallel was lowered below its live leases."""
    key = (os.getpid(), job_id)
    beat = _beats.get(key)
    now = time.monotonic()
    if beat is None or now - beat.at >= conf.get("SAMPLE_SECONDS"):
        beat = _beats[key] = _Beat(at=now)
        sampling.job_sample_take(job_id)
        beat.yielding = partitions_over_cap(job_id)
    if partition_id in beat.yielding:
        beat.yielding = beat.yielding - {partition_id}
        return True
    return False
