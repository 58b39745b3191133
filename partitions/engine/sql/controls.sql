-- name: job_controls
-- What a running partition of job %(job_id)s obeys (throttling.JobControls).
SELECT {control_columns(j)} FROM partitions_job j WHERE j.id = %(job_id)s

-- name: job_rate_reserve
-- Reserve %(n)s items' time on the job's limiter; fenced by the horizon. Seconds until it starts (<= 0: now).
-- Re-evaluated on the latest row version when two workers race.
UPDATE partitions_job j
    SET rate_tat = greatest(j.rate_tat, statement_timestamp()) + make_interval(secs => %(n)s / j.rate_limit)
    WHERE j.id = %(job_id)s AND j.rate_limit > 0
      AND coalesce(j.rate_tat, '-infinity') <= statement_timestamp() + make_interval(secs => %(horizon)s)
    RETURNING EXTRACT(EPOCH FROM j.rate_tat - statement_timestamp())::float8 - %(n)s / j.rate_limit,
              j.rate_tat, %(n)s / j.rate_limit

-- name: job_rate_release
-- Give back the time of reserved items that will not run, only while no later reservation was taken: as if the
-- reservation had been that much smaller, so the limiter's guarantee is unchanged.
UPDATE partitions_job SET rate_tat = rate_tat - make_interval(secs => %(seconds)s)
    WHERE id = %(job_id)s AND rate_tat = %(ends_at)s
    RETURNING id

-- name: job_rate_backlog
-- The job's rate limit and how far ahead its limiter is booked (why a reservation was refused).
SELECT j.rate_limit, EXTRACT(EPOCH FROM j.rate_tat - statement_timestamp())::float8
    FROM partitions_job j WHERE j.id = %(job_id)s

-- name: job_throttle_start
-- A health episode starts once: only when none is open and the verdict is newer than the last change.
UPDATE partitions_job SET throttled_since = statement_timestamp(), throttled_reason = %(reason)s,
                              throttle_changed_at = statement_timestamp()
    WHERE id = %(job_id)s AND status = {job_running} AND throttled_since IS NULL AND NOT ignore_health
      AND (throttle_changed_at IS NULL OR throttle_changed_at < %(checked_at)s)
    RETURNING id

-- name: job_throttle_end
-- Close the open health episode when the verdict (%(checked_at)s; NULL: at once) is newer; its length and reason.
WITH ended AS (SELECT id, throttled_since, throttled_reason FROM partitions_job
                   WHERE id = %(job_id)s AND throttled_since IS NOT NULL
                     AND (throttled_since < %(checked_at)s OR %(checked_at)s IS NULL)
                   FOR UPDATE)
    UPDATE partitions_job j
    SET throttled_since = NULL, throttled_reason = '', throttle_changed_at = statement_timestamp()
    FROM ended WHERE j.id = ended.id
    RETURNING EXTRACT(EPOCH FROM statement_timestamp() - ended.throttled_since)::float8, ended.throttled_reason

-- name: database_health
-- The database clock, the worst replica replay lag and the oldest open transaction of another client.
SELECT statement_timestamp(),
           (SELECT max(EXTRACT(EPOCH FROM replay_lag))::float8 FROM pg_stat_replication),
           (SELECT max(EXTRACT(EPOCH FROM statement_timestamp() - xact_start))::float8 FROM pg_stat_activity
            WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
              AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL))
