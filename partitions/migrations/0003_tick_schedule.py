from django.db import migrations


def create_tick_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        name="partitions.tick",
        defaults={"func": "partitions.tasks.tick", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def delete_tick_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="partitions.tick").delete()


class Migration(migrations.Migration):
    """`tick` (reaper, finalizer, drain top-up, samples, deadline warnings) every minute."""

    dependencies = [
        ("partitions", "0002_partition_fillfactor"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_tick_schedule, delete_tick_schedule)]
