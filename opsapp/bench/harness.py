"""What every scenario shares: options, figures with ratios, the table/JSON output, the scratch database,
and worker processes (forked after closing every connection, so each opens its own).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import platform
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from typing import Any

import django
from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection, connections

from partitions import worker
from partitions.engine import dispatch
from partitions.jobtypes import registry
from partitions.models import Job
from partitions.operations import services
from partitions.worker import steps

_FORK = multiprocessing.get_context("fork")
#: Seconds a worker process may take before the run is declared hung.
PROCESS_TIMEOUT = 600.0
#: Loggers that would otherwise write one line per partition or task, in the engine and in django-q2 alike.
CHATTY_LOGGERS = ("partitions", "django-q", "opsapp")


class BenchError(RuntimeError):
    """A scenario could not produce its figures (a worker failed, a check did not hold)."""


@dataclass(frozen=True)
class Options:
    """Knobs shared by the scenarios; `size` overrides a scenario's main size (rows, items, partitions)."""

    quick: bool = False
    workers: int = 2
    concurrency: int = 8
    size: int | None = None
    lease: float = 2.0
    log: Callable[[str], None] = print

    def pick(self, default: int, quick: int) -> int:
        return self.size or (quick if self.quick else default)


@dataclass
class Figure:
    key: str
    label: str
    value: float
    unit: str
    #: value / baseline value, per baseline key.
    ratios: dict[str, float] = field(default_factory=dict)
    baseline: bool = False


@dataclass
class Result:
    """One scenario's figures (each compared with baselines measured in the same run) and its checks."""

    scenario: str
    params: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def baseline(self, key: str, label: str, value: float, unit: str) -> Figure:
        figure = Figure(key, label, value, unit, baseline=True)
        self.figures.append(figure)
        return figure

    def figure(self, key: str, label: str, value: float, unit: str, *, vs: tuple[Figure, ...] = ()) -> Figure:
        ratios = {b.key: value / b.value for b in vs if b.value}
        figure = Figure(key, label, value, unit, ratios=ratios)
        self.figures.append(figure)
        return figure


# Output -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    model = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (pg,) = cursor.fetchone()
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor(), "python": platform.python_version(),
            "django": django.get_version(), "postgresql": pg}


def as_json(results: list[Result], host: dict[str, Any]) -> dict[str, Any]:
    return {"machine": host, "scenarios": {r.scenario: {k: v for k, v in asdict(r).items() if k != "scenario"}
                                           for r in results}}


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def table(results: list[Result], host: dict[str, Any]) -> str:
    """A plain-text table per scenario: figure, value, unit, and `x` ratios to the named baselines."""
    lines = [f"{host['cpus']} CPUs ({host['cpu_model']}), PostgreSQL {host['postgresql']}, "
             f"Python {host['python']}, Django {host['django']}"]
    for result in results:
        labels = {f.key: f.label for f in result.figures}
        params = ", ".join(f"{k}={v}" for k, v in result.params.items())
        lines += ["", f"{result.scenario}  ({params}; {result.seconds:.0f} s)"]
        width = max(len(f.label) for f in result.figures) + 2
        for f in result.figures:
            ratios = "baseline" if f.baseline else "; ".join(f"{r:.2f}x {labels[k]}" for k, r in f.ratios.items())
            lines.append(f"  {f.label:<{width}}{_number(f.value):>12}  {f.unit:<14}{ratios}")
        if result.checks:
            lines.append("  checks: " + ", ".join(f"{k}={v}" for k, v in result.checks.items()))
    return "\n".join(lines)


# Timing -------------------------------------------------------------------------------------


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """`with stopwatch() as elapsed: …` then elapsed() is the seconds spent inside the block."""
    started = time.perf_counter()
    ended: list[float] = []
    yield lambda: (ended[0] if ended else time.perf_counter()) - started
    ended.append(time.perf_counter())


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of `runs` timed calls (noise on a shared machine only ever adds time), with its result."""
    best: tuple[float, Any] | None = None
    for _ in range(runs):
        with stopwatch() as elapsed:
            value = fn()
        if best is None or elapsed() < best[0]:
            best = (elapsed(), value)
    return best


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.01) -> None:
    """Poll until condition() is true; BenchError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# The scratch database -----------------------------------------------------------------------


def _admin_sql(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


#: The scratch database the default alias points at while a bench runs (tables are emptied only there).
_scratch: list[str] = []


def _point_default_at(name: str) -> None:
    connections.close_all()
    settings.DATABASES[DEFAULT_DB_ALIAS]["NAME"] = name
    connections[DEFAULT_DB_ALIAS].settings_dict["NAME"] = name


def scratch_name() -> str:
    """The default scratch database: the current database's name + `_bench`."""
    return f"{connections[DEFAULT_DB_ALIAS].settings_dict['NAME']}_bench"


@contextmanager
def scratch_database(name: str, *, keep: bool = False) -> Iterator[None]:
    """Create and migrate `name` on the same server and point the default alias (and forked workers) at it."""
    original = connections[DEFAULT_DB_ALIAS].settings_dict["NAME"]
    if name == original:
        raise BenchError(f"the scratch database must differ from the working one ({original})")
    quoted = connection.ops.quote_name(name)
    _admin_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    _admin_sql(f"CREATE DATABASE {quoted}")
    try:
        _point_default_at(name)
        _scratch.append(name)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        yield
    finally:
        _scratch.clear()
        _point_default_at(original)
        if not keep:
            _admin_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")


def empty_tables() -> None:
    """Empty every engine, demo and django-q2 queue table of the scratch database (between runs)."""
    if connections[DEFAULT_DB_ALIAS].settings_dict["NAME"] not in _scratch:
        raise BenchError("refusing to empty tables outside the scratch database")
    tables = ["partitions_jobsample", "partitions_jobevent", "partitions_subjob", "partitions_partition",
              "partitions_job", "opsapp_subscription", "opsapp_invoice", "opsapp_event", "opsapp_customer",
              "opsapp_product", "django_q_ormq", "django_q_task"]
    _admin_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def vacuum(*tables: str) -> None:
    """VACUUM ANALYZE (visibility map and statistics fresh, dead rows gone) before a timed read or write."""
    _admin_sql("VACUUM ANALYZE " + ", ".join(connection.ops.quote_name(t) for t in tables))


# Engine setup -------------------------------------------------------------------------------


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Per-partition and per-task log lines off (engine and django-q2 alike); warnings still show."""
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextmanager
def engine_for_bench(*job_types: type, dispatcher: dispatch.Dispatcher | None = None) -> Iterator[None]:
    """Register the bench's job types and install `dispatcher`: by default none, so no django-q2 task is
    enqueued and the bench drives workers itself."""
    for job_type in job_types:
        registry.register(job_type)
    previous = dispatch.current()  # restored afterwards (django-q2's, or whatever a test installed)
    dispatch.set_dispatcher(dispatcher)
    try:
        yield
    finally:
        dispatch.set_dispatcher(previous)
        for job_type in job_types:
            registry.unregister(job_type.name)


# Worker processes ---------------------------------------------------------------------------


def _child(out, barrier, fn: Callable, args: tuple) -> None:
    try:
        connection.ensure_connection()
        if barrier is not None:
            barrier.wait(PROCESS_TIMEOUT)
        out.send(("ok", fn(*args)))
    except BaseException:
        if barrier is not None:
            barrier.abort()  # the parent and the other workers stop waiting at the start line
        out.send(("error", traceback.format_exc()))
    finally:
        connections.close_all()


def _fork(fn: Callable, args: tuple, barrier) -> tuple[multiprocessing.Process, Any]:
    receive, send = _FORK.Pipe(duplex=False)
    process = _FORK.Process(target=_child, args=(send, barrier, fn, args), daemon=False)
    process.start()
    send.close()
    return process, receive


def start_process(fn: Callable, *args) -> tuple[multiprocessing.Process, Any]:
    """Fork one process running fn(*args); returns it and the pipe its result (or traceback) arrives on."""
    connections.close_all()
    return _fork(fn, args, None)


def result_of(process: multiprocessing.Process, receive, *, timeout: float = PROCESS_TIMEOUT) -> Any:
    """Wait for a process's return value; raise BenchError with its traceback when it failed or hung."""
    if not receive.poll(timeout):
        process.kill()
        raise BenchError(f"worker {process.pid} did not finish within {timeout:.0f} s")
    status, value = receive.recv()
    if status != "ok":
        raise BenchError(f"worker {process.pid} failed:\n{value}")
    return value


def run_workers(n: int, fn: Callable, *args) -> tuple[float, list[Any]]:
    """Run fn(*args) in n forked processes started together; return the wall time and their results.

    Each process connects before the start line, so connection setup is not timed.
    """
    connections.close_all()
    barrier = _FORK.Barrier(n + 1)
    workers = [_fork(fn, args, barrier) for _ in range(n)]
    try:
        with suppress(threading.BrokenBarrierError):  # a worker failed to start: its error is raised below
            barrier.wait(PROCESS_TIMEOUT)
        with stopwatch() as elapsed:
            results = [result_of(process, receive) for process, receive in workers]
    finally:
        for process, _ in workers:
            process.join(30)
    return elapsed(), results


def planned_job(type_name: str, params: dict[str, Any] | None = None) -> tuple[Job, float]:
    """Start a job and plan it here (the bench has no dispatcher); the job and the seconds planning took."""
    job, _ = services.job_start(type_name, params, actor="bench")
    with stopwatch() as planning:
        steps.job_plan(job.pk, worker_id="bench")
    return job, planning()


def drain_job(job_id: int, claim_batch: int | None = None) -> int:
    """A worker process's body: `worker.drain` one job until nothing is claimable; the partitions it ran."""
    # No standby: it would wait up to a poll after the last partition, and the bench times the processes.
    return worker.drain(job_id=job_id, budget_seconds=PROCESS_TIMEOUT, claim_batch=claim_batch,
                        standby=False).partitions
