"""System checks: settings the engine relies on."""

from django.conf import settings
from django.core import checks
from django.utils.translation import ngettext

from partitions import conf
from partitions.core.limits import ECHO, clip
from partitions.jobtypes import registry
from partitions.notify.config import webhook_url_error

#: "Comfortably above": the timeout must leave this share of the drain's longest run spare, and at least
#: TIMEOUT_SPARE_MIN_SECONDS (a checkpoint, a slow commit, the task's own start and return).
TIMEOUT_SPARE_SHARE, TIMEOUT_SPARE_MIN_SECONDS = 0.2, 5.0


def longest_item_seconds() -> tuple[float, str]:
    """The longest item any registered job type allows (seconds) and whose it is."""
    default = float(conf.get("MAX_ITEM_SECONDS"))
    longest = (default, "PARTITIONS_MAX_ITEM_SECONDS")
    for name, job_type in registry.all_types().items():
        if job_type.max_item_seconds is not None and job_type.max_item_seconds > longest[0]:
            longest = (float(job_type.max_item_seconds), f"{name}.max_item_seconds")
    return longest


@checks.register(checks.Tags.compatibility)
def check_drain_budget_fits_task_timeout(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A drain task must return before django-q2 kills it, and be re-delivered only after that. A drain starts
    no work past its budget, but the item it started last may run the longest item's time past it."""
    errors: list[checks.CheckMessage] = []
    q = getattr(settings, "Q_CLUSTER", {})
    timeout, retry = q.get("timeout"), q.get("retry", 60)
    budget = conf.get("DRAIN_BUDGET_SECONDS")
    item, whose = longest_item_seconds()
    longest_run = budget + max(item, conf.get("LEASE_SECONDS") / 2)
    needed = longest_run + max(TIMEOUT_SPARE_MIN_SECONDS, TIMEOUT_SPARE_SHARE * longest_run)
    if timeout is not None and timeout < needed:
        errors.append(checks.Error(
            f"Q_CLUSTER timeout ({timeout}) is not comfortably above PARTITIONS_DRAIN_BUDGET_SECONDS ({budget}) "
            f"plus the longest item ({item:g} s, {whose}) or half a lease: it needs at least {needed:.0f} s.",
            hint="Raise Q_CLUSTER['timeout'] (and retry with it), lower the drain budget, or lower the longest "
                 "item a job type allows.", id="partitions.E001",
        ))
    if timeout is not None and retry <= timeout:
        errors.append(checks.Error(
            f"Q_CLUSTER retry ({retry}) must exceed timeout ({timeout}), or tasks run twice at once.",
            hint="See the comment on Q_CLUSTER in settings.", id="partitions.E002",
        ))
    return errors


@checks.register(checks.Tags.security)
def check_webhook_urls(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Every webhook is sent to over https (http only when allowed); a `file://` or other scheme never is."""
    hooks = (conf.get("NOTIFY") or {}).get("webhooks") or {}
    errors = []
    for name, spec in hooks.items():
        url = str((spec or {}).get("url", "")) if isinstance(spec, dict) else ""
        if problem := webhook_url_error(url):
            errors.append(checks.Error(
                f"PARTITIONS_NOTIFY webhook {name!r} {problem} ({clip(url, ECHO)!r}).",
                hint="Webhook deliveries carry a signature and job details: send them over https only.",
                id="partitions.E003",
            ))
    return errors


@checks.register(checks.Tags.database)
def check_dead_backend_detection_behind_a_pooler(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Behind a transaction-mode pooler a server backend is not one worker's: its exit says nothing."""
    pooled = [alias for alias, db in settings.DATABASES.items() if db.get("DISABLE_SERVER_SIDE_CURSORS")]
    if pooled and conf.get("DETECT_DEAD_BACKENDS"):
        return [checks.Warning(
            ngettext("Database {names} looks pooled", "Databases {names} look pooled", len(pooled))
            .format(names=", ".join(pooled))
            + " (DISABLE_SERVER_SIDE_CURSORS) but PARTITIONS_DETECT_DEAD_BACKENDS is on.",
            hint="Behind PgBouncer in transaction mode set PARTITIONS_DETECT_DEAD_BACKENDS=false (DATABASE_POOLING="
                 "transaction does): a pooled backend outlives its worker, and the standby's session lock leaks.",
            id="partitions.W001",
        )]
    return []
