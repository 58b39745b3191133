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
