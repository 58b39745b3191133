"""A schedule row inserted, deleted, enabled, paused or moved notifies `partitions_schedules`, so every cluster's
pusher re-reads the next fire at once (partitions.engine.wakeups), whichever code path wrote the row."""

from django.db import migrations

SQL_CREATE = """
CREATE FUNCTION partitions_schedules_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('partitions_schedules', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER jobschedule_changed_notify
    AFTER INSERT OR DELETE OR UPDATE OF next_run_at, enabled ON partitions_jobschedule
    FOR EACH STATEMENT EXECUTE FUNCTION partitions_schedules_notify();
"""

SQL_DROP = """
DROP TRIGGER IF EXISTS jobschedule_changed_notify ON partitions_jobschedule;
DROP FUNCTION IF EXISTS partitions_schedules_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("partitions", "0006_jobevent_course_index")]

    operations = [migrations.RunSQL(SQL_CREATE, SQL_DROP)]
