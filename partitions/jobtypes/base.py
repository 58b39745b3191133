"""The API engineers write against: subclass JobType, declare params, split and processing.

    @register
    class SendInvoices(JobType):
        name = "billing.send_invoices"
        Params = SendInvoicesParams          # a django.forms.Form
        atomic = False
        item_concurrency = 4

        def split(self, job, params):
            return Items(ItemSpec(key=f"customer-{c.pk}", payload={"customer": c.pk}) for c in ...)

        def process_item(self, ctx, item):
            ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

from django import forms
from django.db.models import Model, QuerySet

from partitions.core.backoff import Backoff
from partitions.core.encoding import to_json
from partitions.core.exceptions import InvalidParams, JobCodeError
from partitions.core.validation import throttle_errors, unstorable_values
from partitions.engine.health import HealthVerdict
from partitions.jobtypes.splits import Split


class NoParams(forms.Form):
    """A job type without parameters."""


#: Set while a sample dry-run runs a type that `records_effects`: where it describes an external effect.
_effect_recorder: ContextVar[Callable[[str], None] | None] = ContextVar("partitions_effect_recorder", default=None)


@contextmanager
def recording_effects(record: Callable[[str], None]) -> Iterator[None]:
    """Inside: `JobType.effect_recorder()` returns `record` (the sample dry-run's list of calls not made)."""
    token = _effect_recorder.set(record)
    try:
        yield
    finally:
        _effect_recorder.reset(token)


class JobType:
    """Base class of a registered job type; instances are stateless.

    An item's database effect that must not repeat can go in `on_checkpoint`, which gets the items each
    checkpoint commits (with process_item's return values) inside the checkpoint's own transaction.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    Params: ClassVar[type[forms.Form]] = NoParams
    #: The batch's database effects and the checkpoint commit in one transaction.
    atomic: ClassVar[bool] = True
    #: Items per batch (with target_batch_seconds: the first batch's).
    batch_size: ClassVar[int] = 100
    #: Adaptive batch size: aim each batch at this many seconds, within [min_batch_size, max_batch_size].
    target_batch_seconds: ClassVar[float | None] = None
    min_batch_size: ClassVar[int] = 1
    max_batch_size: ClassVar[int] = 10_000
    #: Defaults of a new job's throttle (operators change them on a running job): items/s across the
    #: fleet (None = no limit), and a pause after each batch.
    rate_limit: ClassVar[float | None] = None
    pause_ms: ClassVar[int] = 0
    #: Idle workers may split a running partition's remaining work (no long tail), and a partition that
    #: failed by timeout is halved before its next attempt; never below min_split_items (nor 4 batches).
    split_when_idle: ClassVar[bool] = True
    split_when_failing: ClassVar[bool] = True
    min_split_items: ClassVar[int] = 0
    #: Items of a batch in flight at once (threads, for I/O-bound work; needs atomic = False).
    item_concurrency: ClassVar[int] = 1
    #: Immediate retries of a failing item before it is recorded as a failed sub-job.
    item_retries: ClassVar[int] = 0
    max_attempts: ClassVar[int] = 5
    backoff: ClassVar[Backoff] = Backoff()
    #: Failed items a partition tolerates (skip policy); one more fails the partition.
    max_item_failures: ClassVar[int] = 100
    lease_seconds: ClassVar[float | None] = None
    #: The longest one process_item (or process_batch) call may take; None: PARTITIONS_MAX_ITEM_SECONDS. A drain
    #: starts no item its estimate says would run past its budget, so it ends within budget + this.
    max_item_seconds: ClassVar[float | None] = None
    #: The sample dry-run (`jobs start … --dry-run --sample N`) runs this type's real code in a transaction it
    #: always rolls back, so it may run only a type that says what else it does (explicit opt-in):
    #: True: every effect is in this database; False: it has effects outside it (mail, a broker) and is
    #: refused, unless `records_effects`. None (not declared): refused.
    dry_run_safe: ClassVar[bool | None] = None
    #: Its external effects ask `self.effect_recorder()` first and, inside a sample, describe themselves to it
    #: ("would mail invoice X to Y") instead of happening; such a type may be sampled.
    records_effects: ClassVar[bool] = False
    #: The models whose rows the sample shows before -> after: every row its statements insert, update or
    #: delete in their tables is captured (by a trigger that lives only in the sample's transaction).
    changes_models: ClassVar[tuple[type[Model], ...]] = ()

    def validate_params(self, data: dict[str, Any] | None) -> dict[str, Any]:
        """Clean raw params through the Params form (fields' `initial` are defaults); JSON-safe or InvalidParams."""
        defaults = {name: f.initial for name, f in self.Params.base_fields.items() if f.initial is not None}
        form = self.Params(data={**defaults, **(data or {})})
        if not form.is_valid():
            raise InvalidParams(self.name, {f: [str(m) for m in msgs] for f, msgs in form.errors.items()})
        if problems := unstorable_values(form.cleaned_data):
            raise InvalidParams(self.name, {"__all__": problems})
        return to_json(form.cleaned_data)

    def load_params(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Typed params for a stored job (stored values are re-cleaned by the same form)."""
        form = self.Params(data=stored)
        if not form.is_valid():
            raise InvalidParams(self.name, {f: [str(m) for m in msgs] for f, msgs in form.errors.items()})
        return form.cleaned_data

    # Step 1, 2, 3 -------------------------------------------------------------------

    def prepare(self, job, params: dict[str, Any]) -> dict | None:
        """Step 1, once per job before splitting; may return data to keep in job.stats['prepare']."""
        return None

    def split(self, job, params: dict[str, Any]) -> Split | Sequence[Split]:
        raise NotImplementedError(f"{type(self).__name__} must define split()")

    def queryset(self, job, params: dict[str, Any], scope: dict) -> QuerySet:
        """The rows a range/modulo partition with this scope reads (default: the split's own queryset)."""
        splits = self.split(job, params)
        splits = [splits] if isinstance(splits, Split) else list(splits)
        if len(splits) != 1 or not hasattr(splits[0], "queryset"):
            raise JobCodeError(f"{self.name} has several splits: define queryset(job, params, scope)")
        return splits[0].queryset

    def process_batch(self, ctx, items: list) -> None:
        """Process a batch; default calls process_item for each (failures are handled per item)."""
        raise NotImplementedError

    def before_batch(self, ctx, items: list) -> None:
        """Called once per fetched batch, in the runner's thread, before any of its items starts: read what the
        items need in bulk (and keep it on them) instead of one query per item. Items of the batch before may
        still be running on other threads."""

    def process_item(self, ctx, item) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define process_item() or process_batch()")

    def on_checkpoint(self, ctx, items: list, results: list[Any]) -> None:
        """Called inside the checkpoint's transaction with the items that succeeded since the previous checkpoint
        and what process_item returned for each (None after process_batch). Write their database effects here,
        in bulk, to commit them with the checkpoint that passes them (or roll back with it): exactly once even
        when process_item runs on threads (item_concurrency > 1) outside any transaction."""

    def healthy(self, job) -> HealthVerdict | None:
        """A health check of this job type's own, run between batches (cached for HEALTH_CHECK_SECONDS):
        an unhealthy verdict holds the job's partitions until it passes (None or healthy: go on)."""
        return None

    def concurrency(self, params: dict[str, Any]) -> int:
        """Items in flight for this job (default: item_concurrency); may depend on params."""
        return self.item_concurrency

    def finalize(self, job, stats: dict[str, Any]) -> dict | None:
        """Step 3, once when every partition is terminal; may return a summary kept in job.stats."""
        return None

    def verify(self, job, params: dict[str, Any]) -> str | None:
        """The job type's invariant, checked before the job counts as succeeded (after the engine's own proof
        that every planned key was committed): why it does not hold, or None when it does. A bounded query,
        such as "no row of the job's scope is still in the old state"; `jobs verify ID` runs it on demand."""
        return None

    def effect_recorder(self) -> Callable[[str], None] | None:
        """Inside a sample dry-run of a type that `records_effects`: describe an external effect to this instead
        of making it. None: make it."""
        return _effect_recorder.get() if self.records_effects else None

    # Introspection used by the runner and registry -------------------------------

    @classmethod
    def processes_items_one_by_one(cls) -> bool:
        return cls.process_batch is JobType.process_batch

    @classmethod
    def check_declaration(cls) -> None:
        """Raise JobCodeError for a job type that cannot work as declared."""
        if not cls.name or "." not in cls.name:
            raise JobCodeError(f"{cls.__name__}.name must be a dotted name such as 'billing.send_invoices'")
        if cls.item_concurrency < 1 or cls.batch_size < 1 or cls.max_attempts < 1:
            raise JobCodeError(f"{cls.name}: item_concurrency, batch_size and max_attempts must be >= 1")
        if cls.item_concurrency > 1 and cls.atomic:
            raise JobCodeError(f"{cls.name}: item_concurrency > 1 runs items on threads, which cannot share "
                               "one transaction; set atomic = False")
        if cls.item_concurrency > 1 and not cls.processes_items_one_by_one():
            raise JobCodeError(f"{cls.name}: item_concurrency > 1 needs process_item, not process_batch")
        if not issubclass(cls.Params, forms.BaseForm):
            raise JobCodeError(f"{cls.name}: Params must be a django.forms.Form")
        cls._check_pacing()
        if cls.dry_run_safe not in (None, True, False) or not isinstance(cls.changes_models, tuple) or not all(
                isinstance(m, type) and issubclass(m, Model) for m in cls.changes_models):
            raise JobCodeError(f"{cls.name}: dry_run_safe must be True, False or None, and changes_models a tuple "
                               "of models")

    @classmethod
    def _check_pacing(cls) -> None:
        """The adaptive batch size, the throttle defaults and the split floor."""
        if cls.target_batch_seconds is not None:
            if not cls.target_batch_seconds > 0:
                raise JobCodeError(f"{cls.name}: target_batch_seconds must be > 0")
            if not 1 <= cls.min_batch_size <= cls.batch_size <= cls.max_batch_size:
                raise JobCodeError(f"{cls.name}: need 1 <= min_batch_size <= batch_size <= max_batch_size")
            if cls.item_concurrency > 1:
                raise JobCodeError(f"{cls.name}: target_batch_seconds sizes a batch's transaction; items in flight "
                                   "across batches (item_concurrency > 1) have none: leave it unset")
        if problems := throttle_errors(cls.rate_limit, cls.pause_ms):
            raise JobCodeError(f"{cls.name}: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in problems.items()))
        if cls.min_split_items < 0:
            raise JobCodeError(f"{cls.name}: min_split_items must be >= 0")

