"""OpenTelemetry traces, when `opentelemetry-api` is installed; nothing at all when it is not.

Spans: `partitions.job.start` (the operator's request: admin, CLI, schedule), `partitions.job.plan`,
`partitions.partition.drain` (one run of one partition: claimed, each checkpoint as an event, completed),
`partitions.job.finalize` and `partitions.notify.deliver`. The start injects the W3C trace context into the
job's `job_created` event (`data["trace"]`, e.g. `{"traceparent": "00-…"}`); workers on any host read it back
as the parent of the job's spans, so one trace runs from the request to every worker.

Without the package, or with the API but no TracerProvider configured (its spans would record nothing), every
function here returns at once: `span` is one shared `nullcontext`, no span object is made and no query is run,
so an installed but unused API costs the claim path nothing (`bench claim`'s Python split). Configuring a
TracerProvider and an exporter is the project's business (docs/howto/traces.md); it is seen as soon as it is set.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from partitions.core.events import EventType

try:
    from opentelemetry import propagate, trace
except ImportError:  # the optional dependency is absent: every function below is a no-op
    propagate = trace = None

ENABLED = trace is not None
TRACER = "partitions"
_NOTHING = nullcontext()

Attributes = Mapping[str, Any]


def _clean(attributes: Attributes | None) -> dict[str, Any]:
    """OpenTelemetry takes str, bool, int and float values (no None)."""
    return {k: v if isinstance(v, str | bool | int | float) else str(v)
            for k, v in (attributes or {}).items() if v is not None}


def _context(parent: Mapping[str, str] | None):
    return propagate.extract(parent) if parent else None


def span(name: str, attributes: Attributes | None = None, *,
         parent: Mapping[str, str] | None = None) -> AbstractContextManager:
    """A span around a block, current inside it; `parent`: a W3C carrier (`job_parent`) instead of the
    current context."""
    if not active():
        return _NOTHING
    return trace.get_tracer(TRACER).start_as_current_span(name, context=_context(parent),
                                                          attributes=_clean(attributes))


def start(name: str, attributes: Attributes | None = None, *, parent: Mapping[str, str] | None = None):
    """A span begun now and ended by `end` (one that outlives a block: a partition's run and its batched
    completion); None without the package."""
    if not active():
        return None
    return trace.get_tracer(TRACER).start_span(name, context=_context(parent), attributes=_clean(attributes))


def use(begun) -> AbstractContextManager:
    """Make a span from `start` current inside a block (without ending it)."""
    if begun is None:
        return _NOTHING
    return trace.use_span(begun, end_on_exit=False)


def end(begun, attributes: Attributes | None = None) -> None:
    if begun is not None:
        begun.set_attributes(_clean(attributes))
        begun.end()


def annotate(attributes: Attributes) -> None:
    """Set attributes on the current span (what is known only at its end)."""
    if active():
        trace.get_current_span().set_attributes(_clean(attributes))


def event(name: str, attributes: Attributes | None = None) -> None:
    """An event on the current span (a checkpoint)."""
    if active():
        trace.get_current_span().add_event(name, _clean(attributes))


def carrier() -> dict[str, str]:
    """The current trace context as a W3C carrier (`traceparent`, maybe `tracestate`); {} without one."""
    if not active():
        return {}
    found: dict[str, str] = {}
    propagate.inject(found)
    return found


def job_parent(job_id: int) -> dict[str, str] | None:
    """The carrier its start stored in the job's `job_created` event; None, with no query, without the package
    or while no TracerProvider is configured (the API's spans record nothing then)."""
    return _job_parent(job_id) if active() else None


def active() -> bool:
    """The package is there and a TracerProvider is configured (the API's own default records nothing)."""
    return trace is not None and not isinstance(trace.get_tracer_provider(),
                                                trace.ProxyTracerProvider | trace.NoOpTracerProvider)


@functools.lru_cache(maxsize=4096)
def _job_parent(job_id: int) -> dict[str, str] | None:
    from partitions.models import JobEvent

    data = JobEvent.objects.filter(job_id=job_id, type=EventType.JOB_CREATED).values_list("data", flat=True).first()
    found = data.get("trace") if isinstance(data, dict) else None
    return dict(found) if isinstance(found, dict) else None
