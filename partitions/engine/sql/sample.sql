-- name: sample_lock_timeout
-- The sample dry-run's transaction waits at most this long for a lock (a busy table refuses it, clearly).
SELECT set_config('lock_timeout', %(timeout)s, true)

-- name: sample_changes_table
-- Where the sample's capture trigger writes each row change; temporary, so it lives only in the transaction.
CREATE TEMP TABLE partitions_sample_changes (
    seq bigserial PRIMARY KEY, tbl text NOT NULL, op text NOT NULL, old jsonb, new jsonb
) ON COMMIT DROP

-- name: sample_capture_function
-- The trigger function: one row per changed row, before and after as jsonb (AFTER … FOR EACH ROW).
CREATE FUNCTION pg_temp.partitions_sample_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO partitions_sample_changes (tbl, op, old, new) VALUES (
        TG_TABLE_NAME, TG_OP,
        CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
        CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END $$

-- name: sample_watch_function
-- Puts the capture trigger on one table, named by a regclass (so no identifier is spliced in Python).
-- CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock on the table until the rollback: writers wait meanwhile.
CREATE FUNCTION pg_temp.partitions_sample_watch(target regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER partitions_sample_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION pg_temp.partitions_sample_capture()', target);
END $$

-- name: sample_watch
-- Captures every row change of one table for the rest of the sample's transaction.
SELECT pg_temp.partitions_sample_watch(%(table)s::regclass)

-- name: sample_changes
-- The captured row changes in the order they happened: table, row before, row after (op stays for psql).
SELECT tbl, old, new FROM partitions_sample_changes ORDER BY seq
