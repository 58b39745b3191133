"""Rows in any state, and helpers to drive the engine directly (no django-q2)."""

from __future__ import annotations

import io
import time
from contextlib import redirect_stderr
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone

import tests.jobtypes  # noqa: F401 - registers the test job types
from opsapp.billing.seeding import seed_demo
from partitions import services, worker
from partitions.management.commands.jobs import Command as JobsCommand
from partitions.models import Job, Partition
from partitions.worker import steps


def seed(subscriptions: int = 1000, events: int = 0, products: int = 2) -> None:
    seed_demo(products=products, subscriptions=subscriptions, customers=5, events=events)


def started_job(type_name: str, params: dict[str, Any], **kwargs) -> Job:
    job, _ = services.job_start(type_name, params, actor="test", **kwargs)
    return job


def planned_job(type_name: str, params: dict[str, Any], **kwargs) -> Job:
    job = started_job(type_name, params, **kwargs)
    planned = steps.job_plan(job.pk, worker_id="planner")
    assert planned is not None
    return planned


def run_to_end(job: Job, *, rounds: int = 200) -> Job:
    """Drain in this process (waiting out short backoffs) until no partition is pending or running, then
    finalize: the whole engine path without workers."""
    for _ in range(rounds):
        worker.drain(budget_seconds=30, job_id=job.pk, worker="test-worker")
        if not Partition.objects.filter(job=job, status__in=["pending", "running"]).exists():
            break
        time.sleep(0.02)
    steps.job_finalize(job.pk, worker_id="test-worker")
    job.refresh_from_db()
    return job


def make_job(*, status: str = "running", type_name: str = "tests.bump_range", **fields) -> Job:
    now = timezone.now()
    stamps = {"finished_at": now} if status in {"succeeded", "failed", "cancelled"} else {}
    return Job.objects.create(type_name=type_name, params={"partitions": 1}, status=status, **stamps, **fields)


def make_partition(job: Job, *, seq: int = 0, status: str = "pending", **fields) -> Partition:
    now = timezone.now()
    defaults: dict[str, Any] = {"kind": "range", "key": ["created_at", "id"]}
    if status == "running":
        defaults.update(lease_owner="someone", lease_token=1, lease_expires_at=now + timedelta(seconds=60))
    if status in {"succeeded", "failed", "cancelled"}:
        defaults["finished_at"] = now
    return Partition.objects.create(job=job, seq=seq, status=status, **{**defaults, **fields})


def cli(*args: str) -> tuple[int, str, str]:
    """`manage.py jobs ARGS` as a shell would run it, in this process: (exit code, stdout, stderr).

    BaseCommand.run_from_argv's path, except that it leaves the test's database connection open: argparse
    errors exit 2 with usage on stderr, a CommandError prints `CommandError: …` and exits with its code.
    """
    out, err = io.StringIO(), io.StringIO()
    command = JobsCommand(stdout=out, stderr=err)
    command._called_from_command_line = True
    with redirect_stderr(err):
        try:
            options = vars(command.create_parser("manage.py", "jobs").parse_args(list(args)))
            options.pop("args", None)
            command.execute(**options)
        except SystemExit as exc:
            return (exc.code if isinstance(exc.code, int) else 1), out.getvalue(), err.getvalue()
        except CommandError as exc:
            err.write(f"CommandError: {exc}\n")
            return exc.returncode, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()
