"""Structured log context: `job`, `partition`, `lease_token` and `worker` on every log record.

Entry points and the drain loop say what they are working on with `log_context(...)`; the `EngineContext`
filter (on the handler, see LOGGING in the settings) copies the current context onto every record passing
through, so a JSON formatter emits the four fields on every line, null where they do not apply. The context
lives in a ContextVar: item threads get a copy of their partition's (see worker.concurrency), and a record
that names the fields itself (`extra=`) keeps its own values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

FIELDS = ("job", "partition", "lease_token", "worker")

_context: ContextVar[dict[str, Any]] = ContextVar("partitions_log_context", default={})  # noqa: B039 - never mutated


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Records logged inside carry these fields (over the enclosing context's)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def partition_fields(partition: Any) -> dict[str, Any]:
    """The log fields naming one claimed partition: its job, id and lease token."""
    return {"job": partition.job_id, "partition": partition.pk, "lease_token": partition.lease_token}


class EngineContext(logging.Filter):
    """Adds the current log context's fields to each record (None where unset)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _context.get()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, current.get(name))
        return True
