"""System checks: settings the engine relies on."""

from django.conf import settings
from django.core import checks

from partitions import conf


@checks.register(checks.Tags.compatibility)
def check_drain_budget_fits_task_timeout(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A drain task must return before django-q2 kills it, and be re-delivered only after that."""
    errors: list[checks.CheckMessage] = []
    q = getattr(settings, "Q_CLUSTER", {})
    timeout, retry = q.get("timeout"), q.get("retry", 60)
    budget = conf.get("DRAIN_BUDGET_SECONDS")
    if timeout is not None and budget + conf.get("LEASE_SECONDS") / 2 >= timeout:
        errors.append(checks.Error(
            f"PARTITIONS_DRAIN_BUDGET_SECONDS ({budget}) plus half a lease does not fit in "
            f"Q_CLUSTER timeout ({timeout}).",
            hint="Raise Q_CLUSTER['timeout'] or lower the drain budget.", id="partitions.E001",
        ))
    if timeout is not None and retry <= timeout:
        errors.append(checks.Error(
            f"Q_CLUSTER retry ({retry}) must exceed timeout ({timeout}), or tasks run twice at once.",
            hint="See the comment on Q_CLUSTER in settings.", id="partitions.E002",
        ))
    return errors


@checks.register(checks.Tags.database)
def check_dead_backend_detection_behind_a_pooler(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Behind a transaction-mode pooler a server backend is not one worker's: its exit says nothing."""
    pooled = [alias for alias, db in settings.DATABASES.items() if db.get("DISABLE_SERVER_SIDE_CURSORS")]
    if pooled and conf.get("DETECT_DEAD_BACKENDS"):
        return [checks.Warning(
            f"Database(s) {', '.join(pooled)} look pooled (DISABLE_SERVER_SIDE_CURSORS) but "
            "PARTITIONS_DETECT_DEAD_BACKENDS is on.",
            hint="Behind PgBouncer in transaction mode set PARTITIONS_DETECT_DEAD_BACKENDS=false (DATABASE_POOLING="
                 "transaction does): a pooled backend outlives its worker, and the standby's session lock leaks.",
            id="partitions.W001",
        )]
    return []
