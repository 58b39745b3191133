"""Raw-SQL baselines the bench measures the engine against (kept out of the engine: only the bench runs them)."""

# `bench claim`'s bare table: one SKIP LOCKED claim with a fencing token per round trip.
SQL_BASELINE_RAW_CLAIM = """
    UPDATE bench_raw_partition SET status = 'running', token = token + 1, lease_owner = %(owner)s,
                                   lease_expires_at = statement_timestamp() + interval '60 seconds'
    WHERE id = (SELECT id FROM bench_raw_partition WHERE status = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id, token
"""
# ... and its fenced completion.
SQL_BASELINE_RAW_DONE = """
    UPDATE bench_raw_partition SET status = 'done', lease_expires_at = NULL WHERE id = %s AND token = %s
"""
