"""The engine tables' keys and indexes: no index is a left prefix of another one on the same table (the
longer index serves every lookup of the shorter, and each extra index is one more write per inserted or
moved row: a sub-job's status change rewrites every index of its row), and a sub-job's one composite foreign
key keeps its job its partition's."""

import pytest
from django.db import IntegrityError, connection, transaction

from partitions.models import SubJob
from tests.factories import make_job, make_partition


def _indexes() -> dict[str, list[tuple[str, list[str], bool, bool]]]:
    """Per table: (index, its columns, unique, partial: a predicate, an expression or not a btree)."""
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT t.relname, i.relname,
                   array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o)
                         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o),
                   x.indisunique, x.indpred IS NOT NULL OR x.indexprs IS NOT NULL OR am.amname <> 'btree'
            FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
                 JOIN pg_am am ON am.oid = i.relam
            WHERE t.relname LIKE 'partitions\\_%'""")
        by_table: dict[str, list[tuple[str, list[str], bool, bool]]] = {}
        for table, name, columns, unique, partial in cursor.fetchall():
            by_table.setdefault(table, []).append((name, columns, unique, partial))
    return by_table


def test_no_index_is_a_left_prefix_of_another_on_the_same_table(db):
    redundant = []
    for table, indexes in _indexes().items():
        for name, columns, unique, partial in indexes:
            if unique or partial:  # it does more than serve lookups, or serves only some
                continue
            for other, other_columns, _, other_partial in indexes:
                if not other_partial and len(other_columns) > len(columns) and other_columns[:len(columns)] == columns:
                    redundant.append(f"{table}.{name} {columns} is a prefix of {other} {other_columns}")
    assert not redundant, "\n".join(redundant)


def test_the_sub_job_table_keeps_the_indexes_its_queries_use(db):
    names = {name for name, *_ in _indexes()["partitions_subjob"]}
    assert {"subjob_partition_seq_idx", "subjob_job_status_idx"} <= names


def test_a_sub_job_belongs_to_its_partitions_job_and_to_an_existing_partition(db):
    partition, other_job = make_partition(make_job()), make_job()
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # checked now, not at the test's (rolled back) commit
    SubJob.objects.create(job=partition.job, partition=partition, seq=0, key="mine")
    for job_id, partition_id in ((other_job.pk, partition.pk), (partition.job_id, partition.pk + 1000)):
        with pytest.raises(IntegrityError, match="subjob_partition_job_fk"), transaction.atomic():
            SubJob.objects.create(job_id=job_id, partition_id=partition_id, seq=1, key="stray")
    assert list(SubJob.objects.values_list("key", flat=True)) == ["mine"]
