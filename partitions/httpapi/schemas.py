"""The API's request and response bodies (pydantic, through ninja): what the OpenAPI schema publishes and what
every response is validated against. The figures are the engine's own (`cli_output.job_summary`,
`statistics.job_run_statistics`, `ledger`), not computed here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema
from pydantic import ConfigDict

from partitions.core import validation
from partitions.reads.ledger import FailedItem
from partitions.worker.sample_run import SAMPLE_ITEMS_MAX, SAMPLE_PARTITIONS_MAX

#: Rows of one keyset page at most (and by default).
PAGE_MAX = 200
PAGE_DEFAULT = 50


def keyset_page(rows: list, limit: int, key: Callable[[Any], Any]) -> dict[str, Any]:
    """A page from `limit + 1` rows read: the first `limit`, and `next_after`, the last one's key (None: no more)."""
    page = rows[:limit]
    return {"items": page, "next_after": key(page[-1]) if len(rows) > limit else None}


def throttle_of(payload: Schema) -> dict[str, Any]:
    """`rate_limit` / `pause_ms` as the services take them: a field the request left out is UNSET (the job
    type's default, or the setting as it is), `null` a value (no rate limit)."""
    return {name: getattr(payload, name) if name in payload.model_fields_set else validation.UNSET
            for name in ("rate_limit", "pause_ms")}


class JobTypeOut(Schema):
    name: str
    label: str
    description: str
    params_schema: dict[str, Any] = Field(description="JSON Schema of the job type's params (its Params form).")
    sample_refused: str | None = Field(description="Why the type cannot be sampled (null: it can).")


class JobOut(Schema):
    """A job's state and live figures: `jobs status --json`'s summary."""

    id: int
    type: str
    status: str
    params: dict[str, Any]
    error: str
    created_at: datetime
    finished_at: datetime | None
    max_parallel: int
    partitions: dict[str, int]
    partitions_total: int
    items_total: int
    items_done: int
    items_failed: int
    items_skipped: int
    live_leases: int
    percent: float
    items_per_second: float
    rate_source: str
    effective_items_per_second: float | None
    limited_by: str | None
    held: str | None
    eta_seconds: float | None
    eta: datetime | None
    deadline: datetime | None
    meets_deadline: bool | None
    verdict: str | None
    workers_needed: int | None
    rate_needed: float | None
    per_worker_rate: float | None
    fleet_workers: int | None
    throttle: dict[str, Any]
    splits: int


class JobDetailOut(JobOut):
    """One job: its summary, `created` on a start (false: an earlier request with the same Idempotency-Key
    started it), and its run statistics (`jobs status --json`'s)."""

    created: bool | None = None
    statistics: dict[str, Any] | None = None


class JobPage(Schema):
    items: list[JobOut]
    next_after: int | None = Field(description="Pass as `after` for the next page; null on the last.")


class PlanRow(Schema):
    seq: int
    kind: str
    lower: int | None
    upper: int | None
    modulus: int | None
    remainder: int | None
    estimated_items: int


class PreviewOut(Schema):
    """A dry run: the planned partitions and the estimate, and the sample's report when one was asked for.
    Nothing is written."""

    dry_run: Literal[True]
    partitions: list[PlanRow]
    estimate: dict[str, Any]
    sample: dict[str, Any] | None = None


class StartIn(Schema):
    """Start a job of `type` with its params (validated by its Params form, as the admin and the CLI do).
    `rate_limit` and `pause_ms` left out: the job type's; `rate_limit: null`: no limit."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"type": "billing.send_invoices", "params": {"period": "2026-11"}},
        {"type": "billing.send_invoices", "params": {"period": "2026-11", "fail_rate": 0.05}, "max_parallel": 4,
         "dry_run": True}]})

    type: str = Field(max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    max_parallel: int = 0
    priority: int = 0
    deadline: datetime | None = None
    rate_limit: float | None = None
    pause_ms: int | None = None
    notify: list[str] = Field(default_factory=list, description="email:ADDRESS, webhook:NAME or none")
    dry_run: bool = Field(False, description="Plan and estimate only: nothing is written.")
    sample: int | None = Field(None, ge=1, le=SAMPLE_PARTITIONS_MAX,
                               description="With dry_run: run the job's code on this many planned partitions, "
                                           "rolled back.")
    sample_items: int | None = Field(None, ge=1, le=SAMPLE_ITEMS_MAX)


class PartitionOut(Schema):
    id: int
    seq: int
    kind: str
    status: str
    bounds: str
    estimated_items: int
    done_items: int
    failed_items: int
    skipped_items: int
    batch_size: int | None
    split_from: int | None
    attempts: int
    lease_owner: str
    checkpointed_at: datetime | None
    last_error: str

    @staticmethod
    def resolve_bounds(partition) -> str:
        """The partition's bounds as the admin shows them."""
        return partition.bounds_display

    @staticmethod
    def resolve_split_from(partition) -> int | None:
        """The partition it was split from, if any."""
        return partition.split_from_id


class PartitionPage(Schema):
    items: list[PartitionOut]
    next_after: int | None = Field(description="The last partition's seq: pass as `after` for the next page.")


class EventOut(Schema):
    id: int
    at: datetime
    type: str
    actor: str
    partition: int | None
    subjob: int | None
    data: dict[str, Any]

    @staticmethod
    def resolve_at(event) -> datetime:
        """When the event was written (database clock)."""
        return event.created_at

    @staticmethod
    def resolve_partition(event) -> int | None:
        """The partition the event is about, if any."""
        return event.partition_id

    @staticmethod
    def resolve_subjob(event) -> int | None:
        """The sub-job the event is about, if any."""
        return event.subjob_id


class EventPage(Schema):
    items: list[EventOut]
    next_after: int | None = Field(description="The last event's id: pass as `after` for the next page.")


class FailureGroupOut(Schema):
    reason: str
    count: int
    failed: int
    skipped: int
    share: float
    error_class: str
    example_key: str
    example_error: str
    first_seen: datetime | None
    last_seen: datetime | None


class FailuresOut(Schema):
    """A job's failed and skipped items grouped by reason, the largest first (`more`: reasons not listed)."""

    job: int
    total: int
    reasons: int
    more: int
    groups: list[FailureGroupOut]


class FailedItemPage(Schema):
    items: list[FailedItem]  # the ledger's own row (a dataclass pydantic reads as it is): one declaration
    next_after: int | None = Field(description="The last item's id: pass as `after` for the next page.")


class CancelIn(Schema):
    reason: str = Field("", max_length=validation.REASON_MAX_LENGTH)


class RetryIn(Schema):
    """What to retry: the failed `partitions` (all, or `partition_ids`), the failed `subjobs` (all, or
    `subjob_ids`), or the failed and skipped items of one failure `reason`."""

    what: Literal["partitions", "subjobs"] = "partitions"
    partition_ids: list[int] | None = None
    subjob_ids: list[int] | None = None
    reason: str | None = None


class RetryOut(Schema):
    job: int
    what: Literal["partitions", "subjobs"]
    retried: int


class ThrottleIn(Schema):
    """Fields left out stay as they are; `rate_limit: null` removes the limit."""

    rate_limit: float | None = None
    pause_ms: int | None = None
    ignore_health: bool | None = None


class SetIn(Schema):
    """The knob: fields left out stay as they are; `deadline: null` clears it."""

    max_parallel: int | None = None
    deadline: datetime | None = None


class SkipIn(Schema):
    reason: str = Field(description="A failure reason exactly as /failures lists it.")
    note: str = Field(description="Why these items are skipped (kept on each item and in the events).")


class SkipOut(Schema):
    job: int
    reason: str
    skipped: int


class ScheduleOut(Schema):
    name: str
    type: str
    params: dict[str, Any]
    cadence: str
    kind: str
    cron: str
    every: int
    timezone: str
    enabled: bool
    paused_reason: str
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job: int | None
    last_job_status: str | None
    max_parallel: int
    priority: int
    deadline: str | None
    throttle: dict[str, Any]
    notify: list[str] | None


class SchedulePage(Schema):
    items: list[ScheduleOut]
    next_after: str | None = Field(description="The last schedule's name: pass as `after` for the next page.")


class ScheduleIn(Schema):
    """A schedule of `type`: exactly one of `cron`, `every` (5m, 2h, 1d) or `monthly`; `deadline`: each run's,
    after its fire (+90m, +2h)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "monthly-invoices", "type": "billing.send_invoices", "params": {"period": "2026-11"},
         "cron": "0 7 1 * *", "timezone": "Europe/Madrid", "deadline": "+2h"}]})

    name: str = Field(max_length=100)
    type: str = Field(max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = None
    every: str | None = None
    monthly: bool = False
    timezone: str = "UTC"
    start_at: datetime | None = None
    deadline: str | None = None
    max_parallel: int = 0
    priority: int = 0
    rate_limit: float | None = None
    pause_ms: int | None = None
    notify: list[str] = Field(default_factory=list)


class PauseIn(Schema):
    reason: str = Field("", max_length=validation.REASON_MAX_LENGTH)
