-- name: wakeups_listen
-- A pusher's one LISTEN connection hears about new tasks and schedule changes (partitions.engine.wakeups).
LISTEN partitions_work; LISTEN partitions_schedules

-- name: task_enqueue_notify
-- django-q2's ORM broker queue, enqueued and announced in one statement (one round trip, one transaction).
-- The NOTIFY goes out when the row commits, so a woken pusher always finds it. `lock` is django-q2's
-- visibility time, on the enqueuer's clock as in django-q2's own broker.
WITH task AS (INSERT INTO django_q_ormq (key, payload, lock) VALUES (%(key)s, %(payload)s, %(now)s) RETURNING id)
    SELECT task.id, pg_notify('partitions_work', %(key)s) FROM task

-- name: task_take
-- The oldest visible task of a queue, taken for `retry` seconds in one statement; SKIP LOCKED across clusters.
-- django-q2's broker reads, then updates each row, two transactions a look; pushers never wait on each other.
UPDATE django_q_ormq SET lock = %(until)s
    WHERE id = (SELECT id FROM django_q_ormq WHERE key = %(key)s AND lock < %(now)s ORDER BY id LIMIT 1
                FOR UPDATE SKIP LOCKED)
    RETURNING id, payload

-- name: schedules_next_fire_in
-- Seconds until the earliest enabled schedule fires, on the database clock (partial index jobschedule_due_idx).
SELECT extract(epoch FROM min(next_run_at) - statement_timestamp()) FROM partitions_jobschedule
    WHERE enabled AND next_run_at IS NOT NULL
