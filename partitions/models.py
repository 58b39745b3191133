"""Engine tables: Job, Partition, SubJob, JobEvent, JobSample, Delivery, OutboxCursor, JobSchedule,
ScheduleEvent.

Who changes a status: a job's, a partition's and a sub-job's only `partitions.engine.lifecycle` and the fenced
statements of `partitions.engine.claiming` (guarded by the transition tables of `partitions.core.states`); a delivery's
only `partitions.notify.outbox`; a schedule's rows only `partitions.operations.schedules`.
All timestamps are written with the database clock (`now()` / `db_default`).
A foreign key that leads a composite index has `db_index=False`: the composite serves its lookups, and each
extra index is one more write per inserted or moved row (`tests/test_schema_keys.py`).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from partitions.core.encoding import EngineJSONEncoder
from partitions.core.events import COURSE_EVENTS, event_type_choices, schedule_event_type_choices
from partitions.core.states import (
    JOB_TERMINAL,
    PARTITION_TERMINAL,
    SUBJOB_LEDGER,
    DeliveryStatus,
    JobStatus,
    PartitionStatus,
    SubJobStatus,
)


def _json(**options) -> models.JSONField:
    """A JSONField with the engine's one encoding (see partitions.core.encoding)."""
    return models.JSONField(encoder=EngineJSONEncoder, **options)


def _finished_iff_terminal(statuses: frozenset[str], name: str) -> models.CheckConstraint:
    terminal = Q(status__in=sorted(statuses))
    return models.CheckConstraint(
        condition=(terminal & Q(finished_at__isnull=False)) | (~terminal & Q(finished_at__isnull=True)),
        name=name,
    )


class Job(models.Model):
    """One run of a registered job type. Progress is aggregated from its partitions."""

    type_name = models.CharField(max_length=200, db_index=True)
    params = _json(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    priority = models.SmallIntegerField(default=0, help_text="Higher runs first.")
    max_parallel = models.PositiveIntegerField(default=0, help_text="Partitions in flight at once; 0 = unlimited.")
    deadline = models.DateTimeField(null=True, blank=True)
    # Throttling (partitions.engine.throttling): operator knobs, read by running partitions at every checkpoint.
    rate_limit = models.FloatField(null=True, blank=True, help_text="Items per second across the fleet; empty = none.")
    pause_ms = models.PositiveIntegerField(default=0, db_default=0,
                                           help_text="Pause after each batch, in milliseconds.")
    ignore_health = models.BooleanField(default=False, db_default=False,
                                        help_text="Run even when a health check fails.")
    # The fleet-wide limiter's state: the theoretical arrival time of the next item (GCRA).
    rate_tat = models.DateTimeField(null=True, blank=True)
    # A health-check episode: set by the first worker that sees a check fail, cleared by the first that sees
    # it pass again (each verdict newer than the last change), one event each.
    throttled_since = models.DateTimeField(null=True, blank=True)
    throttled_reason = models.CharField(max_length=300, blank=True, db_default="")
    throttle_changed_at = models.DateTimeField(null=True, blank=True)
    # NULL, not "", means "no dedupe": the partial unique index ignores NULLs.
    dedupe_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    error = models.TextField(blank=True)
    stats = _json(default=dict, blank=True, help_text="Summary written by finalize.")
    # What the plan covers, written with it (partitions.reads.verification): finalize checks the committed partitions
    # cover exactly this before the job counts as succeeded. None: planned before the record existed.
    key_space = _json(null=True, blank=True, help_text="The planned key space (partitions.reads.verification).")
    notify = _json(null=True, blank=True, help_text="This run's notification channels (None: the defaults).")
    # Lease of the singleton steps (plan, finalize): claimed like partitions.
    step_owner = models.CharField(max_length=200, blank=True)
    step_token = models.BigIntegerField(default=0)
    step_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    planned_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When retention deleted this finished job's history (partition events, samples, sub-jobs); the row,
    # its partitions and its final stats stay.
    pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("start_job", "Can start jobs"),
            ("operate_job", "Can retry, cancel, pause and resume jobs"),
        ]
        indexes = [models.Index(fields=["status", "-priority", "id"], name="job_status_priority_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=Q(dedupe_key__isnull=False) & ~Q(status__in=sorted(JOB_TERMINAL)),
                name="job_unique_active_dedupe_key",
            ),
            _finished_iff_terminal(JOB_TERMINAL, "job_finished_at_iff_terminal"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.type_name} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in JOB_TERMINAL


class Partition(models.Model):
    """A non-overlapping slice of a job's work and the unit of claiming.

    Bounds by kind: `range` has half-open [lower, upper) key tuples (None = open
    end); `modulo` has (modulus, remainder); `items` and `retry` own SubJob rows.
    The checkpoint is the key of the last item fully processed. The table has a
    low fillfactor and no index on checkpoint/counter columns, so checkpoints are
    HOT updates.
    """

    class Kind(models.TextChoices):
        RANGE = "range"
        MODULO = "modulo"
        ITEMS = "items"
        RETRY = "retry"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, db_index=False, related_name="partitions")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    lower = _json(null=True, blank=True)
    upper = _json(null=True, blank=True)
    modulus = models.PositiveIntegerField(null=True, blank=True)
    remainder = models.PositiveIntegerField(null=True, blank=True)
    key = _json(null=True, blank=True, help_text="Ordered key fields of a range/modulo partition.")
    scope = _json(default=dict, blank=True, help_text="What the job type needs to rebuild its queryset.")
    status = models.CharField(max_length=16, choices=PartitionStatus.choices, default=PartitionStatus.PENDING)
    checkpoint = _json(null=True, blank=True)
    estimated_items = models.BigIntegerField(default=0)
    done_items = models.BigIntegerField(default=0)
    failed_items = models.BigIntegerField(default=0)
    skipped_items = models.BigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    available_at = models.DateTimeField(db_default=Now())
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_token = models.BigIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The claiming connection's backend: when it leaves pg_stat_activity the lease lapses at once.
    lease_backend_pid = models.IntegerField(null=True, blank=True)
    lease_backend_started = models.DateTimeField(null=True, blank=True)
    checkpointed_at = models.DateTimeField(null=True, blank=True)
    # Items in the last batch's fetch (adaptive job types change it; a new run resumes from it).
    batch_size = models.PositiveIntegerField(null=True, blank=True)
    # A running partition's remaining work can be split off to idle workers (partitions.worker.splitting): each split
    # bumps bounds_version, and the holder's checkpoint refuses to commit a batch read under older bounds.
    bounds_version = models.PositiveIntegerField(default=0, db_default=0)
    split_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                   help_text="The partition this one's work was split off from.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["job_id", "seq"]
        indexes = [
            # Claimable rows only (pending, or running with a lease to check):
            # finished partitions never enter this index, so claiming stays cheap.
            models.Index(
                fields=["job", "available_at"],
                condition=Q(status__in=[PartitionStatus.PENDING, PartitionStatus.RUNNING]),
                name="partition_claimable_idx",
            ),
            models.Index(fields=["job", "status"], name="partition_job_status_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["job", "seq"], name="partition_unique_job_seq"),
            # What a sub-job's composite foreign key (partition_id, job_id) references (migration 0009).
            models.UniqueConstraint(fields=["id", "job"], name="partition_id_job_key"),
            _finished_iff_terminal(PARTITION_TERMINAL, "partition_finished_at_iff_terminal"),
            models.CheckConstraint(
                condition=~Q(status=PartitionStatus.RUNNING) | Q(lease_expires_at__isnull=False),
                name="partition_running_has_lease",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} partition {self.seq} ({self.status})"

    @property
    def bounds_display(self) -> str:
        return bounds_text(self.kind, lower=self.lower, upper=self.upper, modulus=self.modulus,
                           remainder=self.remainder, sub_jobs=self.estimated_items)


def bounds_text(kind: str, *, lower=None, upper=None, modulus=None, remainder=None, sub_jobs: int = 0) -> str:
    """A partition's bounds in words, from its columns (the partition grid passes a run of partitions' outer
    bounds, without building model instances)."""
    if kind == Partition.Kind.MODULO:
        return f"id % {modulus} = {remainder}"
    if kind == Partition.Kind.RANGE:
        lower = "-inf" if lower is None else ", ".join(map(str, lower))
        upper = "+inf" if upper is None else ", ".join(map(str, upper))
        return f"[({lower}), ({upper}))"
    return f"{sub_jobs} sub-jobs"


class SubJob(models.Model):
    """An individually tracked item: every item of an item-list job, and every failed item of a range job."""

    # One composite foreign key, (partition_id, job_id) → partition (id, job_id), stands for both (migration
    # 0009): a sub-job's job is its partition's, and a plan's rows cost one check each at commit, not two.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, db_index=False, db_constraint=False,
                            related_name="subjobs")
    partition = models.ForeignKey(Partition, on_delete=models.CASCADE, db_index=False, db_constraint=False,
                                  related_name="subjobs")
    seq = models.BigIntegerField(help_text="Position in the job; items of one ordering key keep their order.")
    key = models.CharField(max_length=255)
    payload = _json(default=dict, blank=True)
    ordering_key = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=SubJobStatus.choices, default=SubJobStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="One line for operators.")
    traceback = models.TextField(blank=True, db_default="",
                                 help_text="The full traceback (operators with operate permission).")
    result = _json(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)
    # The failure ledger (partitions.reads.ledger): written with the outcome by the checkpoint's bulk statement.
    error_class = models.CharField(max_length=200, blank=True, db_default="",
                                   help_text="The exception's class of a failed item (SkipItem for a skip).")
    reason = models.CharField(max_length=300, blank=True, db_default="",
                              help_text="Error class and normalised message: the ledger's group "
                                        "(partitions.jobtypes.reasons).")
    first_seen_at = models.DateTimeField(null=True, blank=True, help_text="When it first failed or was skipped.")
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="When it last failed or was skipped.")
    note = models.CharField(max_length=1000, blank=True, db_default="",
                            help_text="The operator's note when they skipped it.")

    class Meta:
        ordering = ["job_id", "seq"]
        indexes = [
            models.Index(fields=["partition", "seq"], name="subjob_partition_seq_idx"),
            models.Index(fields=["job", "status"], name="subjob_job_status_idx"),
            # The ledger: its groups in one index-only pass, its item pages by keyset on (reason, id).
            models.Index(fields=["job", "reason", "id"], include=["status", "first_seen_at", "last_seen_at"],
                         condition=Q(status__in=sorted(SUBJOB_LEDGER)), name="subjob_failure_reason_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class JobEvent(models.Model):
    """Append-only timeline: what happened to a job, by whom (user or worker)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, db_index=False, related_name="events")
    partition = models.ForeignKey(Partition, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    subjob = models.ForeignKey(SubJob, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=64, choices=event_type_choices)
    actor = models.CharField(max_length=200, blank=True)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    data = _json(default=dict, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["job", "-id"], name="jobevent_job_idx"),
            # Every figure of a job reads these few events; its claims and retries may be millions.
            models.Index(fields=["job", "id"], name="jobevent_course_idx", condition=Q(type__in=sorted(COURSE_EVENTS))),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.type} by {self.actor}"


class JobSample(models.Model):
    """A throughput sample of a running job, taken by its workers every few seconds (and by `tick`): drives
    the chart, the rate and so the ETA (see `partitions.reads.sampling`)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, db_index=False, related_name="samples")
    taken_at = models.DateTimeField(db_default=Now())
    done_items = models.BigIntegerField()
    failed_items = models.BigIntegerField()
    skipped_items = models.BigIntegerField(default=0, db_default=0)
    live_leases = models.PositiveIntegerField()

    class Meta:
        ordering = ["job_id", "taken_at"]
        indexes = [models.Index(fields=["job", "taken_at"], name="jobsample_job_taken_idx")]

    def __str__(self) -> str:
        return f"job {self.job_id} at {self.taken_at}: {self.done_items} done"


class Delivery(models.Model):
    """One notification to one channel: the durable outbox, sent at least once (see `partitions.notify`)."""

    Status = DeliveryStatus

    job = models.ForeignKey(Job, on_delete=models.CASCADE, db_index=False, related_name="deliveries")
    event = models.ForeignKey(JobEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=64, help_text="step_started, step_finished, job_succeeded, …")
    step = models.CharField(max_length=16, blank=True, help_text="prepare, process or finalize (step events).")
    channel = models.CharField(max_length=200, help_text="email, or webhook:<name>")
    idempotency_key = models.CharField(max_length=200, unique=True)
    payload = _json(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_default=Now())
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(db_default=Now())
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["job", "channel", "id"], condition=Q(status="pending"), name="delivery_pending_idx"),
            models.Index(fields=["job", "id"], name="delivery_job_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.step} to {self.channel} ({self.status})"


class OutboxCursor(models.Model):
    """How far the notification relay has read the job events (one row)."""

    last_event_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"events relayed up to {self.last_event_id}"


class JobSchedule(models.Model):
    """A recurring run: a job type with validated params and run options, started at each fire of its cadence.

    Fires are claimed in `partitions.engine.claiming.schedule_claim_due` (one row lock, database clock), so a fire
    happens once across every cluster; `partitions.operations.schedules` owns every change of these rows.
    """

    class Kind(models.TextChoices):
        CRON = "cron"
        MINUTES = "minutes", "every N minutes"
        HOURS = "hours", "every N hours"
        DAYS = "days", "every N days"
        MONTHLY = "monthly", "every N months"

    name = models.CharField(max_length=100, unique=True)
    type_name = models.CharField(max_length=200)
    params = _json(default=dict, blank=True, help_text="Cleaned by the Params form; checked again at each fire.")
    # Run options of each job it starts.
    max_parallel = models.PositiveIntegerField(default=0)
    priority = models.SmallIntegerField(default=0)
    deadline_offset = models.DurationField(null=True, blank=True, help_text="Each run's deadline after its fire.")
    throttle = _json(default=dict, blank=True, help_text="rate_limit / pause_ms overrides; absent: the type's.")
    notify = _json(null=True, blank=True, help_text="The runs' notification channels (None: the defaults).")
    # Cadence (partitions.operations.cadence).
    kind = models.CharField(max_length=8, choices=Kind.choices)
    cron = models.CharField(max_length=100, blank=True)
    every = models.PositiveIntegerField(default=1)
    timezone = models.CharField(max_length=64, default="UTC")
    anchor = models.DateTimeField(null=True, blank=True, help_text="First fire; the phase of intervals.")
    enabled = models.BooleanField(default=True)
    paused_reason = models.TextField(blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["next_run_at"], condition=Q(enabled=True), name="jobschedule_due_idx")]
        constraints = [
            models.CheckConstraint(condition=~Q(enabled=True) | Q(next_run_at__isnull=False),
                                   name="jobschedule_enabled_has_next_run"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.type_name})"

    @property
    def dedupe_key(self) -> str:
        """Every run of this schedule shares it, so a fire while the last run is active starts nothing."""
        return f"schedule:{self.name}"


class ScheduleEvent(models.Model):
    """Append-only history of a schedule: each fire (started, skipped, missed), operator actions (with the
    user), automatic pauses. Survives the schedule's deletion (the name stays)."""

    schedule = models.ForeignKey(JobSchedule, null=True, blank=True, on_delete=models.SET_NULL, db_index=False,
                                 related_name="events")
    schedule_name = models.CharField(max_length=100)
    type = models.CharField(max_length=64, choices=schedule_event_type_choices)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="The fire time this event is about.")
    actor = models.CharField(max_length=200, blank=True)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    data = _json(default=dict, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["schedule", "-id"], name="scheduleevent_schedule_idx")]

    def __str__(self) -> str:
        return f"{self.schedule_name}: {self.type} by {self.actor}"


class ApiToken(models.Model):
    """A user's token for the JSON API (`partitions.httpapi`): only its SHA-256 is kept, with a short prefix to
    find it; the plaintext is shown once, when the token is created. A revoked token is refused, and kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. the CI pipeline's name.")
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(db_default=Now())
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ApiIdempotencyKey(models.Model):
    """An `Idempotency-Key` a user's start request carried: the job it started and a hash of the request, so a
    retried request returns that job and the same key with another request is refused."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="apiidempotencykey_user_key")]

    def __str__(self) -> str:
        return f"{self.key} -> job {self.job_id}"
