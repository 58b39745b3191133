"""OpenTelemetry traces: with the SDK (an in-memory exporter), one trace from the operator's request through
plan, each partition's drain (claimed, checkpoints, completed), finalize and the notification deliveries; in a
real qcluster, the workers' spans (a JSON-lines exporter) under the request's trace; and with the import
blocked, the no-op path that still runs a whole job and makes no query."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from partitions.engine import tracing
from partitions.models import JobEvent
from partitions.operations import services
from tests.support import planned_job, run_to_end

pytestmark = pytest.mark.django_db(transaction=True)

REQUEST = "POST /admin/partitions/job/start/"
WORKER_SPANS = {"partitions.job.plan", "partitions.partition.drain", "partitions.job.finalize"}


@pytest.fixture
def exporter():
    """An SDK TracerProvider exporting to memory, set as the global one for this test only."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.util._once import Once

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    yield memory
    provider.shutdown()
    # What OpenTelemetry's own test utilities do: the next test (and the rest of the suite) sees no provider.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


def request_span():
    from opentelemetry import trace

    return trace.get_tracer("tests").start_as_current_span(REQUEST)


def test_one_trace_runs_from_the_request_through_plan_drains_finalize_and_deliveries(exporter, settings,
                                                                                      no_dispatcher):
    from tests.test_notifications import SECRET, Receiver, deliver_all

    hook = Receiver()
    hook.initial_failures = 0
    try:
        settings.PARTITIONS_NOTIFY = {"allow_http": True, "webhooks": {"ops": {"url": hook.url, "secret": SECRET}},
                                      "events": ["job_succeeded"]}
        with request_span() as request:
            job = planned_job("tests.items_serial", {"count": 12, "chunk_size": 5})
        job = run_to_end(job)
        deliver_all()
    finally:
        hook.close()
    assert job.status == "succeeded" and len(hook.requests) == 1

    spans = exporter.get_finished_spans()
    by_name: dict[str, list] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    trace_id = request.get_span_context().trace_id
    assert {span.context.trace_id for span in spans if span.name.startswith("partitions.")} == {trace_id}
    [start] = by_name["partitions.job.start"]
    assert start.parent.span_id == request.get_span_context().span_id and start.attributes["job.id"] == job.pk
    [plan] = by_name["partitions.job.plan"]
    [finalize] = by_name["partitions.job.finalize"]
    assert plan.parent.span_id == finalize.parent.span_id == start.context.span_id
    assert (plan.attributes["partitions"], finalize.attributes["job.status"]) == (3, "succeeded")

    drains = sorted(by_name["partitions.partition.drain"], key=lambda s: s.attributes["partition.seq"])
    assert [(s.attributes["job.id"], s.attributes["partition.attempt"], s.attributes["partition.outcome"])
            for s in drains] == [(job.pk, 1, "succeeded")] * 3
    assert [s.attributes["items.done"] for s in drains] == [5, 5, 2]
    assert all(s.parent.span_id == start.context.span_id for s in drains)
    events = [[e.name for e in s.events] for s in drains]
    assert all(names[0] == "claimed" and "checkpoint" in names for names in events), events
    [deliver] = by_name["partitions.notify.deliver"]
    assert deliver.parent.span_id == start.context.span_id
    assert (deliver.attributes["delivery.kind"], deliver.attributes["delivery.channel"]) == ("job_succeeded",
                                                                                            "webhook:ops")


def test_the_start_stores_the_requests_trace_context_in_the_job_created_event(exporter, no_dispatcher):
    with request_span() as request:
        job, _ = services.job_start("tests.items_serial", {"count": 1, "chunk_size": 1}, actor="test")
    trace = JobEvent.objects.get(job=job, type="job_created").data["trace"]
    version, trace_id, span_id, flags = trace["traceparent"].split("-")
    assert (version, int(trace_id, 16)) == ("00", request.get_span_context().trace_id)
    assert int(flags, 16) & 1  # sampled
    assert tracing.job_parent(job.pk) == trace
    [start] = [s for s in exporter.get_finished_spans() if s.name == "partitions.job.start"]
    assert int(span_id, 16) == start.context.span_id


def test_without_a_configured_provider_workers_look_up_no_parent(django_assert_num_queries, no_dispatcher):
    pytest.importorskip("opentelemetry")
    job, _ = services.job_start("tests.items_serial", {"count": 1, "chunk_size": 1}, actor="test")
    assert "trace" not in JobEvent.objects.get(job=job, type="job_created").data
    with django_assert_num_queries(0):
        assert tracing.job_parent(job.pk) is None
    # Nor does any call make a span object: an installed but unused API costs the claim path nothing.
    assert not tracing.active()
    assert tracing.span("x", {"a": 1}) is tracing._NOTHING and tracing.start("x") is None


@pytest.fixture
def otel_blocked(monkeypatch):
    """`partitions.engine.tracing` as it loads when opentelemetry is not installed (the import blocked)."""
    for name in [n for n in sys.modules if n == "opentelemetry" or n.startswith("opentelemetry.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry…` raises ImportError
    importlib.reload(tracing)
    yield tracing
    monkeypatch.undo()
    importlib.reload(tracing)


def test_with_the_import_blocked_tracing_is_a_no_op_and_a_job_still_runs(otel_blocked, no_dispatcher,
                                                                        django_assert_num_queries):
    assert otel_blocked.ENABLED is False and otel_blocked.trace is None
    assert otel_blocked.span("x", {"a": 1}) is otel_blocked.span("y") is otel_blocked._NOTHING
    assert otel_blocked.start("x") is None and otel_blocked.carrier() == {}
    with django_assert_num_queries(0):
        assert otel_blocked.job_parent(1) is None
        otel_blocked.end(None, {"a": 1})
        otel_blocked.annotate({"a": 1})
        otel_blocked.event("checkpoint")
    job = run_to_end(planned_job("tests.items_serial", {"count": 7, "chunk_size": 3}))
    assert job.status == "succeeded"
    assert "trace" not in JobEvent.objects.get(job=job, type="job_created").data


@pytest.mark.slow
def test_a_real_clusters_spans_join_the_requests_trace(exporter, clusters, tmp_path):
    from tests.support import CLUSTER_ENV, finished, started_job

    pytest.importorskip("opentelemetry.sdk")
    path = tmp_path / "spans.jsonl"
    [cluster] = clusters(1, PARTITIONS_JOB_MODULES=CLUSTER_ENV["PARTITIONS_JOB_MODULES"] + ",tests.otel_export",
                         PARTITIONS_TEST_SPANS_FILE=str(path))
    with request_span() as request:
        job = started_job("tests.items_serial", {"count": 30, "chunk_size": 10})
    job = finished(job, [cluster])
    assert job.status == "succeeded"
    trace_id = f"{request.get_span_context().trace_id:032x}"
    [start] = [s for s in exporter.get_finished_spans() if s.name == "partitions.job.start"]
    start_id = f"{start.context.span_id:016x}"

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    mine = [r for r in rows if r["attributes"].get("job.id") == job.pk and r["name"] in WORKER_SPANS]
    assert {r["name"] for r in mine} == WORKER_SPANS
    assert {(r["trace_id"], r["parent_id"]) for r in mine} == {(trace_id, start_id)}
    drains = [r for r in mine if r["name"] == "partitions.partition.drain"]
    assert sorted(r["attributes"]["partition.seq"] for r in drains) == [0, 1, 2]
    assert sum(r["attributes"]["items.done"] for r in drains) == 30
    assert all(r["events"][0] == "claimed" and "checkpoint" in r["events"] for r in drains)
    assert all(r["pid"] != cluster.proc.pid for r in drains)  # exported by the cluster's worker processes
