"""The registry's predicates as ORM filters, so the console and the workers count with the same SQL."""

from __future__ import annotations

from django.db.models import F, Q
from django.db.models.expressions import CombinedExpression, RawSQL

from partitions.core.states import HANDLED_COUNTERS, JobStatus, PartitionStatus
from partitions.engine.sql import queries


def handled_items() -> CombinedExpression:
    """ORM: a partition's items handled so far (done + failed + skipped), the registry's `{handled(p)}`."""
    first, *rest = (F(column) for column in HANDLED_COUNTERS)
    return sum(rest, first)


def live_lease_q() -> Q:
    """ORM: partitions held by a live lease, by the same SQL as claiming (so the console never disagrees)."""
    return Q(status=PartitionStatus.RUNNING) & Q(pk__in=RawSQL(queries["partitions_live_lease"], []))


def lapsed_lease_q() -> Q:
    """ORM: running partitions whose lease lapsed (expired, or its holder's backend is gone)."""
    return Q(status=PartitionStatus.RUNNING) & ~live_lease_q()


def step_lapsed_q() -> Q:
    """ORM: planning or finalizing jobs whose step lease lapsed (the claim's own stale-step rule)."""
    return Q(status__in=[JobStatus.PLANNING, JobStatus.FINALIZING]) & Q(pk__in=RawSQL(queries["jobs_step_lapsed"], []))
