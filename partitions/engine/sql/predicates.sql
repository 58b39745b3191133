-- fragment: lease_lapsed(p)
-- The running partition `p`'s lease is gone: expired in DB time, or the backend that claimed it exited.
-- A killed worker's connection closes, so its backend leaves pg_stat_activity at once; fencing makes taking
-- such a partition away early safe. A backend whose start time is hidden from us counts as alive.
({p}.lease_expires_at <= statement_timestamp()
        OR ({p}.lease_backend_pid IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_stat_get_activity({p}.lease_backend_pid) a
            WHERE a.backend_start IS NULL OR a.backend_start = {p}.lease_backend_started)))

-- fragment: claimable(p)
-- Partition `p` can be claimed now: pending and due, or running with a lapsed lease and attempts left.
-- The one definition of "claimable": claiming, the drain's wait, the dispatcher and tick all use it.
({p}.status IN ({partition_to_running})
        AND (({p}.status = {partition_pending} AND {p}.available_at <= statement_timestamp())
             OR ({p}.status = {partition_running} AND {p}.attempts < {p}.max_attempts AND {lease_lapsed(p)})))

-- fragment: will_be_claimable(p)
-- Claimable now or later without anyone's help: a running lease on its last attempt never is (tick fails it).
({p}.status = {partition_pending} OR ({p}.status = {partition_running} AND {p}.attempts < {p}.max_attempts))

-- fragment: live_lease(p)
-- Partition `p` is held by a live lease: running, and its lease has not lapsed.
({p}.status = {partition_running} AND NOT {lease_lapsed(p)})

-- fragment: live_leases(j)
-- How many live leases job `j` holds now (what max_parallel caps).
(SELECT count(*) FROM partitions_partition l WHERE l.job_id = {j}.id AND {live_lease(l)})

-- fragment: free_slots(j)
-- The one "free slot under max_parallel" rule: how many more partitions job `j` may run now; NULL when it is
-- uncapped (max_parallel 0), negative when an operator lowered the cap below its live leases (see pulse).
(CASE WHEN {j}.max_parallel > 0 THEN {j}.max_parallel - {live_leases(j)} END)

-- fragment: all_finished(j)
-- Job `j` has no unfinished partition (every one is terminal). The one definition of "unfinished".
NOT EXISTS (SELECT 1 FROM partitions_partition u
                       WHERE u.job_id = {j}.id AND u.status NOT IN ({partition_terminal}))

-- fragment: step_lapsed(j)
-- Job `j`'s singleton step (plan or finalize) lease ran out: the one stale-step rule (expired at the instant).
({j}.step_expires_at <= statement_timestamp())

-- fragment: job_plannable(j)
-- Job `j`'s plan step may be taken: pending, or planning with a lapsed step lease.
{j}.status IN ({job_to_planning})
    AND ({j}.status = {job_pending} OR {step_lapsed(j)})

-- fragment: job_finalizable(j)
-- Job `j`'s finalize step may be taken: running with every partition terminal, or finalizing with a lapsed step.
{j}.status IN ({job_to_finalizing})
    AND (({j}.status = {job_running} AND {all_finished(j)})
         OR ({j}.status = {job_finalizing} AND {step_lapsed(j)}))

-- fragment: control_columns(j)
-- What a running partition obeys, in `throttling.JobControls` order: status, throttle knobs, throttled.
{j}.status, {j}.rate_limit, {j}.pause_ms, {j}.ignore_health, {j}.throttled_since IS NOT NULL

-- fragment: job_step_claim(condition)
-- Claim a singleton step (plan or finalize) of one job when `condition` holds: the job row is the lease.
-- Both steps stamp what entering planning does (started_at, kept when set: finalize never changes it).
WITH picked AS (
        SELECT j.id FROM partitions_job j
        WHERE j.id = %(job_id)s AND ({{condition}(j)})
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE partitions_job j
        SET status = %(target)s, step_owner = %(owner)s, step_token = j.step_token + 1,
            step_expires_at = statement_timestamp() + make_interval(secs => %(lease)s),
            {job_enters_planning(j)}
        FROM picked WHERE j.id = picked.id
        RETURNING j.id, j.step_token
    ), logged AS (
        INSERT INTO partitions_jobevent (job_id, type, actor, data, created_at)
        SELECT id, %(event)s, %(owner)s, jsonb_build_object('token', step_token), statement_timestamp() FROM claimed
    )
    SELECT step_token FROM claimed
