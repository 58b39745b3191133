"""Job types used by the engine tests, over the demo tables (registered on import).

What the job types see while they run in this process goes to one `Recorder`, RECORDER; tests read it
through the `recorder` fixture (tests/conftest.py), which empties it before and after each test.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django import forms
from django.db import connection
from django.db.models import F

from opsapp.billing.models import Event, Subscription
from partitions.core.exceptions import CancelJob, Retry, SkipItem
from partitions.engine.health import HealthVerdict
from partitions.jobtypes.base import Backoff, JobType
from partitions.jobtypes.registry import register
from partitions.jobtypes.splits import Items, ItemSpec, KeyRange, Modulo
from partitions.operations import services


class RangeParams(forms.Form):
    partitions = forms.IntegerField(min_value=1, max_value=10_000, initial=4)
    sleep_ms = forms.IntegerField(min_value=0, required=False)


class SubscriptionRanges(JobType):
    """Base of the test types that walk every subscription in `partitions` balanced (created_at, id) ranges."""

    def split(self, job, params):
        return KeyRange(Subscription.objects.all(), ("created_at", "id"), partitions=params.get("partitions", 1))


@register
class BumpRange(SubscriptionRanges):
    """Adds 1 to product_version of every subscription, atomic with the checkpoint (exactly-once check)."""

    name = "tests.bump_range"
    Params = RangeParams
    batch_size = 50
    backoff = Backoff(base=0.01, cap=0.05)
    #: The fencing and lease tests watch one partition whole: idle workers must not split it (tests.skewed does).
    split_when_idle = False
    #: Its one effect is the UPDATE of subscriptions (a sample dry-run shows them before -> after).
    dry_run_safe = True
    changes_models = (Subscription,)

    def process_batch(self, ctx, items):
        Subscription.objects.filter(pk__in=[s.pk for s in items]).update(product_version=F("product_version") + 1)
        if ctx.params.get("sleep_ms"):
            time.sleep(ctx.params["sleep_ms"] / 1000)


class ModuloParams(forms.Form):
    buckets = forms.IntegerField(min_value=1, max_value=10_000)


@register
class MarkModulo(JobType):
    name = "tests.mark_modulo"
    Params = ModuloParams

    def split(self, job, params):
        return Modulo(Event.objects.all(), "id", buckets=params["buckets"])

    def process_batch(self, ctx, items):
        Event.objects.filter(pk__in=[e.pk for e in items]).update(send_count=F("send_count") + 1)


class ItemsParams(forms.Form):
    # Bounded like every real job type's params: job_start plans the split to check it, and an unbounded count
    # (the fuzz tried trillions) would exhaust the caller's memory.
    count = forms.IntegerField(min_value=0, max_value=20_000)
    chunk_size = forms.IntegerField(min_value=1, max_value=20_000)
    keys = forms.IntegerField(min_value=0, required=False, help_text="ordering keys (0 = none)")
    key_runs = forms.BooleanField(required=False, help_text="each key's items are contiguous (else interleaved)")
    fail_every = forms.IntegerField(min_value=0, required=False)
    skip_every = forms.IntegerField(min_value=0, required=False)
    sleep_ms = forms.IntegerField(min_value=0, required=False)


class Recorder:
    """What the test job types saw in this process (items run from worker threads write under `lock`)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        #: (item key, ordering key, thread start, thread end) of every processed item, for ordering assertions.
        self.timeline: list[tuple[str, str, float, float]] = []
        #: Items inside tests.items_fed's process_item right now, and the most there ever were at once.
        self.in_flight = {"now": 0, "max": 0}
        #: (item key, value, inside a transaction) for every item tests.items_fed's on_checkpoint received.
        self.checkpointed: list[tuple[str, Any, bool]] = []
        #: Rows that already failed once (tests.flaky_rows: the retry of a failed row succeeds).
        self.failed_once: set[int] = set()
        #: What tests.probe_standby saw: whether another session could become the standby while it ran.
        self.standby_free_while_running: list[bool] = []
        #: How often tests.counts_splits built its split.
        self.splits_built = 0
        #: The sizes of the batches tests.adaptive processed, in order.
        self.adaptive_batches: list[int] = []
        #: The sizes of the batches tests.times_out tried, in order (the ones rolled back included).
        self.timeout_batches: list[int] = []
        #: tests.splits_mid_batch: the test's plan_at / apply_at, and per batch the rows and the split's outcome.
        self.mid_batch: dict[str, Any] = {}


RECORDER = Recorder()


class RecordingItems(JobType):
    Params = ItemsParams
    atomic = False
    max_item_failures = 1000

    def split(self, job, params):
        keys, count = params.get("keys") or 0, params["count"]

        def key_of(i: int) -> str:
            return "" if not keys else f"key-{i * keys // count if params.get('key_runs') else i % keys}"

        return Items(
            (ItemSpec(key=f"item-{i}", payload={"i": i}, ordering_key=key_of(i)) for i in range(count)),
            chunk_size=params["chunk_size"],
        )

    def process_item(self, ctx, item):
        i = item.payload["i"]
        started = time.monotonic()
        if ctx.params.get("sleep_ms"):
            # Later items finish first within a batch, to exercise out-of-order completion.
            time.sleep(ctx.params["sleep_ms"] / 1000 * (1 + (i * 7919) % 5) / 3)
        with RECORDER.lock:
            RECORDER.timeline.append((item.key, item.ordering_key, started, time.monotonic()))
        if ctx.params.get("skip_every") and i % ctx.params["skip_every"] == 0:
            raise SkipItem(f"item {i} not applicable")
        if ctx.params.get("fail_every") and i % ctx.params["fail_every"] == 1 and item.attempts == 0:
            raise ValueError(f"item {i} failed")
        return {"i": i}


@register
class SerialItems(RecordingItems):
    name = "tests.items_serial"
    #: Its only effect is the test process's RECORDER (a sample dry-run may run it).
    dry_run_safe = True


@register
class BumpThenFail(BumpRange):
    """Bumps its batch, then fails (a sample dry-run must roll the bump back)."""

    name = "tests.bump_then_fail"

    def process_batch(self, ctx, items):
        super().process_batch(ctx, items)
        raise RuntimeError("the job code broke")


@register
class CallsOut(BumpRange):
    """tests.bump_range that also calls out of the database, as it says (dry_run_safe = False): never sampled."""

    name = "tests.calls_out"
    dry_run_safe = False


@register
class ConcurrentItems(RecordingItems):
    name = "tests.items_concurrent"
    item_concurrency = 4
    batch_size = 40


class FeedParams(ItemsParams):
    slow_item = forms.IntegerField(min_value=0, required=False, help_text="this item takes 20 x sleep_ms")
    pause_at = forms.IntegerField(min_value=0, required=False, help_text="this item pauses its job")
    cancel_at = forms.IntegerField(min_value=0, required=False, help_text="this item raises CancelJob")


@register
class FedItems(RecordingItems):
    """Concurrent items in small batches, so one run crosses many batch edges."""

    name = "tests.items_fed"
    Params = FeedParams
    item_concurrency = 4
    batch_size = 10

    def process_item(self, ctx, item):
        i = item.payload["i"]
        in_flight = RECORDER.in_flight
        with RECORDER.lock:
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
        try:
            if i == ctx.params.get("slow_item"):
                time.sleep(20 * ctx.params["sleep_ms"] / 1000)
            if i == ctx.params.get("pause_at"):
                services.job_pause(ctx.job.pk, actor="job-code")
            if i == ctx.params.get("cancel_at"):
                raise CancelJob(f"item {i} found bad data")
            return super().process_item(ctx, item)
        finally:
            with RECORDER.lock:
                in_flight["now"] -= 1

    def on_checkpoint(self, ctx, items, results):
        RECORDER.checkpointed.extend((item.key, value, connection.in_atomic_block)
                            for item, value in zip(items, results, strict=True))


@register
class StrictFedItems(FedItems):
    name = "tests.items_fed_strict"
    max_item_failures = 2


#: How long tests.controlled asks to wait when it raises Retry.
RETRY_AFTER = timedelta(minutes=1)


class ControlParams(forms.Form):
    action = forms.ChoiceField(choices=[(a, a) for a in ("retry", "cancel", "crash", "ok")])
    partitions = forms.IntegerField(min_value=1, initial=2)


@register
class Controlled(SubscriptionRanges):
    """Raises a control exception (or crashes) in every batch: for outcome mapping tests."""

    name = "tests.controlled"
    Params = ControlParams
    max_attempts = 3
    dry_run_safe = True  # it changes nothing
    backoff = Backoff(base=0.01, cap=0.02)

    def process_batch(self, ctx, items):
        action = ctx.params["action"]
        if action == "retry":
            raise Retry(after=RETRY_AFTER, reason="broker busy")
        if action == "cancel":
            raise CancelJob("bad data found")
        if action == "crash":
            raise RuntimeError("batch exploded")


@register
class StrictItems(RecordingItems):
    """Tolerates two failed items per partition; the third fails the partition (skip policy)."""

    name = "tests.items_strict"
    max_item_failures = 2


class SteerParams(forms.Form):
    action = forms.ChoiceField(choices=[("pause", "pause"), ("cancel", "cancel")])


@register
class SteersItself(SubscriptionRanges):
    """Pauses or cancels its own job during the first batch: the runner must stop at the batch boundary."""

    name = "tests.steers_itself"
    Params = SteerParams
    batch_size = 10

    def process_batch(self, ctx, items):
        from partitions.operations import services

        Subscription.objects.filter(pk__in=[s.pk for s in items]).update(product_version=F("product_version") + 1)
        if ctx.partition.checkpoint is None and ctx.job.status == "running":
            getattr(services, f"job_{ctx.params['action']}")(ctx.job.pk, actor="job-code")
            ctx.job.status = "steered"


@register
class FlakyRows(SubscriptionRanges):
    """Per-row processing of a range: every 25th row fails its first time, atomically per row (savepoints)."""

    name = "tests.flaky_rows"
    Params = RangeParams
    batch_size = 40

    def process_item(self, ctx, item):
        Subscription.objects.filter(pk=item.pk).update(product_version=F("product_version") + 1)
        if item.pk % 25 == 0 and item.pk not in RECORDER.failed_once:
            RECORDER.failed_once.add(item.pk)
            raise ValueError(f"row {item.pk} rejected")  # rolls back this row's update only


@register
class SplitFails(JobType):
    """Params it accepts, a split that cannot run: planning fails."""

    name = "tests.split_fails"
    Params = RangeParams

    def split(self, job, params):
        raise RuntimeError("the split cannot run")


class SleepParams(forms.Form):
    partitions = forms.IntegerField(min_value=1, max_value=10_000)
    sleep_ms = forms.IntegerField(min_value=0)


@register
class SleepyPartitions(JobType):
    """Partitions of one sub-job each that only wait: the fleet, not the CPU, is the limit."""

    name = "tests.sleepy"
    Params = SleepParams
    atomic = False

    def split(self, job, params):
        return Items((ItemSpec(key=f"p{i}") for i in range(params["partitions"])), chunk_size=1)

    def process_item(self, ctx, item):
        time.sleep(ctx.params["sleep_ms"] / 1000)


@register
class ProbeStandby(SubscriptionRanges):
    """Each batch asks, from a connection of its own, whether the fleet's standby lock is free."""

    name = "tests.probe_standby"
    Params = RangeParams

    def process_batch(self, ctx, items):
        import psycopg
        from django.db import connection

        params = {k: v for k, v in connection.get_connection_params().items() if k not in {"cursor_factory", "context"}}
        with psycopg.connect(**params, autocommit=True) as other:
            free = other.execute("SELECT pg_try_advisory_lock(hashtext('partitions.standby'))").fetchone()[0]
            if free:
                other.execute("SELECT pg_advisory_unlock(hashtext('partitions.standby'))")
        RECORDER.standby_free_while_running.append(free)


@register
class CountsSplits(BumpRange):
    """BumpRange counting its split() calls (the default queryset() of a type builds its split)."""

    name = "tests.counts_splits"

    def split(self, job, params):
        RECORDER.splits_built += 1
        return super().split(job, params)


# Throttling -----------------------------------------------------------------------------------------------

class AdaptiveParams(RangeParams):
    fast_items = forms.IntegerField(min_value=0, help_text="Items processed fast before every item is slow.")
    slow_ms = forms.FloatField(min_value=0)


@register
class Adaptive(BumpRange):
    """BumpRange aiming at 250 ms batches; items cost ~nothing until `fast_items` are done, then `slow_ms` each.
    (A target well above what 200 bumps cost on a loaded machine, so the fast phase grows by the step alone.)"""

    name = "tests.adaptive"
    Params = AdaptiveParams
    batch_size = 10
    target_batch_seconds = 0.25
    min_batch_size = 5
    max_batch_size = 200

    def process_batch(self, ctx, items):
        super().process_batch(ctx, items)
        if sum(RECORDER.adaptive_batches) >= ctx.params["fast_items"]:
            time.sleep(len(items) * ctx.params["slow_ms"] / 1000)
        RECORDER.adaptive_batches.append(len(items))


class TimeoutParams(RangeParams):
    max_items = forms.IntegerField(min_value=1, help_text="Batches larger than this run into statement_timeout.")


@register
class TimesOut(BumpRange):
    """Bumps its batch, then a batch of more than `max_items` sleeps past a 100 ms statement_timeout."""

    name = "tests.times_out"
    Params = TimeoutParams
    batch_size = 100

    def process_batch(self, ctx, items):
        RECORDER.timeout_batches.append(len(items))
        super().process_batch(ctx, items)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = '100ms'")
            if len(items) > ctx.params["max_items"]:
                cursor.execute("SELECT pg_sleep(2)")


@register
class TimesOutAtMinimum(TimesOut):
    """TimesOut that may not go below 40 items a batch."""

    name = "tests.times_out_at_minimum"
    min_batch_size = 40


class GatedParams(RangeParams):
    gate = forms.CharField(help_text="While this file exists the job type's health check fails.")


@register
class HealthGated(BumpRange):
    """BumpRange with a health check of its own: unhealthy while the file named by `gate` exists."""

    name = "tests.health_gated"
    Params = GatedParams

    def healthy(self, job):
        if Path(job.params["gate"]).exists():
            return HealthVerdict.unhealthy("the gate file is there")
        return HealthVerdict.healthy()


# Splitting ----------------------------------------------------------------------------------------------------

class SkewParams(RangeParams):
    slow_below = forms.IntegerField(min_value=0, help_text="Subscriptions with a smaller id are the slow ones.")
    slow_ms = forms.IntegerField(min_value=0, help_text="What a batch of slow rows waits.")
    fast_ms = forms.IntegerField(min_value=0, help_text="What a batch of the other rows waits.")


@register
class Skewed(BumpRange):
    """BumpRange on id ranges where the rows below `slow_below` cost `slow_ms` a batch, the rest `fast_ms`."""

    name = "tests.skewed"
    Params = SkewParams
    batch_size = 20
    split_when_idle = True

    def split(self, job, params):
        return KeyRange(Subscription.objects.all(), ("id",), partitions=params["partitions"])

    def process_batch(self, ctx, items):
        super().process_batch(ctx, items)
        slow = items[0].pk < ctx.params["slow_below"]
        time.sleep((ctx.params["slow_ms"] if slow else ctx.params["fast_ms"]) / 1000)


def split_from_another_connection(partition_id: int, plan=None):
    """Plan (when `plan` is None) or apply a split of a partition from a thread with its own connection, as
    an idle worker would while the holder's batch is in flight; (plan, new partition or None)."""
    from partitions.models import Partition
    from partitions.worker import splitting
    from partitions.worker.context import job_setup

    result: dict = {}

    def work() -> None:
        try:
            partition = Partition.objects.get(pk=partition_id)
            setup = job_setup(partition.job_id)
            result["plan"] = plan or splitting.plan(partition, setup)
            result["new"] = None if plan is None else splitting.apply(plan, setup, actor="idle-test", why="test")
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(30)
    return result.get("plan"), result.get("new")


@register
class SplitsMidBatch(BumpRange):
    """BumpRange (one id range) that, during batch `plan_at`, plans a split from another connection and,
    during batch `apply_at`, applies it: the split races the holder's checkpoint in the order the test picks."""

    name = "tests.splits_mid_batch"
    batch_size = 150

    def split(self, job, params):
        return KeyRange(Subscription.objects.all(), ("id",), partitions=1)

    def process_batch(self, ctx, items):
        super().process_batch(ctx, items)
        seen = RECORDER.mid_batch
        batch = seen.setdefault("batches", [])
        batch.append(len(items))
        if len(batch) == seen["plan_at"]:
            seen["plan"], _ = split_from_another_connection(ctx.partition.pk)
        if len(batch) == seen["apply_at"]:
            _, seen["new"] = split_from_another_connection(ctx.partition.pk, seen["plan"])
            seen["applied"] = True


class TooBigParams(RangeParams):
    max_rows = forms.IntegerField(min_value=1, help_text="A partition with more rows times out on every batch.")


@register
class TooBigPartition(BumpRange):
    """BumpRange whose batches run into statement_timeout while their partition has more than `max_rows`
    rows (a query over the whole partition), whatever the batch size: only halving the partition helps."""

    name = "tests.too_big_partition"
    Params = TooBigParams
    batch_size = 50
    min_batch_size = 50
    backoff = Backoff(base=0.01, cap=0.02)
    max_attempts = 10

    def process_batch(self, ctx, items):
        super().process_batch(ctx, items)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = '100ms'")
            if ctx.partition.estimated_items > ctx.params["max_rows"]:
                cursor.execute("SELECT pg_sleep(2)")
@register
class LoggedItems(ConcurrentItems):
    """Concurrent items that each log one line from their item thread (tests.logs reads them back)."""

    name = "tests.items_logged"

    def process_item(self, ctx, item):
        logging.getLogger("tests.jobtypes").info("processing %s", item.key)
        return super().process_item(ctx, item)


@register
class TwoFailures(RecordingItems):
    """Items failing for two reasons (tests.test_failure_ledger): every 10th (from 1) has no address on its first
    attempt only, so a retry of that reason succeeds; every 10th from 2 has no tax rate for its region, always;
    every 10th from 3 is skipped by job code."""

    name = "tests.two_failures"

    def process_item(self, ctx, item):
        i = item.payload["i"]
        if i % 10 == 1 and item.attempts == 0:
            raise ValueError(f"customer {i} has no address")
        if i % 10 == 2:
            raise LookupError(f"no tax rate for region {i % 3}")
        if i % 10 == 3:
            raise SkipItem(f"customer {i} opted out")
        return {"i": i}


@register
class ReconnectsMidRun(BumpRange):
    """Bumps its batch outside the checkpoint's transaction, then drops the connection, as job code that swallowed
    a lost database's error and reconnected would leave it (tests.test_database_lost)."""

    name = "tests.reconnects_mid_run"
    atomic = False

    def process_batch(self, ctx, items):
        super().process_batch(ctx, items)
        connection.close()


@register
class PlansOnAStandby(BumpRange):
    """Its prepare step writes on a server that refuses writes (SQLSTATE 25006), as after a demotion."""

    name = "tests.plans_on_a_standby"

    def prepare(self, job, params):
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION default_transaction_read_only = on")
            cursor.execute("CREATE TEMP TABLE prepared (i int)")
