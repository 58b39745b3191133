"""Splits cover the work exactly once: key ranges (with duplicate timestamps), modulo buckets, item chunks."""

import itertools
from collections import Counter

import pytest

from opsapp.billing.models import Event, Subscription
from partitions.jobtypes.splits import Items, ItemSpec, KeyRange, Modulo
from partitions.models import Job, Partition
from partitions.worker.sources import KeyRangeSource, ModuloSource
from tests.support import seed

pytestmark = pytest.mark.django_db

KEY = ("created_at", "id")


def rows_of(plan, queryset, source_cls) -> list[int]:
    partition = Partition(kind=plan.kind, lower=plan.lower, upper=plan.upper, key=plan.key,
                          modulus=plan.modulus, remainder=plan.remainder)
    source, pks, after = source_cls(queryset, partition), [], None
    while batch := source.fetch(after, 333):
        pks.extend(row.pk for row in batch)
        after = source.checkpoint_of(batch[-1])
    return pks


@pytest.mark.parametrize("how", [{"partitions": 10}, {"rows_per_partition": 700}])
def test_key_ranges_over_duplicate_timestamps_are_disjoint_cover_every_row_once_and_balanced(how):
    seed(subscriptions=7000)
    queryset = Subscription.objects.all()
    stamps = Counter(queryset.values_list("created_at", flat=True))
    assert max(stamps.values()) > 1, "the data must have duplicate timestamps"
    plans = KeyRange(queryset, KEY, **how).plan()
    assert len(plans) == 10
    assert plans[0].lower is None and plans[-1].upper is None
    assert all(a.upper == b.lower for a, b in itertools.pairwise(plans))
    seen = Counter(pk for plan in plans for pk in rows_of(plan, queryset, KeyRangeSource))
    assert set(seen) == set(queryset.values_list("pk", flat=True))
    assert set(seen.values()) == {1}
    sizes = [len(rows_of(plan, queryset, KeyRangeSource)) for plan in plans]
    assert sizes == [plan.estimated_items for plan in plans]
    assert max(sizes) <= 1.1 * min(sizes)
    # Some boundary falls inside a run of equal timestamps, and still nothing overlaps.
    lowers = [plan.lower[0] for plan in plans[1:]]
    assert any(stamps[Subscription._meta.get_field("created_at").to_python(ts)] > 1 for ts in lowers)


def test_key_range_of_a_filtered_queryset_and_of_an_empty_one():
    seed(subscriptions=900, products=3)
    product_rows = Subscription.objects.filter(product_id=Subscription.objects.values("product_id")[:1])
    plans = KeyRange(product_rows, KEY, partitions=4).plan()
    covered = [pk for plan in plans for pk in rows_of(plan, product_rows, KeyRangeSource)]
    assert sorted(covered) == sorted(product_rows.values_list("pk", flat=True))
    empty = KeyRange(Subscription.objects.filter(pk__lt=0), KEY, partitions=4).plan()
    assert [(p.lower, p.upper, p.estimated_items) for p in empty] == [(None, None, 0)]


def test_a_small_remainder_is_folded_into_the_previous_range():
    seed(subscriptions=1030)
    plans = KeyRange(Subscription.objects.all(), KEY, rows_per_partition=100).plan()
    assert [p.estimated_items for p in plans] == [100] * 9 + [130]


def test_modulo_buckets_cover_each_id_once_with_counts():
    seed(subscriptions=0, events=1001)
    plans = Modulo(Event.objects.all(), "id", buckets=7).plan()
    assert [p.remainder for p in plans] == list(range(7))
    seen = Counter(pk for plan in plans for pk in rows_of(plan, Event.objects.all(), ModuloSource))
    assert set(seen) == set(Event.objects.values_list("pk", flat=True)) and set(seen.values()) == {1}
    assert sum(p.estimated_items for p in plans) == 1001


def test_items_with_one_ordering_key_stay_in_one_partition_in_order():
    specs = [ItemSpec(key=f"i{i}", ordering_key=f"customer-{i % 4}" if i % 2 else "") for i in range(50)]
    plans = Items(specs, chunk_size=10).plan()
    homes: dict[str, set[int]] = {}
    for n, plan in enumerate(plans):
        for spec in plan.items:
            if spec.ordering_key:
                homes.setdefault(spec.ordering_key, set()).add(n)
    assert all(len(partitions) == 1 for partitions in homes.values())
    for plan in plans:
        for key in homes:
            order = [int(s.key[1:]) for s in plan.items if s.ordering_key == key]
            assert order == sorted(order)
    assert sorted(s.key for p in plans for s in p.items) == sorted(s.key for s in specs)


def test_planning_writes_nothing_for_a_preview():
    from partitions.operations import services

    seed(subscriptions=100)
    plans = services.job_preview("tests.bump_range", {"partitions": 3})
    assert len(plans) == 3
    assert not Job.objects.exists() and not Partition.objects.exists()
