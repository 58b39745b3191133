-- name: jobs_with_claimable_work
-- Running jobs (or just %(job_id)s) with claimable work, best first, with their max_parallel.
-- Order: priority, then the fewest live leases (equal priorities share the fleet), then age. The EXISTS
-- walks only the partial index partition_claimable_idx, so finished partitions cost nothing.
SELECT j.id, j.max_parallel FROM partitions_job j
    WHERE j.status = {job_running} AND (%(job_id)s::bigint IS NULL OR j.id = %(job_id)s::bigint)
      AND EXISTS (SELECT 1 FROM partitions_partition p WHERE p.job_id = j.id AND {claimable(p)})
    ORDER BY j.priority DESC, {live_leases(j)}, j.id
    LIMIT 20

-- name: claimable_slots
-- Partitions that could start now across the fleet: each running job's claimable ones within its free slots.
-- At most %(cap)s per job, so the count stays cheap.
SELECT coalesce(sum(least(c.n, greatest(0, coalesce({free_slots(j)}, c.n)))), 0)
    FROM partitions_job j
    CROSS JOIN LATERAL (SELECT count(*) AS n FROM (
        SELECT 1 FROM partitions_partition p WHERE p.job_id = j.id AND {claimable(p)} LIMIT %(cap)s) x) c
    WHERE j.status = {job_running} AND c.n > 0

-- name: job_free_slots
-- How many more partitions job %(job_id)s may run now (NULL: uncapped). The claim runs it under the job lock.
SELECT {free_slots(j)} FROM partitions_job j WHERE j.id = %(job_id)s

-- name: jobs_with_free_slot
-- Which of these jobs may run one more partition now (an idle worker's split needs a slot to run it in).
SELECT j.id FROM partitions_job j WHERE j.id = ANY(%(job_ids)s::bigint[]) AND coalesce({free_slots(j)} > 0, true)

-- name: job_partitions_over_cap
-- The live partitions of job %(job_id)s beyond its free slots (a lowered max_parallel): the highest ids, so every
-- process picks the same ones. LIMIT 0 (uncapped, or within the cap) reads no partition.
SELECT p.id FROM partitions_partition p WHERE p.job_id = %(job_id)s AND {live_lease(p)}
    ORDER BY p.id DESC
    LIMIT coalesce((SELECT greatest(0, -{free_slots(j)}) FROM partitions_job j WHERE j.id = %(job_id)s), 0)

-- name: partitions_live_lease
-- Ids of the partitions held by a live lease (the ORM's live_lease_q, so the console never disagrees).
SELECT p.id FROM partitions_partition p WHERE {live_lease(p)}

-- name: partition_claim
-- Claim up to %(limit)s partitions of one job, bump token and attempt, lease in DB time, log each claim.
-- Locks candidates skipping rows other claimers hold, all in one round trip; returns the claimed rows and
-- their job's controls (the last five columns), so a run obeys them from its first batch.
WITH picked AS (
        SELECT p.id FROM partitions_partition p
        WHERE p.job_id = %(job_id)s AND {claimable(p)}
        ORDER BY p.available_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ), me AS (
        SELECT pid, backend_start FROM pg_stat_get_activity(pg_backend_pid()) WHERE %(track_backend)s
    ), claimed AS (
        UPDATE partitions_partition p
        SET status = {partition_running}, lease_owner = %(owner)s, lease_token = p.lease_token + 1,
            lease_expires_at = statement_timestamp() + make_interval(secs => %(lease)s), attempts = p.attempts + 1,
            {partition_enters_running(p)},
            lease_backend_pid = (SELECT pid FROM me), lease_backend_started = (SELECT backend_start FROM me)
        FROM picked WHERE p.id = picked.id
        RETURNING p.*
    ), logged AS (
        INSERT INTO partitions_jobevent (job_id, partition_id, type, actor, data, created_at)
        SELECT job_id, id, {event_partition_claimed}, %(owner)s,
               jsonb_build_object('token', lease_token, 'attempt', attempts), statement_timestamp()
        FROM claimed
    )
    SELECT claimed.*, {control_columns(j)}
    FROM claimed JOIN partitions_job j ON j.id = claimed.job_id ORDER BY claimed.seq

-- name: partition_seconds_until_claimable
-- Seconds until the next partition of a running job becomes claimable (<= 0: now; NULL: none will be).
-- None without help: a lease on its last attempt is left for tick to fail.
SELECT EXTRACT(EPOCH FROM min(CASE WHEN {claimable(p)} THEN statement_timestamp()
                                       WHEN p.status = {partition_pending} THEN p.available_at
                                       ELSE p.lease_expires_at END)
                              - statement_timestamp())
    FROM partitions_partition p JOIN partitions_job j ON j.id = p.job_id
    WHERE {will_be_claimable(p)} AND j.status = {job_running}
      AND (%(job_id)s::bigint IS NULL OR p.job_id = %(job_id)s::bigint)

-- name: partitions_claimable_count
-- Partitions of running jobs claimable now, fleet-wide (what /metrics reports).
SELECT count(*) FROM partitions_partition p JOIN partitions_job j ON j.id = p.job_id
    WHERE j.status = {job_running} AND {claimable(p)}

-- name: partitions_lease_lapsed
-- Running partitions whose lease lapsed (expired or holder gone), for the reaper.
SELECT p.id FROM partitions_partition p WHERE p.status = {partition_running} AND {lease_lapsed(p)}

-- name: partitions_renew_leases_if_held
-- Renew every lease one process holds, in one statement; fenced per row. Returns the ids still held.
UPDATE partitions_partition p SET lease_expires_at = statement_timestamp() + make_interval(secs => h.lease)
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(leases)s::float8[]) AS h(id, token, lease)
    WHERE p.id = h.id AND p.lease_token = h.token AND p.status = {partition_running}
    RETURNING p.id

-- name: partitions_complete_if_held
-- Complete held partitions (one or a claimed batch) and log each, in one statement; fenced per row.
-- The guard is the transition table's. Returns the rows that moved.
WITH done AS (
        UPDATE partitions_partition p
        SET status = {partition_succeeded}, {partition_enters_succeeded(p)}
        FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(data)s::jsonb[]) AS h(id, token, data)
        WHERE p.id = h.id AND p.lease_token = h.token
          AND p.status IN ({partition_to_succeeded})
        RETURNING p.id, p.job_id, h.data
    ), logged AS (
        INSERT INTO partitions_jobevent (job_id, partition_id, type, actor, data, created_at)
        SELECT job_id, id, {event_partition_succeeded}, %(actor)s, data, statement_timestamp() FROM done
    )
    SELECT id, job_id FROM done

-- name: jobs_without_unfinished_partitions
-- Which of these jobs (all running jobs when NULL) have no unfinished partition left: who triggers finalize.
SELECT j.id FROM partitions_job j
    WHERE (%(job_ids)s::bigint[] IS NULL AND j.status = {job_running} OR j.id = ANY(%(job_ids)s::bigint[]))
      AND {all_finished(j)}
    ORDER BY j.id

-- name: partition_checkpoint_if_held
-- Advance the checkpoint and counters and renew the lease; fenced. Returns the job's controls.
-- A HOT update: none of these columns is indexed.
UPDATE partitions_partition p
    SET checkpoint = %(checkpoint)s::jsonb, done_items = p.done_items + %(done)s,
        failed_items = p.failed_items + %(failed)s, skipped_items = p.skipped_items + %(skipped)s,
        checkpointed_at = statement_timestamp(), batch_size = %(batch_size)s,
        lease_expires_at = statement_timestamp() + make_interval(secs => %(lease)s)
    FROM partitions_job j
    WHERE p.id = %(id)s AND p.lease_token = %(token)s AND p.status = {partition_running} AND j.id = p.job_id
      AND (%(bounds_version)s::int IS NULL OR p.bounds_version = %(bounds_version)s::int)
    RETURNING {control_columns(j)}

-- name: partition_bounds_moved
-- Whether a held partition's bounds moved (a split) since %(bounds_version)s: why a checkpoint matched no row.
SELECT 1 FROM partitions_partition p
    WHERE p.id = %(id)s AND p.lease_token = %(token)s AND p.status = {partition_running}
      AND p.bounds_version <> %(bounds_version)s::int

-- name: job_plan_claim
-- Take the plan step of a pending job (or of one whose planner's step lease lapsed).
{job_step_claim(job_plannable)}

-- name: job_finalize_claim
-- Take the finalize step once every partition is terminal (or its finalizer's step lease lapsed).
{job_step_claim(job_finalizable)}

-- name: jobs_step_lapsed
-- Ids of the planning or finalizing jobs whose step lease lapsed (tick dispatches their step again).
SELECT j.id FROM partitions_job j WHERE j.status IN ({job_planning}, {job_finalizing}) AND {step_lapsed(j)}

-- name: db_now
-- The database clock, for writes that are computed in Python (a schedule's next fire).
SELECT statement_timestamp()
