"""`JobType.before_batch`: called once per fetched batch, with that batch, before any of its items starts
(serial and fed runs alike); and the compiled item query reads what the ORM queryset would."""

from __future__ import annotations

import threading

import pytest
from django.db.models.signals import post_init

from opsapp.billing.models import Subscription
from partitions.jobtypes.registry import register, unregister
from partitions.models import Partition, SubJob
from partitions.worker.compiled import CompiledRows
from partitions.worker.sources import KeyRangeSource, ModuloSource
from tests.factories import make_job, make_partition, make_subjob
from tests.jobtypes import ConcurrentItems, SerialItems
from tests.support import planned_job, run_to_end, seed

pytestmark = pytest.mark.django_db


class _Prefetching:
    """Marks each item when its batch is prefetched; an item that runs unmarked is recorded."""

    seen: list[list[int]]
    unprefetched: list[int]
    lock = threading.Lock()

    def before_batch(self, ctx, items):
        with self.lock:
            self.seen.append([item.payload["i"] for item in items])
        for item in items:
            item.prefetched = True

    def process_item(self, ctx, item):
        if not getattr(item, "prefetched", False):
            with self.lock:
                self.unprefetched.append(item.payload["i"])
        return super().process_item(ctx, item)


class SerialPrefetching(_Prefetching, SerialItems):
    name = "tests.prefetch_serial"
    batch_size = 7


class FedPrefetching(_Prefetching, ConcurrentItems):
    name = "tests.prefetch_fed"
    batch_size = 7


@pytest.fixture(params=[SerialPrefetching, FedPrefetching], ids=["serial", "fed"])
def prefetching(request):
    job_type = request.param
    job_type.seen, job_type.unprefetched = [], []
    register(job_type)
    yield job_type
    unregister(job_type.name)


def test_every_item_is_prefetched_with_its_batch_before_it_starts(prefetching):
    seed(subscriptions=0)
    job = run_to_end(planned_job(prefetching.name, {"count": 45, "chunk_size": 20}))
    assert job.status == "succeeded", job.error
    assert prefetching.unprefetched == []
    assert sorted(i for batch in prefetching.seen for i in batch) == list(range(45)), "each item once"
    assert max(len(batch) for batch in prefetching.seen) == 7


@pytest.mark.parametrize("lower, upper", [(None, None), (5, None), (None, 30), (5, 30)])
def test_a_range_reads_the_rows_its_orm_queryset_holds_in_key_order(lower, upper):
    seed(subscriptions=60)
    ids = sorted(Subscription.objects.values_list("id", flat=True))
    queryset = Subscription.objects.filter(product_id__isnull=False).only("id", "created_at")
    partition = Partition(kind=Partition.Kind.RANGE, key=["id"], lower=None if lower is None else [ids[lower]],
                          upper=None if upper is None else [ids[upper]])
    source, pks, after = KeyRangeSource(queryset, partition), [], None
    while batch := source.fetch(after, 7):
        pks.extend(row.pk for row in batch)
        after = source.checkpoint_of(batch[-1])
    assert pks == ids[lower or 0:upper] == list(source.queryset.order_by("id").values_list("id", flat=True))
    assert source.holds(list(Subscription.objects.filter(pk__in=pks[:3])))
    outside = [] if lower is None else [ids[0]]
    outside += [] if upper is None else [ids[-1]]
    assert not outside or not source.holds(list(Subscription.objects.filter(pk__in=[pks[0], *outside])))


def test_a_modulo_bucket_and_an_empty_queryset_read_through_the_same_compiled_text():
    seed(subscriptions=40)
    rows = CompiledRows(Subscription.objects.all())
    sources = [ModuloSource(Subscription.objects.all(), Partition(kind=Partition.Kind.MODULO, key=["id"],
                                                                  modulus=3, remainder=r), rows) for r in range(3)]
    assert len({source.next for source in sources}) == 1, "one statement text for every bucket"
    buckets = [[row.pk for row in source.fetch(None, 100)] for source in sources]
    assert sorted(pk for bucket in buckets for pk in bucket) == sorted(Subscription.objects.values_list("id",
                                                                                                         flat=True))
    assert all(pk % 3 == r for r, bucket in enumerate(buckets) for pk in bucket)
    empty = ModuloSource(Subscription.objects.none(), Partition(kind=Partition.Kind.MODULO, key=["id"],
                                                                modulus=3, remainder=0))
    assert empty.fetch(None, 10) == [] and empty.fetch(5, 10) == []


def _fields(row) -> dict:
    return {name: value for name, value in vars(row).items() if name != "_state"}


@pytest.mark.parametrize("queryset", [lambda: Subscription.objects.all(), lambda: SubJob.objects.all()],
                         ids=["subscription", "subjob"])
def test_rows_filled_in_directly_are_the_instances_from_db_makes(queryset):
    seed(subscriptions=5)
    partition = make_partition(make_job())
    for seq in range(3):
        make_subjob(partition, seq=seq, payload={"n": seq})
    rows = CompiledRows(queryset())
    assert rows.plain, "a plain model takes the direct path"
    fast = rows.fetch(rows.statement([], [rows.column("id")]), [], 100)
    expected = list(queryset().order_by("id"))
    assert [_fields(row) for row in fast] == [_fields(row) for row in expected] and fast
    assert all(not row._state.adding and row._state.db == "default" for row in fast)
    first = fast[0]
    first.save()  # an UPDATE of the row it came from, not an INSERT of a new one
    assert queryset().count() == len(expected)


def test_a_model_with_an_init_receiver_or_deferred_fields_goes_through_from_db():
    receiver = lambda **kwargs: None  # noqa: E731
    post_init.connect(receiver, sender=Subscription, weak=False)
    try:
        assert not CompiledRows(Subscription.objects.all()).plain
    finally:
        post_init.disconnect(receiver, sender=Subscription)
    assert CompiledRows(Subscription.objects.all()).plain
    assert not CompiledRows(Subscription.objects.only("id", "created_at")).plain
