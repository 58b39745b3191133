"""`PARTITIONS_*` settings with their defaults."""

from django.conf import settings

DEFAULTS = {
    # Seconds a claimed partition (or a plan/finalize step) stays leased without renewal.
    "LEASE_SECONDS": 60.0,
    # Seconds one drain task works before it returns (must stay below Q_CLUSTER timeout).
    "DRAIN_BUDGET_SECONDS": 30.0,
    # The longest one item (or one batch of a type that processes batches whole) may take, unless its job type
    # says otherwise (JobType.max_item_seconds): a drain may outlast its budget by that much, so the system
    # check wants Q_CLUSTER timeout comfortably above the budget plus the longest item of any type.
    "MAX_ITEM_SECONDS": 10.0,
    # Share of failed partitions (after at least MIN_PARTITIONS_FOR_BREAKER) that fails the job early.
    "FAILURE_RATIO": 0.5,
    "MIN_PARTITIONS_FOR_BREAKER": 4,
    # A lease whose claiming backend has left pg_stat_activity (its process died) counts as lapsed at once.
    # Turn off behind a transaction-mode pooler (PgBouncer): there a backend outlives or leaves its client.
    "DETECT_DEAD_BACKENDS": True,
    # Drain tasks kept waiting in the broker while partitions could start, so any idle worker finds one.
    "SPARE_DRAINS": 4,
    # Partitions one claim takes at most; a drain takes fewer, what it expects to finish within a quarter
    # second (fast partitions: many per round trip; slow ones: one at a time).
    "CLAIM_BATCH": 50,
    # Health checks between batches (partitions.engine.health): seconds a process reuses a verdict, and the
    # thresholds of the built-in checks (None or 0 turns one off).
    "HEALTH_CHECK_SECONDS": 5.0,
    "MAX_REPLICATION_LAG_SECONDS": 60.0,
    "MAX_TRANSACTION_AGE_SECONDS": 300.0,
    # Idle workers split the running partition with the most work left (partitions.worker.splitting), when
    # it has at least SPLIT_MIN_BATCHES batches left; and a partition that failed by timeout is halved.
    "SPLIT_RUNNING": True,
    "SPLIT_MIN_BATCHES": 4,
    # The class that turns engine notifications into tasks (partitions.engine.dispatch), as a dotted path; "django_q" is
    # the django-q2 one's alias; None: nothing is enqueued (drive workers yourself).
    "DISPATCHER": "partitions.tasks.QDispatcher",
    # How a cluster's pusher learns of new tasks and schedule changes (partitions.engine.wakeups): "listen" (one LISTEN
    # connection per cluster, woken by NOTIFY; looks at the queue every WAKEUP_SAFETY_SECONDS anyway, so a lost
    # NOTIFY only delays work) or "poll" (every Q_CLUSTER `poll` seconds: behind a transaction pooler).
    "WAKEUPS": "listen",
    "WAKEUP_SAFETY_SECONDS": 15.0,
    # A libpq URL for the LISTEN connection alone, straight to PostgreSQL when the database goes through a
    # transaction pooler (NOTIFY is sent through the pooler: that works); empty: the database's own settings.
    "WAKEUP_LISTEN_URL": "",
    # Seconds between two writes of a cluster's django-q2 stats to the cache (the admin's and qinfo's cluster
    # list); a status change (starting, stopping) is written at once. django-q2 itself writes every 0.5 s.
    "CLUSTER_STATS_SECONDS": 10.0,
    # Seconds between two throughput samples of a running job (taken by its workers; tick is the fallback).
    "SAMPLE_SECONDS": 2.0,
    # Notifications (see partitions.notify.config): channels and events; first retry after NOTIFY_BACKOFF s,
    # doubling; a delivery is given up after NOTIFY_MAX_ATTEMPTS.
    "NOTIFY": {},
    "NOTIFY_BACKOFF": 5.0,
    "NOTIFY_MAX_ATTEMPTS": 10,
    # Days after which a finished job's history (partition events, samples, sub-jobs) is deleted by tick;
    # None (or 0) keeps it forever. The job row, its partitions, its job-level events and final stats stay.
    "RETENTION_DAYS": 30,
    # Rows one retention DELETE removes at most, and DELETEs one tick runs at most (the rest waits a minute).
    "PRUNE_BATCH": 5000,
    "PRUNE_BATCHES_PER_TICK": 20,
    # The youngest history `jobs prune` deletes without --force (and history_prune without force=True).
    "PRUNE_FLOOR_SECONDS": 86_400,
    # Schedules (partitions.operations.schedules): a fire later than MISFIRE_GRACE_SECONDS (an outage, every cluster
    # stopped) is a missed fire; missed fires are never replayed one by one: with CATCH_UP one run makes up
    # for all of them, without it they are only recorded and the schedule waits for its next fire.
    "SCHEDULE_CATCH_UP": True,
    "SCHEDULE_MISFIRE_GRACE_SECONDS": 300.0,
    # Deadline alerts (partitions.operations.deadline_alerts): seconds a running job must be projected late, without a
    # break, before its one `deadline_at_risk` notification, and projected on time with a margin before its
    # `deadline_recovered` one. 0 (or None) turns the alerts off.
    "DEADLINE_GRACE_SECONDS": 60.0,
    # Dotted modules imported at startup to register job types (apps' `jobs` modules are found anyway).
    "JOB_MODULES": [],
}


#: Settings where 0 means "off" (a check not made, history kept forever), as None does: so a value from the
#: environment, where None cannot be written, turns them off the same way in every project.
OFF_WHEN_ZERO = frozenset({"MAX_REPLICATION_LAG_SECONDS", "MAX_TRANSACTION_AGE_SECONDS", "RETENTION_DAYS",
                           "DEADLINE_GRACE_SECONDS"})


def get(name: str):
    """The setting PARTITIONS_<name>, or its default (None for 0 where 0 turns it off)."""
    value = getattr(settings, f"PARTITIONS_{name}", DEFAULTS[name])
    if name in OFF_WHEN_ZERO and value == 0 and not isinstance(value, bool):
        return None
    return value
