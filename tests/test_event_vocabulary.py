"""One event vocabulary (`partitions.core.events`): every event the engine's flows write is an EventType (a
ScheduleEventType in a schedule's history), no module of the engine or the demo spells a type as a literal, the
choices are state only (no SQL, no CHECK), and no migration imports app code."""

from __future__ import annotations

import ast
import io
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db.models.functions import Now
from django.utils import timezone

from partitions import conf
from partitions.core.events import EventType, ScheduleEventType
from partitions.engine import claiming, throttling
from partitions.models import Job, JobEvent, JobSchedule, Partition, ScheduleEvent
from partitions.operations import knob, schedules, services
from partitions.operations.cadence import CRON, Cadence
from partitions.operations.deadline_alerts import WATCH_KEY
from partitions.worker import maintenance
from tests.support import planned_job, run_to_end, seed

REPO = Path(__file__).resolve().parent.parent
EVENTS_MODULE = REPO / "partitions" / "core" / "events.py"
VOCABULARY = frozenset(EventType.values) | frozenset(ScheduleEventType.values)
NO_ADDRESS = "ValueError: customer <n> has no address"
NO_TAX = "LookupError: no tax rate for region <n>"


# What the engine writes -------------------------------------------------------------------------------------

def _items_failed_skipped_retried_and_rerun() -> None:
    """An item job with failed and skipped items; one reason skipped with a note, the other retried to success;
    then re-run."""
    job = run_to_end(planned_job("tests.two_failures", {"count": 50, "chunk_size": 10}))
    assert job.status == "failed"
    services.subjobs_skip(job.pk, reason=NO_TAX, note="no tax data for these regions", actor="test")
    services.subjobs_retry(job.pk, reason=NO_ADDRESS, actor="test")
    assert run_to_end(job).status == "succeeded"
    services.job_rerun(job.pk, actor="test")


def _partition_retried_until_failed_then_retried() -> None:
    """A range job whose every batch crashes: retried with backoff, failed, then its partition retried."""
    job = run_to_end(planned_job("tests.controlled", {"action": "crash", "partitions": 1}))
    assert job.status == "failed"
    services.job_retry_failed(job.pk, actor="test")


def _operators_controls_a_health_episode_a_lapsed_lease_and_a_cancel() -> None:
    """Pause, resume, throttle and the knob on a running job; a health check holds it and lets it go; a claimed
    partition's lease lapses and is reaped; then the job is cancelled."""
    job = planned_job("tests.bump_range", {"partitions": 2})
    services.job_pause(job.pk, actor="test")
    services.job_resume(job.pk, actor="test")
    services.job_throttle(job.pk, actor="test", rate_limit=5)
    knob.job_set(job.pk, actor="test", max_parallel=3)
    throttling.throttle_start(job.pk, "replica lag", checked_at=claiming.db_now(), actor="test-worker")
    throttling.throttle_end(job.pk, checked_at=None, actor="test-worker")
    [held] = claiming.partition_claim(worker_id="test-worker", lease_seconds=30, job_id=job.pk)
    Partition.objects.filter(pk=held.pk).update(lease_expires_at=Now() - timedelta(seconds=1))
    assert claiming.partitions_reap_expired() == {"requeued": 1, "failed": 0}
    services.job_cancel(job.pk, actor="test", reason="done with it")


def _deadline_at_risk() -> None:
    """A running job ~1 item/s with 99,400 items left and a minute to its deadline, watched past the grace."""
    job = planned_job("tests.bump_range", {"partitions": 1}, deadline=timezone.now() + timedelta(minutes=1))
    ten_minutes_ago = Now() - timedelta(minutes=10)
    Job.objects.filter(pk=job.pk).update(planned_at=ten_minutes_ago)
    JobEvent.objects.filter(job=job).update(created_at=ten_minutes_ago)  # it has run for ten minutes
    Partition.objects.filter(job=job).update(estimated_items=100_000, done_items=600)
    maintenance.alert_deadlines()  # the first late reading opens the watch; it began a grace ago
    watch = Job.objects.get(pk=job.pk).stats[WATCH_KEY]
    since = datetime.fromisoformat(watch["since"]) - timedelta(seconds=conf.get("DEADLINE_GRACE_SECONDS") + 1)
    Job.objects.filter(pk=job.pk).update(stats={WATCH_KEY: {**watch, "since": since.isoformat()}})
    assert maintenance.alert_deadlines()[EventType.DEADLINE_AT_RISK] == 1


def _a_demo_job_type_summarizes_its_prepare() -> None:
    """The demo's own event, written through `partitions.event`."""
    planned_job("billing.migrate_subscriptions", {"since": "2000-01-01", "rows_per_partition": 100})


def _a_schedule_fires_skips_misses_and_is_operated() -> None:
    schedule = schedules.schedule_create(actor="test", name="nightly", type_name="tests.bump_range",
                                         params={"partitions": 1}, cadence=Cadence(kind=CRON, cron="0 2 * * *"))
    for ago in (timedelta(seconds=1), timedelta(days=1)):  # fired; then late while its run is still active
        JobSchedule.objects.filter(pk=schedule.pk).update(next_run_at=Now() - ago)
        schedules.schedules_fire_due()
    schedules.schedule_pause(schedule.name, actor="test")
    schedules.schedule_resume(schedule.name, actor="test")
    schedules.schedule_delete(schedule.name, actor="test")


FLOWS = [_items_failed_skipped_retried_and_rerun, _partition_retried_until_failed_then_retried,
         _operators_controls_a_health_episode_a_lapsed_lease_and_a_cancel, _deadline_at_risk,
         _a_demo_job_type_summarizes_its_prepare, _a_schedule_fires_skips_misses_and_is_operated]
#: What the flows above reach: each writer of the engine wrote at least once (so the check below is not empty).
REACHED = {
    EventType.JOB_CREATED, EventType.PLANNING_STARTED, EventType.PLANNING_FINISHED, EventType.FINALIZING_STARTED,
    EventType.JOB_SUCCEEDED, EventType.JOB_FAILED, EventType.JOB_CANCELLED, EventType.JOB_PAUSED,
    EventType.JOB_RESUMED, EventType.JOB_REOPENED, EventType.JOB_RERUN, EventType.JOB_THROTTLE_CHANGED,
    EventType.JOB_SETTINGS_CHANGED, EventType.JOB_THROTTLED, EventType.JOB_THROTTLE_LIFTED,
    EventType.DEADLINE_AT_RISK, EventType.SUBJOBS_RETRIED, EventType.SUBJOBS_SKIPPED, EventType.PARTITION_CLAIMED,
    EventType.PARTITION_SUCCEEDED, EventType.PARTITION_FAILED, EventType.PARTITION_RETRY_SCHEDULED,
    EventType.PARTITION_LEASE_EXPIRED, EventType.PARTITION_RETRIED, EventType.SUBJOB_FAILED,
    EventType.SUBJOB_SKIPPED, EventType.PREPARE_SUMMARIZED,
}


@pytest.mark.django_db
def test_every_event_the_engines_flows_write_is_of_the_vocabulary(no_dispatcher):
    seed(subscriptions=200)
    for flow in FLOWS:
        flow()

    written = set(JobEvent.objects.values_list("type", flat=True))
    assert written <= set(EventType.values), f"not in EventType: {sorted(written - set(EventType.values))}"
    assert written >= REACHED, f"the flows no longer reach {sorted(REACHED - written)}"
    history = set(ScheduleEvent.objects.values_list("type", flat=True))
    assert history <= set(ScheduleEventType.values), sorted(history - set(ScheduleEventType.values))
    assert history >= {ScheduleEventType.SCHEDULE_CREATED, ScheduleEventType.FIRE_STARTED,
                       ScheduleEventType.FIRE_MISSED, ScheduleEventType.FIRE_SKIPPED,
                       ScheduleEventType.SCHEDULE_PAUSED, ScheduleEventType.SCHEDULE_RESUMED,
                       ScheduleEventType.SCHEDULE_DELETED}


def test_each_type_says_when_it_is_written():
    for vocabulary in (EventType, ScheduleEventType):
        for member in vocabulary:
            assert member.label != member.name.replace("_", " ").title(), f"{member!r} has no sentence"


# No type spelled outside the vocabulary ---------------------------------------------------------------------

def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants of a module, its classes and functions (they may name a type)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def literal_types(source: str, filename: str = "<source>") -> list[str]:
    """Each string literal of `source` that spells an event type (or builds one: `f"subjob_{status}"`), as
    `line: text`; docstrings excepted."""
    tree = ast.parse(source, filename)
    docstrings, found = _docstrings(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if node.value in VOCABULARY:
                found.append(f"{node.lineno}: {node.value}")
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            head = str(node.values[0].value)
            if head.endswith("_") and any(word.startswith(head) for word in VOCABULARY):
                found.append(f"{node.lineno}: f{head}{{…}}")
    return found


def quoted_types(text: str) -> list[str]:
    """Each quoted event type in SQL, a template or a script, as `line: text`."""
    return [f"{text.count(chr(10), 0, m.start()) + 1}: {m[2]}" for m in re.finditer(r"""(['"])(\w+)\1""", text)
            if m[2] in VOCABULARY]


#: Strings that are also an event type's name but mean something else, with why.
NOT_EVENTS = {
    ("partitions/management/commands/jobs.py", "subjobs_retried"): "the JSON key of `jobs retry`'s count",
    ("partitions/engine/dispatch.py", "job_created"): "the dispatcher's call of that name (a count's key)",
}


@pytest.mark.parametrize("source", [
    'event(job.pk, "job_paused", actor)',
    'transition(Job, pk, "cancelled", actor=a, event_type="job_cancelled")',
    'if e.type == "fire_started": pass',
    'JobEvent.objects.filter(type__in=["partition_claimed"])',
    'row = JobEvent(type=f"subjob_{status}")',
    'ENDINGS = {"job_succeeded": "succeeded"}',
])
def test_every_form_of_spelling_a_type_is_found(source):
    assert literal_types(source)


@pytest.mark.parametrize("source", [
    '"""Writes `job_paused` (a docstring)."""',
    "event(job.pk, EventType.JOB_PAUSED, actor)",
    'key = f"job-{pk}"',
    'status = "failed"',
])
def test_the_vocabulary_and_other_words_are_not_flagged(source):
    assert literal_types(source) == []


def test_no_module_of_the_engine_or_the_demo_spells_an_event_type():
    sources = [path for root in ("partitions", "opsapp") for path in sorted((REPO / root).rglob("*"))
               if path.is_file() and path != EVENTS_MODULE and "migrations" not in path.parts
               and path.suffix in {".py", ".sql", ".html", ".js"}]
    assert len(sources) > 50  # the walk really found the code
    offenders = {}
    for path in sources:
        text, name = path.read_text(encoding="utf-8"), str(path.relative_to(REPO))
        hits = literal_types(text, name) if path.suffix == ".py" else quoted_types(text)
        if hits := [hit for hit in hits if (name, hit.split(": ", 1)[1]) not in NOT_EVENTS]:
            offenders[name] = hits
    assert offenders == {}, "use partitions.core.events.EventType (or `{event_…}` in SQL), not the literal"


#: The one writer of each history's rows.
WRITERS = {"JobEvent": "partitions/engine/lifecycle.py", "ScheduleEvent": "partitions/operations/schedules.py"}
_MAKERS = {"create", "bulk_create", "get_or_create", "update_or_create"}


def event_rows_made(source: str, filename: str = "<source>") -> list[str]:
    """Each `JobEvent(…)`, `ScheduleEvent(…)` or `….objects.create(…)`-like call of `source`, as `line: model`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in WRITERS:
            found.append(f"{node.lineno}: {func.id}")
        elif (isinstance(func, ast.Attribute) and func.attr in _MAKERS and isinstance(func.value, ast.Attribute)
              and func.value.attr == "objects" and getattr(func.value.value, "id", None) in WRITERS):
            found.append(f"{node.lineno}: {func.value.value.id}")
    return found


def test_only_the_one_writer_of_each_history_makes_its_rows():
    offenders = {}
    for path in [p for root in ("partitions", "opsapp") for p in sorted((REPO / root).rglob("*.py"))]:
        name = str(path.relative_to(REPO))
        hits = [hit for hit in event_rows_made(path.read_text(encoding="utf-8"), name)
                if WRITERS[hit.split(": ", 1)[1]] != name]
        if hits:
            offenders[name] = hits
    assert offenders == {}, "write events with lifecycle.event / events_insert (schedules.schedule_event)"
    assert event_rows_made("JobEvent.objects.bulk_create([JobEvent(job_id=1, type='x')])") == [
        "1: JobEvent", "1: JobEvent"]


# State only -------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_choices_are_state_only_no_sql_and_no_check():
    assert JobEvent._meta.get_field("type").choices == EventType.choices
    assert ScheduleEvent._meta.get_field("type").choices == ScheduleEventType.choices
    out = io.StringIO()
    call_command("sqlmigrate", "partitions", "0011", stdout=out)
    statements = [line for line in out.getvalue().splitlines()
                  if line.strip() and not line.startswith("--") and line not in ("BEGIN;", "COMMIT;")]
    assert statements == []
    assert not [c for model in (JobEvent, ScheduleEvent) for c in model._meta.constraints if "type" in str(c)]


# Migrations import no app code ------------------------------------------------------------------------------

#: App modules a migration may name: what Django writes into a model's state by import path (the JSON fields'
#: encoder, the event types' choices callables). Freezing one would fork the field's state; anything a migration
#: runs (a backfill) is copied in.
STATE_REFERENCES = frozenset({"partitions.core.encoding", "partitions.core.events"})


def app_imports(source: str, filename: str = "<source>") -> list[str]:
    """Each module `source` imports (statically or with import_module) that is not Django, the standard library,
    a migration or a state reference, as `line: module`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""] if node.level == 0 else []  # a relative import stays in migrations/
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            modules = [str(node.args[0].value)]
        else:
            continue
        found += [f"{node.lineno}: {module}" for module in modules if not _allowed(module)]
    return found


def _allowed(module: str) -> bool:
    root = module.partition(".")[0]
    return (root in sys.stdlib_module_names or root == "django" or module in STATE_REFERENCES
            or ".migrations" in f".{module}")


@pytest.mark.parametrize("source", [
    "from partitions.jobtypes.reasons import normalised",
    "import partitions.core.states",
    "from opsapp.billing.models import Invoice",
    "def backfill(apps, editor):\n    from partitions import reasons",
    "import importlib\nimportlib.import_module('partitions.jobtypes.reasons')",
])
def test_every_form_of_importing_app_code_is_found(source):
    assert app_imports(source)


def test_no_migration_imports_app_code():
    migrations = [path for root in ("partitions", "opsapp") for path in sorted((REPO / root).rglob("migrations/0*.py"))]
    assert len(migrations) > 10
    offenders = {str(path.relative_to(REPO)): hits for path in migrations
                 if (hits := app_imports(path.read_text(encoding="utf-8"), str(path)))}
    assert offenders == {}, "freeze what a migration needs inside it (see 0010_subjob_failure_ledger)"
