-- name: job_lock_for_claim
-- Serialise claimers of one capped running job, so two of them cannot both see a free slot (max_parallel).
-- NO KEY UPDATE does not block inserts of child rows.
SELECT 1 FROM partitions_job WHERE id = %(job_id)s AND status = {job_running} FOR NO KEY UPDATE

-- name: job_lock
-- The job row, locked for an operator command that changes it in place (throttle, max parallel, deadline).
SELECT * FROM partitions_job WHERE id = %(job_id)s FOR UPDATE

-- name: job_lock_no_key
-- The job row, locked without blocking inserts of its child rows (the knob: settings the workers read).
SELECT * FROM partitions_job WHERE id = %(job_id)s FOR NO KEY UPDATE

-- name: partition_lock_for_split
-- An unfinished partition still at %(bounds_version)s, locked: its holder's next checkpoint waits for the split.
-- After the split's commit the holder sees the new version.
SELECT * FROM partitions_partition
    WHERE id = %(id)s AND bounds_version = %(bounds_version)s AND status IN ({partition_running}, {partition_pending})
    FOR UPDATE

-- name: schedule_lock
-- One schedule row by id or by name (the other NULL), locked for a change in place (fire, pause, edit).
SELECT * FROM partitions_jobschedule WHERE id = %(id)s OR name = %(name)s FOR UPDATE

-- name: schedule_claim_due
-- The most overdue enabled schedule, locked (skipped when another process holds it), and the database clock.
-- A process that locks a row another one has just fired re-checks the WHERE against the committed row (READ
-- COMMITTED), so a fire is claimed once across every cluster. Fires are computed from the returned clock.
SELECT s.id, statement_timestamp() FROM partitions_jobschedule s
    WHERE s.enabled AND s.next_run_at <= statement_timestamp() AND s.id <> ALL(%(skip)s::bigint[])
    ORDER BY s.next_run_at, s.id LIMIT 1 FOR UPDATE SKIP LOCKED

-- name: outbox_cursor_create
-- The relay's one outbox cursor row, created at 0 when missing (before it is locked).
INSERT INTO partitions_outboxcursor (id, last_event_id) VALUES (1, 0) ON CONFLICT (id) DO NOTHING

-- name: outbox_cursor_lock
-- The relay's one outbox cursor row, locked: one relay pass at a time.
SELECT * FROM partitions_outboxcursor WHERE id = 1 FOR UPDATE

-- name: deliveries_claim_due
-- Lease the due deliveries that head their (job, channel) queue, so each channel gets a job's notices in order.
-- A later one waits while an earlier one is retried. The claim is a lease: next_attempt_at moves %(lease)s s
-- ahead, so a sender that dies mid-send leaves the delivery to be sent again (at least once).
WITH heads AS (
        SELECT DISTINCT ON (job_id, channel) id FROM partitions_delivery
        WHERE status = {delivery_pending} ORDER BY job_id, channel, id
    ), picked AS (
        SELECT d.id FROM partitions_delivery d JOIN heads h ON h.id = d.id
        WHERE d.next_attempt_at <= statement_timestamp() AND (%(job_id)s::bigint IS NULL OR d.job_id = %(job_id)s)
        ORDER BY d.id LIMIT %(limit)s
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE partitions_delivery d
    SET attempts = d.attempts + 1, next_attempt_at = statement_timestamp() + make_interval(secs => %(lease)s)
    FROM picked WHERE d.id = picked.id
    RETURNING d.id

-- name: standby_try_lock
-- One drain in the whole fleet may stand by, watching for a lease that lapses (a session lock).
-- It goes away with the backend, so a dead watcher frees it at once.
SELECT pg_try_advisory_lock(hashtext('partitions.standby'))

-- name: standby_unlock
-- The standby drain steps down.
SELECT pg_advisory_unlock(hashtext('partitions.standby'))

-- name: job_sample_try_lock
-- One sampler per job at a time, fleet-wide: a worker that does not get it leaves the sample to the holder.
SELECT pg_try_advisory_xact_lock(hashtext('partitions.sample'), (%(job_id)s::bigint %% 2147483647)::int)
