"""What `manage.py jobs` prints: a job's machine-readable summary (--json) and its one-line renderings, from
the same figures as the admin's."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from partitions.core import humanize
from partitions.jobtypes.splits import PartitionPlan
from partitions.models import Job
from partitions.reads.pages import job_splits
from partitions.reads.statistics import JobStats, job_stats
from partitions.wording import presenters


def job_summary(job: Job, stats: JobStats | None = None) -> dict[str, Any]:
    """The machine-readable state of a job (what --json prints, and the API's); `stats`: the job's, when the
    caller has read them already (a page of jobs, with `jobs_stats`)."""
    stats = job_stats(job) if stats is None else stats
    return {
        "id": job.pk, "type": job.type_name, "status": job.status, "params": job.params, "error": job.error,
        "created_at": job.created_at, "finished_at": job.finished_at, "max_parallel": job.max_parallel,
        **stats.progress.as_dict(), **stats.figures(), "throttle": stats.throttle(),
        "splits": job_splits(job.pk), "words": presenters.job_words(stats),
    }


def plan_rows(plans: list[PartitionPlan]) -> list[dict[str, Any]]:
    """A dry run's planned partitions, one row each (`jobs start --dry-run --json`'s and the API's)."""
    return [{"seq": i, "kind": p.kind, "lower": p.lower, "upper": p.upper, "modulus": p.modulus,
             "remainder": p.remainder, "estimated_items": p.estimated_items} for i, p in enumerate(plans)]


def throttle_line(summary: dict[str, Any]) -> str:
    """The throttle part of a status line, in the job page's words ("" when nothing throttles the job)."""
    return f"  {summary['words']['throttle']}" if summary["words"]["throttle"] else ""


def projection_line(summary: dict[str, Any]) -> str:
    """The deadline verdict, what limits the job and the advice that can work, in the job page's words ("" when
    none applies)."""
    words = summary["words"]
    parts = [text for text in (words["projection"], words["advice"]) if text]
    return "  " + "; ".join(parts) if parts else ""


def progress_line(summary: dict[str, Any]) -> str:
    """One line from the summary's own figures (the same computation as the admin's)."""
    width = 30
    filled = int(width * summary["percent"] / 100)
    handled = summary["items_done"] + summary["items_failed"] + summary["items_skipped"]
    eta = summary["eta_seconds"]
    eta_text = "?" if eta is None else f"{eta:,.0f}s"
    return (f"[{'#' * filled}{'.' * (width - filled)}] {summary['percent']:5.1f}%  "
            f"{handled:,}/{summary['items_total']:,} items  {summary['items_per_second']:,.0f}/s  ETA {eta_text}  "
            f"{summary['status']}, {humanize.plural(summary['live_leases'], 'lease')}, "
            f"{summary['items_failed']:,} failed")


#: Back to the line's start and clear to its end: a redrawn progress line leaves nothing of a longer one.
REDRAW = "\r\x1b[K"

#: `jobs list`'s columns: (header, width, alignment), each row from a summary by `list_lines`.
LIST_COLUMNS = [("ID", 6, ">"), ("TYPE", 36, "<"), ("STATUS", 10, "<"), ("DONE", 7, ">"), ("ITEMS", 12, ">"),
                ("FAILED", 8, ">")]


def list_lines(summaries: list[dict[str, Any]]) -> list[str]:
    """`jobs list`: a header line, then one line per job."""
    def line(cells: list[str]) -> str:
        return "  ".join(f"{cell:{align}{width}}" for cell, (_, width, align) in zip(cells, LIST_COLUMNS, strict=True))

    rows = [[str(s["id"]), s["type"], s["status"], f"{s['percent']:.1f}%", f"{s['items_done']:,}",
             f"{s['items_failed']:,}"] for s in summaries]
    return [line([header for header, _, _ in LIST_COLUMNS]).rstrip(), *(line(row).rstrip() for row in rows)]


def knob_line(job: Job, names: Iterable[str]) -> str:
    """`max parallel 6, deadline 2026-12-03 09:00:00 UTC`: the knob's settings named, as the admin's message."""
    shown = {"max_parallel": f"max parallel {job.max_parallel or 'unlimited'}",
             "deadline": f"deadline {humanize.when(job.deadline) if job.deadline else 'none'}"}
    return ", ".join(shown[name] for name in names)


def ended_line(summary: dict[str, Any]) -> str:
    """The summary line a followed job ends with: its outcome, its items and why it failed, if it did."""
    handled = summary["items_done"] + summary["items_failed"] + summary["items_skipped"]
    text = (f"job {summary['id']} {summary['status']}: {handled:,}/{summary['items_total']:,} items handled, "
            f"{summary['items_failed']:,} failed")
    return text + (f" \u2014 {summary['error']}" if summary["error"] else "")


@contextmanager
def quiet_logs(verbosity: int) -> Iterator[None]:
    """Below `-v 2`, log records under WARNING (django-q2's "Enqueued …", the engine's INFO) are dropped while
    the command runs, so its output is only its own; logs go to stderr in any case (the root handler)."""
    if verbosity >= 2:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)
