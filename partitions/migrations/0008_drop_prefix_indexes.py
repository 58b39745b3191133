"""Foreign keys that lead a composite index lose their own single-column index (the composite serves the
same lookups). The indexes are dropped CONCURRENTLY, so a live table keeps taking writes, and the foreign-key
constraints are left alone (Django's AlterField would drop and re-validate them)."""

import django.db.models.deletion
from django.db import migrations, models

# (model, foreign-key field): each one's index is Django's own single-column one.
PREFIX_INDEXES = [("delivery", "job"), ("jobevent", "job"), ("jobsample", "job"), ("partition", "job"),
                  ("scheduleevent", "schedule"), ("subjob", "job"), ("subjob", "partition")]


def _indexes(apps, schema_editor):
    for model_name, field_name in PREFIX_INDEXES:
        model = apps.get_model("partitions", model_name)
        column = model._meta.get_field(field_name).column
        table = model._meta.db_table
        yield table, column, schema_editor._create_index_name(table, [column], suffix="")


def drop_indexes(apps, schema_editor):
    for _table, _column, name in _indexes(apps, schema_editor):
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")


def create_indexes(apps, schema_editor):
    for table, column, name in _indexes(apps, schema_editor):
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {schema_editor.quote_name(name)} "
                              f"ON {schema_editor.quote_name(table)} ({schema_editor.quote_name(column)})")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('partitions', '0007_schedule_change_notifies'),
    ]

    operations = [
        migrations.RunPython(drop_indexes, create_indexes),
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name='delivery',
                name='job',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='partitions.job'),
            ),
            migrations.AlterField(
                model_name='jobevent',
                name='job',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='partitions.job'),
            ),
            migrations.AlterField(
                model_name='jobsample',
                name='job',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='samples', to='partitions.job'),
            ),
            migrations.AlterField(
                model_name='partition',
                name='job',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='partitions', to='partitions.job'),
            ),
            migrations.AlterField(
                model_name='scheduleevent',
                name='schedule',
                field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='events', to='partitions.jobschedule'),
            ),
            migrations.AlterField(
                model_name='subjob',
                name='job',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='subjobs', to='partitions.job'),
            ),
            migrations.AlterField(
                model_name='subjob',
                name='partition',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='subjobs', to='partitions.partition'),
            ),
        ]),
    ]
