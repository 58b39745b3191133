"""Rows in any state, made as the engine makes them: a job by `services.job_start`, a partition or sub-job
created pending, then each walked to the status asked for along its transition table by
`lifecycle.transition` (status, timestamps and one `factory_moved` event per step), so no test writes a
status by hand. Columns that are not a status (counters, checkpoints, stamps a test needs) go in with the
last step. A test counting a row's events counts from after the factory.
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta
from typing import Any

from django.db.models import F, Model
from django.utils import timezone

import tests.jobtypes  # noqa: F401 - registers the test job types
from partitions.engine.lifecycle import TABLES, transition
from partitions.jobtypes import registry
from partitions.models import Job, Partition, SubJob
from partitions.operations import services
from tests.support import dispatcher_off

ACTOR = "factory"
#: What `services.job_start` takes as run options; any other field is set with the last step.
START_OPTIONS = ("max_parallel", "priority", "deadline", "dedupe_key", "rate_limit", "pause_ms", "notify")
#: Params of the smallest run of the test job types, for a job whose params the test does not care about.
SMALLEST_PARAMS = {"partitions": 1, "count": 1, "chunk_size": 1}


def path(model: type[Model], start: str, target: str) -> list[str]:
    """The statuses of the shortest walk from `start` to `target` in the model's transition table."""
    table, came_from = TABLES[model], {start: None}
    queue = deque([start])
    while queue:
        status = queue.popleft()
        if status == target:
            walk = []
            while status != start:
                walk.append(status)
                status = came_from[status]
            return walk[::-1]
        for following in sorted(table[status]):
            if following not in came_from:
                came_from[following] = status
                queue.append(following)
    raise ValueError(f"{model.__name__}: no way from {start} to {target}")


def move(row: Model, target: str, **fields: Any) -> Model:
    """`row` (a job, partition or sub-job) walked from its status to `target`, `fields` set with the last step;
    the row as stored."""
    model = type(row)
    row.refresh_from_db(fields=["status"])
    steps = path(model, row.status, target)
    for i, status in enumerate(steps):
        updates = _entering(model, status) | (fields if i == len(steps) - 1 else {})
        row = transition(model, row.pk, status, actor=ACTOR, event_type="factory_moved", data={"to": status},
                         updates=updates)
    if not steps and fields:
        model.objects.filter(pk=row.pk).update(**fields)
        row.refresh_from_db()
    return row


def _entering(model: type[Model], status: str) -> dict[str, Any]:
    """What a partition takes with a claim: a lease held by `someone` for a minute, one attempt more."""
    if model is Partition and status == "running":
        return {"lease_owner": "someone", "lease_token": F("lease_token") + 1, "attempts": F("attempts") + 1,
                "lease_expires_at": timezone.now() + timedelta(seconds=60)}
    return {}


def make_job(*, status: str = "running", type_name: str = "tests.bump_range", params: dict | None = None,
             **fields: Any) -> Job:
    """A job in `status`, started by the service; a type this process does not know (one removed since,
    or a name a test makes up) is created pending as the service would, with its params as given."""
    options = {name: fields.pop(name) for name in START_OPTIONS if name in fields}
    if type_name in registry.all_types():
        if params is None:
            params = {k: v for k, v in SMALLEST_PARAMS.items() if k in registry.get(type_name).Params.base_fields}
        with dispatcher_off():  # a job placed in a state is not also planned by a worker
            job, _ = services.job_start(type_name, params, actor=ACTOR, allow_past_deadline=True, **options)
    else:
        job = Job.objects.create(type_name=type_name, params=params or {}, **options)
    return move(job, status, **fields)


#: The key of a range partition made without bounds, and the moment its tiles are cut at (any fixed past one).
DEFAULT_KEY = ["created_at", "id"]
TILE_AT = "2000-01-01T00:00:00+00:00"


def make_partition(job: Job, *, seq: int = 0, status: str = "pending", **fields: Any) -> Partition:
    """A partition of `job` in `status` (running: leased to `someone` for a minute). Range partitions made
    without bounds tile the whole key between them, in seq order (each call cuts the tiles again), as a plan's
    would: the completion proof of a job made here holds when they all succeed."""
    kind = fields.pop("kind", "range")
    key = fields.pop("key", DEFAULT_KEY)
    tiled = kind == "range" and key == DEFAULT_KEY and "lower" not in fields and "upper" not in fields
    created = Partition.objects.create(job=job, seq=seq, kind=kind, key=key)
    if tiled:  # the ones still there: a flushed database may give a later job the same id
        made = [*Partition.objects.filter(pk__in=_TILES.get(job.pk, []), job=job).values_list("pk", flat=True)]
        _TILES[job.pk] = [*sorted(made), created.pk]
        _tile(_TILES[job.pk])
        created.refresh_from_db()
    return move(created, status, **fields)


#: Per job, the range partitions `make_partition` tiles (this process's; the database is flushed per test).
_TILES: dict[int, list[int]] = {}


def _tile(partition_ids: list[int]) -> None:
    last = len(partition_ids) - 1
    for index, pk in enumerate(partition_ids):
        Partition.objects.filter(pk=pk).update(lower=None if index == 0 else [TILE_AT, index],
                                               upper=None if index == last else [TILE_AT, index + 1])


def make_subjob(partition: Partition, *, seq: int = 0, key: str | None = None, status: str = "pending",
                **fields: Any) -> SubJob:
    """A sub-job (item) of `partition` in `status`."""
    created = SubJob.objects.create(job_id=partition.job_id, partition=partition, seq=seq,
                                    key=f"item-{seq}" if key is None else key,
                                    ordering_key=fields.pop("ordering_key", ""), payload=fields.pop("payload", {}))
    return move(created, status, **fields)
