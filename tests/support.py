"""Support for the tests, in one place: demo rows and helpers that drive the engine directly (no
django-q2), the CLI as a shell runs it, forked child processes that race on the database, and real qcluster
processes on the test database."""

from __future__ import annotations

import io
import itertools
import json
import multiprocessing
import os
import shlex
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.db import connection, connections, transaction
from django.utils import timezone

import tests.jobtypes  # noqa: F401 - registers the test job types
from opsapp.bench.qclusters import QCluster
from opsapp.billing.seeding import seed_demo
from partitions import worker
from partitions.engine import dispatch
from partitions.management.commands.jobs import Command as JobsCommand
from partitions.models import Job, Partition
from partitions.operations import services
from partitions.worker import steps

# Rows and the engine driven directly ----------------------------------------------------------------------

@contextmanager
def dispatcher_off() -> Iterator[None]:
    """The engine enqueues no django-q2 task inside this block (the test drives the engine itself)."""
    previous = dispatch.current()
    dispatch.set_dispatcher(None)
    try:
        yield
    finally:
        dispatch.set_dispatcher(previous)


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


# What the docs tell an operator to type ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def documentation() -> list[Path]:
    """Every page an operator reads: the README and each Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def documented_commands(subcommand: str | None = None) -> list[tuple[str, list[str]]]:
    """Each `manage.py jobs …` command in a code block of the docs, as (where, argv after `jobs`): continuations
    joined, comments, `;`-joined commands and a shell redirection split off; only `subcommand`'s when given."""
    commands = []
    for page in documentation():
        in_code, joined, first = False, "", 0
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.rstrip().endswith("\\"):  # a continuation: joined to the next line, named by its first
                joined, first = joined + line.rstrip()[:-1] + " ", first or number
                continue
            line, where, joined, first = (joined + line).strip(), first or number, "", 0
            if line.startswith("```"):
                in_code = not in_code
            if not in_code or not line.startswith(("python manage.py jobs ", "manage.py jobs ")):
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";>")
            lexer.whitespace_split = True
            words = list(lexer)  # `#` starts a comment, `;` and `>` are their own words, quotes hold
            for command in " ".join(shlex.quote(w) if w not in ";>" else w for w in words).split(" ; "):
                argv = shlex.split(command.split(" > ")[0])
                if argv[:1] == ["python"]:
                    argv = argv[1:]
                if subcommand in (None, argv[2]):
                    commands.append((f"{page.relative_to(ROOT)}:{where}", argv[2:]))
    return commands


def year_ahead() -> int:
    """A calendar year always in the future and within every horizon (next year), for a test that needs a
    future date written out: a fixed year expires."""
    return timezone.now().year + 1


# Forked children racing on the database ------------------------------------------------------------------

FORK = multiprocessing.get_context("fork")
#: Upper bound of every wait (child exit, DB condition), so a broken invariant fails instead of hanging.
WAIT = 30.0


# Child processes ---------------------------------------------------------------------------------------


def _child_main(fn: Callable[..., Any], args: tuple, out: Path) -> None:
    """Body of every child: run fn, write its result (or traceback) as JSON, close connections, _exit."""
    code = 0
    try:
        payload = {"ok": True, "result": fn(*args)}
    except BaseException:
        payload, code = {"ok": False, "error": traceback.format_exc()}, 1
    try:
        out.write_text(json.dumps(payload, default=str))
    finally:
        connections.close_all()
        os._exit(code)


class Child:
    def __init__(self, proc, out: Path):
        self.proc, self.out = proc, out

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def result(self, timeout: float = WAIT) -> Any:
        """Wait for a clean exit and return what the child's function returned."""
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.signal(signal.SIGKILL)
            self.proc.join(5)
            pytest.fail(f"child {self.proc.name} did not finish within {timeout} s")
        payload = json.loads(self.out.read_text()) if self.out.exists() else None
        assert self.proc.exitcode == 0, f"child {self.proc.name} exited {self.proc.exitcode}: " + (
            payload["error"] if payload else "no report")
        return payload["result"]


def row_locked_by_someone_else(partition_id: int) -> bool:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM partitions_partition WHERE id = %s FOR UPDATE SKIP LOCKED", [partition_id])
        return cursor.fetchone() is None


def stop_outside_a_commit(pid: int, partition_id: int) -> None:
    """SIGSTOP a worker process at a moment it holds no lock on the partition row (else nobody could take it
    over until something ended its session, e.g. django-q2's task timeout killing it)."""
    deadline = time.monotonic() + WAIT
    while True:
        os.kill(pid, signal.SIGSTOP)
        if not row_locked_by_someone_else(partition_id):
            return
        os.kill(pid, signal.SIGCONT)  # stopped inside its checkpoint commit: let it finish and try again
        if time.monotonic() > deadline:
            pytest.fail("could not stop the worker outside a checkpoint commit")
        time.sleep(0.02)


class Children:
    """Starts children from a connection-free parent; kills leftovers (even stopped ones) at teardown."""

    def __init__(self, tmp_path: Path):
        self.tmp_path, self.started = tmp_path, []

    def start(self, fn: Callable[..., Any], *args: Any, name: str) -> Child:
        connections.close_all()  # never share the parent's socket with a child
        out = self.tmp_path / f"{name}.json"
        proc = FORK.Process(target=_child_main, args=(fn, args, out), name=name, daemon=True)
        proc.start()
        child = Child(proc, out)
        self.started.append(child)
        return child

    def race(self, fn: Callable[..., Any], args_of: Callable[[int], tuple], n: int, name: str) -> list[Any]:
        """Start n children that call fn(barrier, *args_of(i)) and return their results, in order."""
        barrier = FORK.Barrier(n)
        kids = [self.start(fn, barrier, *args_of(i), name=f"{name}-{i}") for i in range(n)]
        return [kid.result() for kid in kids]

    def kill_all(self) -> None:
        for child in self.started:
            if child.proc.is_alive():
                child.signal(signal.SIGKILL)  # works on stopped processes too
            child.proc.join(5)


# Real qclusters ------------------------------------------------------------------------------------------

#: Short leases and drain budgets so crash tests finish quickly; retry > (1 + ceil(5/2)) * (timeout + 3).
CLUSTER_ENV = {
    "PARTITIONS_LEASE_SECONDS": "3",
    "PARTITIONS_DRAIN_BUDGET_SECONDS": "5",
    "PARTITIONS_JOB_MODULES": "tests.jobtypes",
    "Q_WORKERS": "2",
    "Q_TIMEOUT": "30",
    "Q_RETRY": "200",
    "LOG_LEVEL": "INFO",
}


class Cluster(QCluster):
    """One qcluster on `db_url` with the tests' short leases, in its own process group."""

    def __init__(self, db_url: str, log_path: Path, **extra_env: str):
        super().__init__({**CLUSTER_ENV, "DATABASE_URL": db_url, **extra_env}, log_path)


def forget_clusters() -> None:
    """Drop what stopped clusters reported (django-q2's stats in the database cache, which no flush empties), so
    a later test in this process does not see a fleet that is gone."""
    from django.core.cache import cache

    cache.clear()


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, clusters: list[Cluster] = ()) -> None:
    """Poll until condition() is true; on timeout fail with the clusters' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if dead := [c for c in clusters if c.proc.poll() is not None and not c.killed]:
            raise AssertionError(f"a qcluster exited early:\n{dead[0].tail()}")
        time.sleep(0.2)
    logs = "\n\n".join(f"--- {c.log_path.name}\n{c.tail()}" for c in clusters)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def finished(job, clusters: list[Cluster], timeout: float = 120):
    """Wait for a job to end under these clusters; the job, refreshed."""
    from partitions.core.states import JOB_TERMINAL
    from partitions.models import Job

    wait_for(lambda: Job.objects.get(pk=job.pk).status in JOB_TERMINAL, timeout=timeout,
             what=f"job {job.pk} to finish", clusters=clusters)
    job.refresh_from_db()
    return job


def kill_mid_partition_and_finish(job, victim: Cluster, survivor: Cluster):
    """kill -9 `victim` once it holds a checkpointed partition of `job`; the job, finished by `survivor`."""
    from partitions.models import Partition

    def victim_is_mid_partition() -> bool:
        owners = Partition.objects.filter(job=job, status="running", checkpoint__isnull=False).values_list(
            "lease_owner", flat=True)
        return any(int(owner.split(":")[1]) in victim.pids() for owner in owners)

    wait_for(victim_is_mid_partition, timeout=60, what="the victim to be mid-partition", clusters=[victim, survivor])
    victim.kill()
    assert Partition.objects.filter(job=job).exclude(status="succeeded").exists()
    job = finished(job, [survivor], timeout=180)
    assert job.status == "succeeded", job.error
    return job


def timeline_by_ordering_key(timeline) -> dict[str, list[tuple[int, float, float]]]:
    """(item index, start, end) per ordering key, from a job type's recorded (key, ordering key, start, end),
    after asserting that items of one key ran in order and never overlapped."""
    by_key: dict[str, list[tuple[int, float, float]]] = {}
    for key, ordering_key, start, end in timeline:
        by_key.setdefault(ordering_key, []).append((int(key.split("-")[1]), start, end))
    for runs in by_key.values():
        runs.sort(key=lambda r: r[1])
        assert [i for i, _, _ in runs] == sorted(i for i, _, _ in runs), "same key: in order"
        assert all(a[2] <= b[1] for a, b in itertools.pairwise(runs)), "same key: never overlapping"
    return by_key
