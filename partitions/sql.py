"""Every SQL statement of the engine that is not about locking, leases or fencing (those are in `claiming`),
each named and described once. The key-range planner's recursive keyset walk is built per queryset in
`splits.KeyRange.boundaries_sql`, from the queryset's own compiled SQL."""

from partitions.states import JOB_TERMINAL

_TERMINAL = ", ".join(f"'{s}'" for s in sorted(JOB_TERMINAL))

# The rate window's samples of some jobs, oldest first, with the database clock on every row; one row of
# NULLs (LEFT JOIN) when none was taken, so the clock is always read. Samples are handled counts, not min()
# of them: a sub-job retry takes failed items out of the counters, so they can go down.
SQL_JOBS_SAMPLE_WINDOW = """
    SELECT now(), s.job_id, s.taken_at, s.done_items + s.failed_items + s.skipped_items, s.live_leases
    FROM (SELECT 1) AS clock
    LEFT JOIN partitions_jobsample s
           ON s.job_id = ANY(%(ids)s::bigint[]) AND s.taken_at >= now() - make_interval(secs => %(window)s)
    ORDER BY s.job_id, s.taken_at
"""

# Every k-th sample of a job (plus the last), so a chart of a week-long job stays ~max_points wide.
SQL_JOB_SAMPLES_THINNED = """
    WITH s AS (
        SELECT taken_at, done_items + failed_items + skipped_items AS handled, live_leases,
               row_number() OVER (ORDER BY taken_at) AS rn, count(*) OVER () AS n
        FROM partitions_jobsample WHERE job_id = %(job_id)s
    )
    SELECT taken_at, handled, live_leases FROM s
    WHERE (rn - 1) %% greatest(1, ceil(n::numeric / %(points)s))::bigint = 0 OR rn = n
    ORDER BY taken_at
"""

# Finish many sub-jobs in one statement: (id, duration, result, error, traceback) arrays, guarded by the
# transition table's sources of the target status.
SQL_SUBJOBS_FINISH = """
    UPDATE partitions_subjob s
    SET status = %s, finished_at = statement_timestamp(), attempts = s.attempts + 1,
        duration_ms = v.ms, result = v.result::jsonb, error = v.error, traceback = v.tb
    FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::text[]) AS v(id, ms, result, error, tb)
    WHERE s.id = v.id AND s.status = ANY(%s)
"""

# The plan's commit may be lost in a crash of the database server without harm: the job, its partitions and
# sub-jobs go together, the job stays planning, and tick plans it again once its step lease runs out. Any
# later synchronous commit (a claim's checkpoint, a finalize) flushes it anyway: the log is written in order.
SQL_ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"

SQL_SUBJOBS_COPY = """
    COPY partitions_subjob (job_id, partition_id, seq, key, payload, ordering_key, status, attempts, error) FROM STDIN
"""

# One sampler per job at a time, fleet-wide: a worker that does not get it leaves the sample to the holder.
SQL_JOB_SAMPLE_TRY_LOCK = """
    SELECT pg_try_advisory_xact_lock(hashtext('partitions.sample'), (%(job_id)s::bigint %% 2147483647)::int)
"""

# Sub-job durations of a job (finished ones): percentiles and max, in one pass over index subjob_job_status_idx.
SQL_SUBJOB_DURATIONS = """
    SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms), max(duration_ms),
           coalesce(sum(attempts), 0), count(*) FILTER (WHERE attempts > 1)
    FROM partitions_subjob
    WHERE job_id = %(job_id)s AND status IN ('succeeded', 'failed', 'skipped') AND duration_ms IS NOT NULL
"""

# Failures of a job grouped by error class (the text before the first ':' of the one-line error), with a count
# and one example each, from failed sub-jobs and failed partitions.
SQL_JOB_FAILURES_BY_CLASS = """
    SELECT split_part(error, ':', 1) AS class, count(*), min(error) FROM (
        SELECT error FROM partitions_subjob WHERE job_id = %(job_id)s AND status = 'failed' AND error <> ''
        UNION ALL
        SELECT last_error FROM partitions_partition WHERE job_id = %(job_id)s AND status = 'failed' AND last_error <> ''
    ) e GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %(limit)s
"""
# /metrics: seconds since the longest-running partition was first claimed, on the database clock.
SQL_OLDEST_RUNNING_PARTITION_SECONDS = """
    SELECT EXTRACT(EPOCH FROM statement_timestamp() - min(started_at)) FROM partitions_partition
    WHERE status = 'running'
"""

# Retention: finished jobs whose history is due for deletion (finished before the cut-off, not pruned since
# they last finished), oldest first.
SQL_JOBS_HISTORY_DUE = f"""
    SELECT id FROM partitions_job
    WHERE status IN ({_TERMINAL}) AND finished_at < statement_timestamp() - make_interval(secs => %(age)s)
      AND (pruned_at IS NULL OR pruned_at < finished_at)
    ORDER BY finished_at LIMIT %(jobs)s
"""

# Retention: delete at most %(n)s history rows of these jobs from {table} (a short statement, never one huge
# DELETE), re-checking that each job is still finished before the cut-off (an operator retry reopens a job).
# {only} narrows the rows (events: those of a partition or sub-job; job-level events stay as the audit trail).
SQL_HISTORY_DELETE_BATCH = f"""
    DELETE FROM {{table}} WHERE id IN (
        SELECT t.id FROM {{table}} t JOIN partitions_job j ON j.id = t.job_id
        WHERE t.job_id = ANY(%(job_ids)s) AND {{only}}
          AND j.status IN ({_TERMINAL}) AND j.finished_at < statement_timestamp() - make_interval(secs => %(age)s)
        LIMIT %(n)s)
"""

# Retention: these jobs' history is gone (until they finish again).
SQL_JOBS_MARK_PRUNED = "UPDATE partitions_job SET pruned_at = statement_timestamp() WHERE id = ANY(%(job_ids)s)"

# Wake-ups (partitions.wakeups): a pusher's one LISTEN connection hears about new tasks and schedule changes.
SQL_WAKEUPS_LISTEN = "LISTEN partitions_work; LISTEN partitions_schedules"

# django-q2's ORM broker queue, enqueued and announced in one statement (one round trip, one transaction): the
# NOTIFY goes out when the row commits, so a woken pusher always finds it. `lock` is django-q2's visibility
# time, on the enqueuer's clock as in django-q2's own broker.
SQL_TASK_ENQUEUE_NOTIFY = """
    WITH task AS (INSERT INTO django_q_ormq (key, payload, lock) VALUES (%(key)s, %(payload)s, %(now)s) RETURNING id)
    SELECT task.id, pg_notify('partitions_work', %(key)s) FROM task
"""

# The oldest visible task of a queue, taken for `retry` seconds in one statement (django-q2's broker reads, then
# updates each row, two transactions a look). SKIP LOCKED: pushers of several clusters never wait on each other.
SQL_TASK_TAKE = """
    UPDATE django_q_ormq SET lock = %(until)s
    WHERE id = (SELECT id FROM django_q_ormq WHERE key = %(key)s AND lock < %(now)s ORDER BY id LIMIT 1
                FOR UPDATE SKIP LOCKED)
    RETURNING id, payload
"""

# Seconds until the earliest enabled schedule fires, on the database clock (the partial index jobschedule_due_idx).
SQL_SCHEDULES_NEXT_FIRE_IN = """
    SELECT extract(epoch FROM min(next_run_at) - statement_timestamp()) FROM partitions_jobschedule
    WHERE enabled AND next_run_at IS NOT NULL
"""
