"""Claims, leases, fencing, steps and locks: the engine's concurrency, one module per concern.

`predicates` (the registry's predicates as ORM filters), `leases` (partition claim, renew, checkpoint,
complete), `slots` (free slots under max_parallel), `steps` (plan and finalize, the job row as lease), `locks`
(every other lock). The statements are in the SQL registry (`partitions.engine.sql`); status writes that are not one
fenced statement go through `partitions.engine.lifecycle`. The names below are re-exported so callers say
`claiming.partition_claim`.
"""

from partitions.engine.claiming.leases import (
    db_now,
    jobs_with_claimable_work,
    jobs_without_unfinished_partitions,
    partition_checkpoint,
    partition_claim,
    partitions_claimable_count,
    partitions_complete,
    partitions_renew_leases,
    seconds_until_claimable,
)
from partitions.engine.claiming.locks import (
    deliveries_claim_due,
    job_locked,
    outbox_cursor_locked,
    partition_locked_for_split,
    schedule_claim_due,
    schedule_locked,
    standby_acquire,
    standby_release,
)
from partitions.engine.claiming.predicates import handled_items, lapsed_lease_q, live_lease_q, step_lapsed_q
from partitions.engine.claiming.slots import claimable_slots, job_free_slots, jobs_with_free_slot, partitions_over_cap
from partitions.engine.claiming.steps import job_finalize_claim, job_plan_claim, job_step_finish
from partitions.engine.lifecycle import (
    partition_cancel,
    partition_fail,
    partition_release,
    partitions_lease_lapsed,
    partitions_reap_expired,
)

__all__ = [
    "claimable_slots", "db_now", "deliveries_claim_due", "handled_items", "job_finalize_claim", "job_free_slots",
    "job_locked", "job_plan_claim", "job_step_finish", "jobs_with_claimable_work", "jobs_with_free_slot",
    "jobs_without_unfinished_partitions", "lapsed_lease_q", "live_lease_q", "outbox_cursor_locked",
    "partition_cancel", "partition_checkpoint", "partition_claim", "partition_fail", "partition_locked_for_split",
    "partition_release", "partitions_claimable_count", "partitions_complete", "partitions_lease_lapsed",
    "partitions_over_cap", "partitions_reap_expired", "partitions_renew_leases", "schedule_claim_due",
    "schedule_locked", "seconds_until_claimable", "standby_acquire", "standby_release", "step_lapsed_q",
]
