-- name: jobs_history_due
-- Finished jobs whose history is due for deletion (finished before the cut-off, not pruned since), oldest first.
SELECT id FROM partitions_job
    WHERE status IN ({job_terminal}) AND finished_at < statement_timestamp() - make_interval(secs => %(age)s)
      AND (pruned_at IS NULL OR pruned_at < finished_at)
    ORDER BY finished_at LIMIT %(jobs)s

-- fragment: history_due(t)
-- Row `t` belongs to one of %(job_ids)s, still finished before the cut-off (an operator retry reopens a job).
{t}.job_id = ANY(%(job_ids)s) AND EXISTS (
        SELECT 1 FROM partitions_job j WHERE j.id = {t}.job_id
          AND j.status IN ({job_terminal}) AND j.finished_at < statement_timestamp() - make_interval(secs => %(age)s))

-- name: history_delete_events
-- Delete at most %(n)s due events of a partition or sub-job (job-level events stay as the audit trail).
DELETE FROM partitions_jobevent WHERE id IN (
        SELECT t.id FROM partitions_jobevent t
        WHERE {history_due(t)} AND (t.partition_id IS NOT NULL OR t.subjob_id IS NOT NULL) LIMIT %(n)s)

-- name: history_delete_samples
-- Delete at most %(n)s due progress samples (a short statement, never one huge DELETE).
DELETE FROM partitions_jobsample WHERE id IN (
        SELECT t.id FROM partitions_jobsample t WHERE {history_due(t)} LIMIT %(n)s)

-- name: history_delete_subjobs
-- Delete at most %(n)s due sub-jobs (a short statement, never one huge DELETE).
DELETE FROM partitions_subjob WHERE id IN (
        SELECT t.id FROM partitions_subjob t WHERE {history_due(t)} LIMIT %(n)s)

-- name: jobs_mark_pruned
-- These jobs' history is gone (until they finish again).
UPDATE partitions_job SET pruned_at = statement_timestamp() WHERE id = ANY(%(job_ids)s)
