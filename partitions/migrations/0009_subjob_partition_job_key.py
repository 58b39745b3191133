"""A sub-job's two foreign keys (job, partition) become one composite key, (partition_id, job_id) →
partition (id, job_id): a sub-job's job is then its partition's (the two could disagree before), and each
row inserted costs one check at commit instead of two (a plan writes every sub-job of its job at once).
The unique key it references is built CONCURRENTLY and the new constraint is validated after it is added,
so a live table keeps taking writes; the old constraints go only once the new one holds."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('partitions', '0008_drop_prefix_indexes'),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS partition_id_job_key "
            "ON partitions_partition (id, job_id)",
            "DROP INDEX CONCURRENTLY IF EXISTS partition_id_job_key"),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(
                "ALTER TABLE partitions_partition ADD CONSTRAINT partition_id_job_key "
                "UNIQUE USING INDEX partition_id_job_key",
                "ALTER TABLE partitions_partition DROP CONSTRAINT partition_id_job_key")],
            state_operations=[migrations.AddConstraint(
                model_name='partition',
                constraint=models.UniqueConstraint(fields=('id', 'job'), name='partition_id_job_key'))]),
        migrations.RunSQL(
            "ALTER TABLE partitions_subjob ADD CONSTRAINT subjob_partition_job_fk "
            "FOREIGN KEY (partition_id, job_id) REFERENCES partitions_partition (id, job_id) "
            "DEFERRABLE INITIALLY DEFERRED NOT VALID",
            "ALTER TABLE partitions_subjob DROP CONSTRAINT subjob_partition_job_fk"),
        migrations.RunSQL("ALTER TABLE partitions_subjob VALIDATE CONSTRAINT subjob_partition_job_fk",
                          migrations.RunSQL.noop),
        migrations.AlterField(
            model_name='subjob',
            name='job',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='subjobs', to='partitions.job'),
        ),
        migrations.AlterField(
            model_name='subjob',
            name='partition',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='subjobs', to='partitions.partition'),
        ),
    ]
