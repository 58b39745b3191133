"""A job's figures in words: the one author of every sentence an operator reads about a job's projection, the
advice, its throttle, a plan's preview and a sample dry-run, whichever surface shows it (the job page and list,
`manage.py jobs`, the deadline alerts, the start page's preview and sample).

Each sentence is made from `Figures`: what one projection (`partitions.reads.projection`) says, with the settings it
was made under, from a live job (`figures_of`) or from a sample dry-run (`sample_figures`). Dates go through
`humanize.when` (the operator's zone, named), counts through `humanize.plural`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from partitions.core import humanize
from partitions.core.humanize import duration, plural, when
from partitions.core.states import JOB_TERMINAL, JobStatus
from partitions.jobtypes.splits import PartitionPlan
from partitions.models import bounds_text
from partitions.reads import projection
from partitions.reads.projection import Projection
from partitions.reads.statistics import JobStats

if TYPE_CHECKING:  # the sample dry-run runs job code; its report is only read here
    from partitions.worker.sample_run import SampleReport


@dataclass(frozen=True)
class Figures:
    """What the sentences read: a projection and the job's settings it was made under."""

    projection: Projection
    status: str
    deadline: datetime | None
    #: Seconds to the deadline when the projection was made (None without a deadline).
    seconds_left: float | None
    max_parallel: int
    rate_limit: float | None
    percent: float
    #: Partitions in flight now (None for a sample: nothing runs).
    in_flight: int | None

    @property
    def ended(self) -> bool:
        """The job has ended (a sample never has)."""
        return self.status in JOB_TERMINAL


def figures_of(stats: JobStats) -> Figures:
    """A live job's figures (its projection, settings and progress)."""
    job = stats.job
    return Figures(stats.projection, job.status, job.deadline, stats.deadline_seconds_left, job.max_parallel,
                   job.rate_limit, stats.progress.percent, stats.progress.live_leases)


def sample_figures(report: SampleReport) -> Figures:
    """A sample dry-run's figures: the whole job's projection as if it had just begun, at the chosen options."""
    known = report.deadline is not None and report.now is not None
    left = (report.deadline - report.now).total_seconds() if known else None
    return Figures(report.projection, JobStatus.RUNNING, report.deadline, left, report.max_parallel,
                   report.rate_limit, 0.0, None)


# Rates and limits ---------------------------------------------------------------------------------------------

def rate(value: float | None) -> str:
    """`1,234 items/s`, `3.0 items/s` (— for none)."""
    if value is None:
        return humanize.DASH
    return f"{value:,.0f} items/s" if value >= 100 else f"{value:.1f} items/s"


def rate_text(stats: JobStats) -> str:
    """The current rate; "measuring" right after a change of the job's settings, before a sample says more."""
    return "measuring" if stats.projection.rate_source == "measuring" else rate(stats.rate)


def limit_text(f: Figures) -> str:
    """What limits the job, in words ("" when nothing does)."""
    p = f.projection
    if p.limited_by == projection.HEALTH:
        return f"held: {p.held}"
    detail = {projection.RATE_LIMIT: f" of {rate(f.rate_limit)}", projection.MAX_PARALLEL: f" ({f.max_parallel})",
              projection.WORKERS: f": the fleet has {plural(p.fleet_workers or 0, 'worker')}"}
    return "" if p.limited_by is None else projection.LIMIT_WORDS[p.limited_by] + detail.get(p.limited_by, "")


# The projection and the advice --------------------------------------------------------------------------------

def _ended_verdict(f: Figures) -> str:
    p = f.projection
    if f.status == JobStatus.SUCCEEDED:
        return "met" if p.meets_deadline else f"missed by {duration(p.late_seconds)}"
    return f"not met: {f.status} at {f.percent:.1f}%"


def projection_text(f: Figures) -> str:
    """The deadline verdict (projected finish vs the deadline, or how a finished job ended) and what limits the
    job; "" without a deadline and without a limit."""
    p = f.projection
    limit = limit_text(f)
    if f.deadline is None:
        return "" if f.ended else limit
    deadline = when(f.deadline)
    if f.ended:
        return f"deadline {deadline}: {_ended_verdict(f)}"
    left = f.seconds_left
    if p.projected_finish is None:
        if left is not None and left <= 0:
            text = f"deadline {deadline} has passed: late"
        elif f.status != JobStatus.RUNNING:
            text = f"deadline {deadline} (in {duration(left)}); no projection while {f.status}"
        elif p.held is not None:
            text = f"deadline {deadline} (in {duration(left)}); no projection while held"
        else:
            text = f"deadline {deadline} (in {duration(left)}); no projection until throughput is measured"
    else:
        verdict = "on time" if p.verdict == "on time" else f"{duration(p.late_seconds)} late"
        text = f"projected finish {when(p.projected_finish)} vs deadline {deadline}: {verdict}"
    return f"{text}; {limit}" if limit and p.limited_by != projection.PAUSED else text


def advice_text(f: Figures) -> str:
    """Advice that can work: the workers needed when workers or max parallel bind (with the truth about the
    fleet), the rate limit that would meet the deadline when the rate limit binds and the job is late."""
    p = f.projection
    if p.workers_needed is not None and p.per_worker_rate is not None:
        now = [f"now {f.in_flight} in flight"] if f.in_flight is not None else []
        cap = [f"max parallel {f.max_parallel}"] if f.max_parallel else []
        shown = f" ({', '.join(now + cap)})" if now or cap else ""
        fleet = "" if p.fleet_workers is None else f"; the fleet has {plural(p.fleet_workers, 'worker')}"
        return (f"needs {plural(p.workers_needed, 'parallel worker')} to meet the deadline at "
                f"{rate(p.per_worker_rate)} per worker{shown}{fleet}")
    if p.rate_needed is not None and p.meets_deadline is False:
        return f"a rate limit of {rate(p.rate_needed)} would meet the deadline"
    return ""


# The throttle -------------------------------------------------------------------------------------------------

def throttle_text(stats: JobStats) -> str:
    """The job's throttle: rate against its limit, pause, health hold (since when, zone named) ("" when none)."""
    t = stats.throttle()
    parts = []
    if t["rate_limit"] and stats.job.is_terminal:  # an ended job's average is no reading against its limit
        parts.append(f"rate limit {rate(t['rate_limit'])}")
    elif t["rate_limit"]:
        parts.append(f"{rate_text(stats)} of {rate(t['rate_limit'])} allowed")
    if t["pause_ms"]:
        parts.append(f"{t['pause_ms']:,} ms pause after each batch")
    if t["held"]:
        parts.append(f"held by a health check since {when(t['throttled_since'])}: {t['throttled_reason']}")
    if t["ignore_health"]:
        parts.append("health checks ignored")
    return "; ".join(parts)


def job_words(stats: JobStats) -> dict[str, str]:
    """A live job's sentences, as every surface shows them: the projection, what limits it, the advice and
    the throttle ("" where none applies)."""
    f = figures_of(stats)
    return {"projection": projection_text(f), "limit": limit_text(f), "advice": advice_text(f),
            "throttle": throttle_text(stats)}


# A plan's preview ---------------------------------------------------------------------------------------------

def preview_rows(plans: list[PartitionPlan]) -> list[dict[str, Any]]:
    """The first and last few planned partitions with their bounds in words, and a gap row ("… 20 more
    partitions") between them when there are more."""
    rows: list[dict[str, Any]] = []
    for seq in humanize.edges(len(plans)):
        if seq is None:
            gap = len(plans) - 2 * humanize.PREVIEW_EDGE
            rows.append({"gap": gap, "text": plural(gap, "more partition")})
            continue
        plan = plans[seq]
        rows.append({"seq": seq, "kind": plan.kind, "estimated": plan.estimated_items, "subjobs": len(plan.items),
                     "bounds": bounds_text(plan.kind, lower=plan.lower, upper=plan.upper, modulus=plan.modulus,
                                           remainder=plan.remainder, sub_jobs=plan.estimated_items)})
    return rows


def preview_counts(plans: list[PartitionPlan]) -> str:
    """`30 partitions, 60 estimated items` (`, 30 sub-jobs` when it has some)."""
    subjobs = sum(len(p.items) for p in plans)
    text = (f"{plural(len(plans), 'partition')}, "
            f"{plural(sum(p.estimated_items for p in plans), 'estimated item')}")
    return text + (f", {plural(subjobs, 'sub-job')}" if subjobs else "")


# A sample dry-run ---------------------------------------------------------------------------------------------

def _sample_figure(value: float | None, unit: str = "") -> str:
    """A measured figure (`?` when the sample handled no item)."""
    return "?" if value is None else humanize.number(value) + unit


def sample_words(report: SampleReport) -> dict[str, str]:
    """A sample dry-run's sentences: what it measured, the database load, the whole job's projection and the
    advice ("" where none applies)."""
    s, f = report.as_dict(), sample_figures(report)
    concurrency = s["item_concurrency"]
    measured = (f"{len(s['partitions'])} of {plural(s['planned_partitions'], 'partition')}, "
                f"{plural(s['items'], 'item')} ({s['items_failed']:,} failed, {s['items_skipped']:,} skipped) in "
                f"{humanize.number(s['seconds'])} s: {_sample_figure(s['items_per_second'], ' items/s')} on one worker"
                + (f" (items one at a time: this type runs {concurrency} at once, so it may go faster)"
                   if concurrency > 1 else ""))
    load = (f"{_sample_figure(s['statements_per_item'])} statements and {_sample_figure(s['rows_per_item'])} rows "
            f"per item; for the whole job {_sample_figure(s['statements_per_second'])} statements/s and "
            f"{_sample_figure(s['rows_per_second'])} rows/s")
    run = (f"{plural(s['planned_items'], 'item')} in {duration(s['projected_seconds'])} at {s['parallel']:,} in "
           f"parallel ({rate(s['projected_items_per_second'])})")
    verdict = projection_text(f)
    return {"measured": measured, "load": load, "projection": f"{run}; {verdict}" if verdict else run,
            "advice": advice_text(f)}


def skipped_text(summary: dict[str, Any] | None) -> str:
    """`3 items skipped by alice, job code (SkipItem)` from a job's stats["verification"] ("" when none)."""
    if not summary or not summary.get("skipped"):
        return ""
    who = ", ".join(label.removeprefix("user:") for label in summary.get("skipped_by") or [])
    return f"{plural(summary['skipped'], 'item')} skipped" + (f" by {who}" if who else "")
