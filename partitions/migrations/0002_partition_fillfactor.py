from django.db import migrations


class Migration(migrations.Migration):
    """Leave room on each page so checkpoint/counter/lease updates stay HOT (no index touches them)."""

    dependencies = [("partitions", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE partitions_partition SET (fillfactor = 70)",
            "ALTER TABLE partitions_partition RESET (fillfactor)",
        ),
    ]
