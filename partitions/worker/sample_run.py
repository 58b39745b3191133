"""The sample dry-run: a job type's real code on a few planned partitions, in a transaction always rolled back.

`job_sample(type_name, params, partitions=N, items=M)` plans the job as the preview does (prepare is not run),
then, for N of the planned partitions (evenly spread over the plan), fetches at most M items each through the
engine's own item sources and runs the type's `before_batch`, `process_item`/`process_batch` and
`on_checkpoint` on them, one item at a time on this one connection (so every statement the job code makes is
inside the sample's transaction). It reports:

- the rows it changed, before -> after, in the tables of the type's `changes_models`: a trigger created inside
  the transaction captures every insert, update and delete there (whatever statement made it), and goes with
  the rollback. CREATE TRIGGER locks the table against writers until then; the lock is waited for at most
  LOCK_TIMEOUT, so a busy table refuses the sample rather than stalling behind it;
- the external calls it did not make, for a type that `records_effects` (see `JobType.effect_recorder`);
- items/s on one worker (measured, serial: a lower bound for a type with item_concurrency > 1), statements
  (savepoints aside) and rows read or written per item, and the whole job's projection at the chosen max
  parallel, from `partitions.reads.projection.project`, the computation every surface uses.

Nothing stays: no job, partition, sub-job, event, outbox row, nor any row of the job's own tables (sequences
the job code advanced stay advanced, as after any rollback). A type that has not declared its effects
(`dry_run_safe`) is refused before anything runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from partitions.core import validation
from partitions.core.exceptions import InvalidParams, JobControl, PartitionsError, SkipItem, error_line
from partitions.core.states import JobStatus
from partitions.engine import claiming
from partitions.engine.sql import queries
from partitions.jobtypes import registry
from partitions.jobtypes.base import JobType, recording_effects
from partitions.jobtypes.splits import PartitionPlan
from partitions.models import Job, Partition, SubJob
from partitions.operations import services
from partitions.reads.projection import JobFacts, Projection, Sample, project
from partitions.worker.context import Context, JobSetup
from partitions.worker.invoke import JobCode
from partitions.worker.sources import source_for

#: Bounds of the two sizes an operator chooses: planned partitions sampled, and items read from each.
SAMPLE_PARTITIONS_MAX = 20
SAMPLE_ITEMS_DEFAULT = 100
SAMPLE_ITEMS_MAX = 10_000
#: Changed rows, calls and item errors listed in a report (the totals count them all).
SHOWN = 20
#: The longest the sample waits for a lock (its capture trigger's on a changed table, or the job code's).
LOCK_TIMEOUT = "2s"
#: The worker id job code sees in its Context during a sample.
SAMPLE_WORKER = "sample-dry-run"
#: Savepoints are the sample's own bookkeeping around each item, not the job's load.
_BOOKKEEPING = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
#: The window of the one synthetic sample the projection reads (any width gives the same rate).
_WINDOW_SECONDS = 60.0


class SampleRefused(PartitionsError):
    """The job type cannot be sampled as declared (its effects are unknown or reach outside the database)."""

    def __init__(self, type_name: str, reason: str):
        self.type_name, self.reason = type_name, reason
        super().__init__(f"cannot sample {type_name}: {reason}")


class SampleFailed(PartitionsError):
    """The job code failed or stopped during the sample (everything it did was rolled back)."""

    def __init__(self, type_name: str, reason: str):
        self.type_name, self.reason = type_name, reason
        super().__init__(f"sample of {type_name} failed (rolled back): {reason}")


@dataclass(frozen=True)
class RowChange:
    """One row the sample changed: for an update only the columns that changed, before and after."""

    table: str
    pk: Any
    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class Measured:
    """What the sampled batches did, on one worker."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    statements: int = 0
    rows: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.done + self.failed + self.skipped

    @property
    def items_per_second(self) -> float | None:
        return self.handled / self.seconds if self.handled and self.seconds > 0 else None


@dataclass
class SampleReport:
    type_name: str
    sampled: list[int]
    planned_partitions: int
    planned_items: int
    parallel: int
    #: Items the type runs at once on a worker; the sample runs them one at a time (its rate is a lower bound).
    item_concurrency: int
    measured: Measured
    changes: list[RowChange]
    calls: list[str]
    projection: Projection
    deadline: datetime | None
    #: The run options the projection applied, and the database time it was made at.
    max_parallel: int = 0
    rate_limit: float | None = None
    now: datetime | None = None

    def per_item(self, total: int) -> float | None:
        return total / self.measured.handled if self.measured.handled else None

    def as_dict(self) -> dict[str, Any]:
        """The `sample` object of `jobs start … --dry-run --sample N --json` (and of the admin's report)."""
        m, p = self.measured, self.projection
        statements, rows = self.per_item(m.statements), self.per_item(m.rows)
        rate = p.effective_rate
        return {
            "partitions": self.sampled, "planned_partitions": self.planned_partitions,
            "planned_items": self.planned_items, "items": m.handled, "items_done": m.done, "items_failed": m.failed,
            "items_skipped": m.skipped, "errors": m.errors[:SHOWN], "seconds": round(m.seconds, 6),
            "items_per_second": m.items_per_second, "item_concurrency": self.item_concurrency,
            "statements": m.statements, "statements_per_item": statements, "rows_per_item": rows,
            "parallel": self.parallel, "projected_items_per_second": rate, "projected_seconds": p.eta_seconds,
            "projected_finish": p.projected_finish,
            "statements_per_second": None if rate is None or statements is None else statements * rate,
            "rows_per_second": None if rate is None or rows is None else rows * rate,
            "limited_by": p.limited_by, "deadline": self.deadline, "verdict": p.verdict,
            "meets_deadline": p.meets_deadline, "workers_needed": p.workers_needed, "rate_needed": p.rate_needed,
            "changes": [asdict(c) for c in self.changes[:SHOWN]], "changes_total": len(self.changes),
            "calls": self.calls[:SHOWN], "calls_total": len(self.calls), "rolled_back": True,
        }


def change_text(change: dict[str, Any]) -> str:
    """One changed row of `as_dict()['changes']` as `column before -> after, …` (∅: no row)."""
    before, after = change["before"] or {}, change["after"] or {}
    return ", ".join(f"{column} {before.get(column, '∅')!r} -> {after.get(column, '∅')!r}"
                     for column in dict.fromkeys([*before, *after]))


def sample_refusal(job_type: JobType) -> str | None:
    """Why this type cannot be sampled (None: it can): its effects must be declared, and be in the database
    or recorded."""
    if job_type.records_effects or job_type.dry_run_safe is True:
        return None
    if job_type.dry_run_safe is False:
        return ("it has effects outside the database (dry_run_safe = False) and does not record them "
                "(records_effects)")
    return ("it has not declared its effects: set dry_run_safe = True (database only) or False, or record "
            "external calls (records_effects)")


def sample_size_errors(partitions: int, items: int) -> dict[str, list[str]]:
    """The two sizes' bounds, as form-style errors (empty: both fine)."""
    errors = {}
    if not 1 <= partitions <= SAMPLE_PARTITIONS_MAX:
        errors["sample"] = [f"sample between 1 and {SAMPLE_PARTITIONS_MAX} partitions"]
    if not 1 <= items <= SAMPLE_ITEMS_MAX:
        errors["sample_items"] = [f"sample between 1 and {SAMPLE_ITEMS_MAX:,} items a partition"]
    return errors


def job_sample(type_name: str, params: dict[str, Any] | None = None, *, partitions: int = 1,
               items: int = SAMPLE_ITEMS_DEFAULT, max_parallel: int = 0, rate_limit: Any = validation.UNSET,
               deadline: datetime | None = None, plans: list[PartitionPlan] | None = None) -> SampleReport:
    """Run `type_name` on a sample of its plan and roll it all back (see the module docstring). The run options
    are the start's (a rate limit left UNSET is the type's default): the projection applies them. `plans`: the
    plan of these params when the caller has just made it (the preview it shows), so the split runs once."""
    job_type = registry.get(type_name)
    if reason := sample_refusal(job_type):
        raise SampleRefused(type_name, reason)
    if errors := sample_size_errors(partitions, items):
        raise InvalidParams(validation.RUN_OPTIONS, errors)
    options = validation.run_options(max_parallel=max_parallel, deadline=deadline,
                                     rate_limit=job_type.rate_limit if rate_limit is validation.UNSET else rate_limit)
    plans = services.job_preview(type_name, params) if plans is None else plans
    cleaned = job_type.load_params(job_type.validate_params(params))
    chosen = spread(len(plans), partitions)
    calls: list[str] = []
    with transaction.atomic():
        try:
            _capture(job_type.changes_models)
            setup = JobSetup(Job(type_name=type_name, params=cleaned, status=JobStatus.RUNNING), job_type, cleaned)
            with recording_effects(calls.append) if job_type.records_effects else nullcontext():
                measured = _run(setup, [(seq, plans[seq]) for seq in chosen], items)
            changes = _changes(job_type.changes_models) if job_type.changes_models else []
            now = claiming.db_now()
        except PartitionsError:
            raise
        except Exception as exc:  # the job code, or a lock it waited for past LOCK_TIMEOUT
            raise SampleFailed(type_name, error_line(exc)) from exc
        finally:
            transaction.set_rollback(True)
    parallel = min(options.max_parallel or len(plans), len(plans)) or 1
    planned_items = sum(p.estimated_items for p in plans)
    projection = projection_at(measured.items_per_second, items=planned_items, parallel=parallel,
                               max_parallel=options.max_parallel, rate_limit=options.rate_limit,
                               deadline=options.deadline, now=now)
    return SampleReport(type_name, chosen, len(plans), planned_items, parallel, job_type.concurrency(cleaned),
                        measured, changes, calls, projection, options.deadline, options.max_parallel,
                        options.rate_limit, now)


def spread(planned: int, wanted: int) -> list[int]:
    """`wanted` partition positions evenly spread over a plan of `planned` (all of them when it has fewer)."""
    if wanted >= planned:
        return list(range(planned))
    if wanted == 1:
        return [0]
    return sorted({round(i * (planned - 1) / (wanted - 1)) for i in range(wanted)})


def projection_at(per_worker: float | None, *, items: int, parallel: int, max_parallel: int,
                  rate_limit: float | None, deadline: datetime | None, now: datetime) -> Projection:
    """The whole job's projection as if it had just begun with `parallel` partitions in flight, each at the
    sampled per-worker rate: `project()` reads one sample window over which they handled items at that rate,
    with every planned item still to do (so the rate limit, max parallel and deadline apply as on a live job)."""
    handled = (per_worker or 0.0) * parallel * _WINDOW_SECONDS
    facts = JobFacts(status=JobStatus.RUNNING, now=now, handled=handled, items_total=handled + items,
                     live_leases=parallel, samples=[Sample(now - timedelta(seconds=_WINDOW_SECONDS), 0, parallel)],
                     rate_limit=rate_limit, max_parallel=max_parallel, deadline=deadline)
    return project(facts)


# Inside the rolled-back transaction ----------------------------------------------------------------------------

def _capture(models) -> None:
    """A lock timeout, and the capture trigger on each changed model's table."""
    with connection.cursor() as cursor:
        cursor.execute(queries["sample_lock_timeout"], {"timeout": LOCK_TIMEOUT})
        if not models:
            return
        for name in ("sample_changes_table", "sample_capture_function", "sample_watch_function"):
            cursor.execute(queries[name])
        for model in dict.fromkeys(models):
            cursor.execute(queries["sample_watch"], {"table": model._meta.db_table})


def _changes(models) -> list[RowChange]:
    """The captured changes, one per row (by its primary key): its first state before and its last after (a row
    inserted and deleted again is no change); an update lists only the columns it changed."""
    pk_columns = {model._meta.db_table: model._meta.pk.column for model in models}
    with connection.cursor() as cursor:
        cursor.execute(queries["sample_changes"])
        rows = cursor.fetchall()
    first: dict[tuple[str, Any], dict | None] = {}
    last: dict[tuple[str, Any], dict | None] = {}
    for table, old, new in rows:
        old, new = _json(old), _json(new)
        key = (table, (old or new)[pk_columns[table]])
        first.setdefault(key, old)
        last[key] = new
    changes = []
    for key, before in first.items():
        after = last[key]
        if before is None and after is None:
            continue
        if before is not None and after is not None:
            columns = [c for c in after if before.get(c) != after[c]]
            if not columns:
                continue
            before, after = {c: before.get(c) for c in columns}, {c: after[c] for c in columns}
        op = "insert" if before is None else "delete" if after is None else "update"
        changes.append(RowChange(table=key[0], pk=key[1], op=op, before=before, after=after))
    return changes


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _run(setup: JobSetup, chosen: list[tuple[int, PartitionPlan]], limit: int) -> Measured:
    measured = Measured()
    with _counting(measured):
        for seq, plan in chosen:
            partition = Partition(job=setup.job, seq=seq, kind=plan.kind, lower=plan.lower, upper=plan.upper,
                                  modulus=plan.modulus, remainder=plan.remainder, key=plan.key, scope=plan.scope,
                                  estimated_items=plan.estimated_items)
            ctx = Context(job=setup.job, partition=partition, params=setup.params, worker_id=SAMPLE_WORKER)
            # Each item in its own savepoint: a failing item leaves the sample's transaction usable.
            code = JobCode(setup.job_type, ctx, item_savepoints=True)
            for batch in _batches(setup, partition, plan, limit):
                _run_batch(code, batch, measured)
    return measured


def _batches(setup: JobSetup, partition: Partition, plan: PartitionPlan, limit: int) -> Iterator[list]:
    """At most `limit` items of the partition, in batches of the type's batch size, as a worker reads them."""
    size = setup.job_type.batch_size
    if partition.kind == Partition.Kind.ITEMS or partition.scope.get("items"):  # as source_for tells them
        items = [SubJob(seq=i, key=s.key, payload=s.payload, ordering_key=s.ordering_key, attempts=0)
                 for i, s in enumerate(plan.items[:limit])]
        yield from (items[i:i + size] for i in range(0, len(items), size))
        return
    source, after, left = source_for(partition, setup), None, limit
    while left > 0 and (batch := source.fetch(after, min(size, left))):
        yield batch
        after, left = source.checkpoint_of(batch[-1]), left - len(batch)


def _run_batch(code: JobCode, items: list, measured: Measured) -> None:
    """One batch through the runner's own calling sequence (`JobCode`), in a savepoint; a failed or skipped item
    is counted, a batch-level failure or a Retry/CancelJob ends the sample."""
    started = time.perf_counter()
    try:
        with transaction.atomic():
            results = code.process(code.before_batch(items), commit=code.on_checkpoint)
    except JobControl as exc:
        raise SampleFailed(code.job_type.name, f"the job code asked to stop ({error_line(exc)})") from exc
    finally:
        measured.seconds += time.perf_counter() - started
    for item, result in zip(items, results, strict=True):
        if result.error is None:
            measured.done += 1
        elif isinstance(result.error, SkipItem):
            measured.skipped += 1
        else:
            measured.failed += 1
            measured.errors.append(f"{getattr(item, 'key', None) or item.pk}: {error_line(result.error)}")


@contextmanager
def _counting(measured: Measured) -> Iterator[None]:
    """Count the job's statements and the rows they read or wrote (savepoints aside) on this connection."""

    def count(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not sql.lstrip().upper().startswith(_BOOKKEEPING):
            measured.statements += 1
            measured.rows += max(0, context["cursor"].rowcount or 0)
        return result

    with connection.execute_wrapper(count):
        yield
