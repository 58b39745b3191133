"""For the tracing tests' qclusters: an OpenTelemetry SDK whose spans go to a JSON-lines file, configured on
import when PARTITIONS_TEST_SPANS_FILE names one (the cluster imports this through PARTITIONS_JOB_MODULES).

One line per ended span, appended by whichever worker process ended it (each export opens the file anew, so
forked workers do not share a file offset)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

ENV = "PARTITIONS_TEST_SPANS_FILE"


def span_row(span: ReadableSpan) -> dict:
    return {"name": span.name, "trace_id": f"{span.context.trace_id:032x}", "span_id": f"{span.context.span_id:016x}",
            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
            "attributes": dict(span.attributes or {}), "events": [e.name for e in span.events], "pid": os.getpid()}


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str):
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            out.writelines(json.dumps(span_row(span)) + "\n" for span in spans)
        return SpanExportResult.SUCCESS


if os.environ.get(ENV):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ[ENV])))
    trace.set_tracer_provider(provider)
