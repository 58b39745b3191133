"""The columns that go with entering a status, one table for the ORM and for SQL.

`lifecycle.timestamps_for` renders it as Django expressions; the SQL registry (`partitions.engine.sql`) renders it
as the fragments `{partition_enters_running(p)}`, `{partition_enters_succeeded(p)}`, … that its statements SET,
so a claim or a batched completion stamps exactly what `transition()` would.
"""

from __future__ import annotations

from partitions.core.states import JOB_TERMINAL, PARTITION_TERMINAL, SUBJOB_TERMINAL, JobStatus, PartitionStatus

#: Set to the database clock; kept when already set, else the clock; cleared.
NOW, KEEP_OR_NOW, CLEAR = "now", "keep_or_now", "clear"


def stamps(model: str, target: str) -> dict[str, str]:
    """Column -> NOW / KEEP_OR_NOW / CLEAR on entering `target`; `model` is "job", "partition" or "subjob"."""
    if model == "job":
        if target in JOB_TERMINAL:
            return {"finished_at": NOW}
        return {
            JobStatus.PLANNING: {"started_at": KEEP_OR_NOW},
            JobStatus.RUNNING: {"planned_at": KEEP_OR_NOW, "paused_at": CLEAR, "finished_at": CLEAR},
            JobStatus.PAUSED: {"paused_at": NOW},
            JobStatus.FINALIZING: {"finished_at": CLEAR},  # a failed job finalized again (states.JOB_TRANSITIONS)
        }.get(target, {})
    if model == "partition":
        if target in PARTITION_TERMINAL:
            return {"finished_at": NOW, "lease_expires_at": CLEAR}
        return {
            PartitionStatus.RUNNING: {"started_at": KEEP_OR_NOW},
            PartitionStatus.PENDING: {"finished_at": CLEAR, "lease_expires_at": CLEAR},
        }[target]
    return {"finished_at": NOW} if target in SUBJOB_TERMINAL else {"finished_at": CLEAR}

