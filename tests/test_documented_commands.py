"""Every `manage.py jobs …` command the README and docs/ show runs as written, today and with the clock a year
ahead: an absolute instant in an example (a deadline, a first fire) fails here the day it is written, not the
day it expires. Also: no page of the docs names a moment still to come."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from partitions.models import Job
from tests.factories import make_job
from tests.support import cli, documentation, documented_commands, planned_job, run_to_end, seed

pytestmark = pytest.mark.django_db

#: Subcommands that act on a job, and the job a documented example means (a placeholder or a number).
ON_A_RUNNING_JOB = {"set", "throttle", "status", "pause", "resume", "cancel", "events"}
ON_A_FAILED_JOB = {"failures", "retry", "skip"}
#: Subcommands that run as written, in the docs' order (a schedule's name made by one is used by the next).
AS_WRITTEN = {"types", "jobs", "list", "schedule", "schedules", "schedule-show", "schedule-run", "schedule-pause",
              "schedule-resume", "unschedule", "prune"}
#: What persists from one documented command to the next: the schedules the docs create.
KEPT = {"schedule"}


def as_run_here(argv: list[str], *, running: Job, failed: Job) -> list[str]:
    """The documented argv as this test runs it: a start as its dry run (which validates everything a start
    does, the deadline's range included, and waits for no worker), a status without --watch, a job placeholder
    as the job it means."""
    subcommand, rest = argv[0], argv[1:]
    if subcommand == "start":
        rest = [a for a in rest if a != "--wait"] + ([] if "--dry-run" in rest else ["--dry-run"])
    elif subcommand in ON_A_RUNNING_JOB | ON_A_FAILED_JOB:
        job = failed if subcommand in ON_A_FAILED_JOB else running
        rest = [str(job.pk), *[a for a in rest[1:] if a != "--watch"]]
    elif subcommand not in AS_WRITTEN:
        pytest.fail(f"`jobs {subcommand}` is documented but this test has no rule for running it: add one")
    return [subcommand, *rest]


@pytest.mark.parametrize("years_ahead", [0, 1], ids=["today", "a-year-ahead"])
def test_every_documented_jobs_command_runs_as_written_on_any_date(no_dispatcher, years_ahead):
    failed = run_to_end(planned_job("tests.two_failures", {"count": 50, "chunk_size": 10}))
    assert failed.status == "failed"
    commands = documented_commands()
    assert len(commands) >= 25 and {argv[0] for _, argv in commands} >= {"start", "set", "schedule", "failures"}
    with time_machine.travel(timezone.now() + timedelta(days=365 * years_ahead), tick=True):
        seed(subscriptions=40, events=20)
        running = make_job(status="running")
        for where, argv in commands:
            args = as_run_here(argv, running=running, failed=failed)
            with transaction.atomic():
                code, _, err = cli(*args)
                transaction.set_rollback(argv[0] not in KEPT)  # each example starts from the same world
            assert code == 0, f"{where}: manage.py jobs {' '.join(args)} -> {err}"


#: A date, or a date and time, written out: `2026-12-03`, `2026-12-03T09:00`, `2026-12-03 09:00:00Z`.
WRITTEN_MOMENT = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}))?")


def test_no_page_of_the_docs_names_a_moment_still_to_come():
    """A past date in an example (a sample output, a `since`) stays true; a future one becomes a time bomb."""
    now = timezone.now()
    ahead = []
    for page in documentation():
        for number, line in enumerate(page.read_text().splitlines(), 1):
            for match in WRITTEN_MOMENT.finditer(line):
                year, month, day, hour, minute = (int(part or 0) for part in match.groups())
                try:
                    moment = datetime(year, month, day, hour, minute, tzinfo=now.tzinfo)
                except ValueError:
                    continue  # not a calendar date (an example of a refused one)
                if moment > now + timedelta(days=1):  # a day of slack for time zones
                    ahead.append(f"{page.name}:{number}: {match.group(0)}")
    assert not ahead, "write a time from now (+2h) or a date in the past instead of: " + ", ".join(ahead)
