"""Health checks workers run between batches: is the database (and whatever a job type watches) fit for
more work? Each process caches a verdict for `HEALTH_CHECK_SECONDS`, so checking costs one query per
process per interval, however many batches run.

Built in, each with a threshold in settings (None turns it off):
- `MAX_REPLICATION_LAG_SECONDS`: the replay lag of any standby (`pg_stat_replication`);
- `MAX_TRANSACTION_AGE_SECONDS`: the oldest transaction in this database that holds back vacuum (it has a
  snapshot or a transaction id): while it is open, every row version written is bloat vacuum cannot remove.
A job type may add its own: `JobType.healthy(job) -> HealthVerdict | None`.

Another role's sessions are only visible to a member of `pg_monitor` (or `pg_read_all_stats`): grant it to
the application's role, or the checks see only its own sessions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from partitions import conf
from partitions.engine.sql import queries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthVerdict:
    """A check's answer: fit for more work, or why not (the reason operators see)."""

    ok: bool
    reason: str = ""

    @classmethod
    def healthy(cls) -> HealthVerdict:
        return cls(True)

    @classmethod
    def unhealthy(cls, reason: str) -> HealthVerdict:
        return cls(False, reason)


@dataclass
class _Cached:
    verdict: HealthVerdict
    checked_at: datetime
    expires: float


_cache: dict[Any, _Cached] = {}


def database_verdict() -> tuple[HealthVerdict, datetime]:
    """The built-in checks' verdict and the database time it was taken (cached per process)."""
    cached = _cache.get("database")
    if cached is None or cached.expires <= time.monotonic():
        with connection.cursor() as cursor:
            cursor.execute(queries["database_health"])
            checked_at, lag, oldest = cursor.fetchone()
        cached = _remember("database", _database_verdict(lag, oldest), checked_at)
    return cached.verdict, cached.checked_at


def _database_verdict(lag: float | None, oldest: float | None) -> HealthVerdict:
    max_lag = conf.get("MAX_REPLICATION_LAG_SECONDS")
    if max_lag is not None and lag is not None and lag > max_lag:
        return HealthVerdict.unhealthy(f"replication lag {lag:.0f}s > {max_lag:g}s")
    max_age = conf.get("MAX_TRANSACTION_AGE_SECONDS")
    if max_age is not None and oldest is not None and oldest > max_age:
        return HealthVerdict.unhealthy(f"a transaction has been open {oldest:.0f}s > {max_age:g}s")
    return HealthVerdict.healthy()


def job_verdict(job, job_type) -> tuple[HealthVerdict, datetime]:
    """The built-in checks, then the job type's own (cached per job and process); the first failure wins."""
    verdict, checked_at = database_verdict()
    if not verdict.ok:
        return verdict, checked_at
    key = ("job", job.pk)
    cached = _cache.get(key)
    if cached is None or cached.expires <= time.monotonic():
        try:
            own = job_type.healthy(job) or HealthVerdict.healthy()
        except Exception as exc:  # a broken check throttles (the safe side) and says why
            log.warning("health check of %s failed", job_type.name, exc_info=True)
            own = HealthVerdict.unhealthy(f"health check raised {type(exc).__name__}: {exc}")
        cached = _remember(key, own, checked_at)
    return cached.verdict, cached.checked_at


def _remember(key: Any, verdict: HealthVerdict, checked_at: datetime) -> _Cached:
    cached = _Cached(verdict, checked_at, time.monotonic() + conf.get("HEALTH_CHECK_SECONDS"))
    _cache[key] = cached
    return cached


def forget() -> None:
    """Drop cached verdicts (tests, and a process that must look again now)."""
    _cache.clear()
