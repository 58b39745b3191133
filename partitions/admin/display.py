"""Presentation of job stats shared by the job list, the job page and the progress JSON.

The server formats every text the pages show; the polling script only copies
the `fields` of the JSON into elements marked `data-job-id` + `data-job-field`,
so a number looks the same before and after a refresh.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from partitions.core import humanize
from partitions.core.humanize import duration as fmt_duration
from partitions.core.humanize import plural
from partitions.core.states import JobStatus, PartitionStatus
from partitions.reads.statistics import JobStats, ThroughputPoint
from partitions.wording.presenters import job_words, rate_text, skipped_text
from partitions.wording.presenters import rate as fmt_rate

DASH = humanize.DASH
PARTITION_ORDER = [PartitionStatus.RUNNING, PartitionStatus.PENDING, PartitionStatus.SUCCEEDED,
                   PartitionStatus.FAILED, PartitionStatus.CANCELLED]


def fmt_int(n: int | None) -> str:
    return DASH if n is None else f"{n:,}"


def fmt_eta(stats: JobStats) -> str:
    p = stats.projection
    if stats.job.is_terminal:
        return DASH
    if stats.job.status != JobStatus.RUNNING:
        return stats.job.status
    if p.held is not None:
        return "held"
    if p.eta_seconds is None:
        return "measuring" if p.rate_source == "measuring" else DASH
    return fmt_duration(p.eta_seconds)


def partitions_summary(stats: JobStats) -> str:
    counts = stats.progress.partitions
    ended = stats.job.is_terminal
    parts = [f"{counts[s]:,} {'being released' if ended and s == PartitionStatus.RUNNING else s}"
             for s in PARTITION_ORDER if counts.get(s)]
    return " \u00b7 ".join(parts) or "no partitions yet"


def failures_text(stats: JobStats) -> str:
    failed_partitions = stats.progress.partitions.get(PartitionStatus.FAILED, 0)
    failed_items = stats.progress.items_failed
    if not failed_partitions and not failed_items:
        return DASH
    return f"{plural(failed_partitions, 'partition')} \u00b7 {plural(failed_items, 'item')}"


def bar_widths(stats: JobStats) -> dict[str, float]:
    p = stats.progress
    if not p.items_total:
        return {"done": round(p.percent, 2), "failed": 0.0, "skipped": 0.0}
    total = max(p.items_total, stats.handled)
    return {name: round(100.0 * value / total, 2)
            for name, value in (("done", p.items_done), ("failed", p.items_failed), ("skipped", p.items_skipped))}


def items_text(stats: JobStats) -> str:
    p = stats.progress
    failed = f" \u00b7 {p.items_failed:,} failed" if p.items_failed else ""
    return f"{fmt_int(stats.handled)} / {fmt_int(p.items_total)} items{failed}"


def _who(actor: str) -> str:
    return humanize.actor(actor)


def outcome_text(stats: JobStats) -> str:
    """What ended the job, leading its header: what failed, or who cancelled it and why ("" otherwise)."""
    job = stats.job
    if job.status == JobStatus.FAILED:
        counts = ((stats.progress.partitions.get(PartitionStatus.FAILED, 0), "partition"),
                  (stats.progress.items_failed, "item"))
        what = " and ".join(plural(n, word) for n, word in counts if n)
        return f"Failed: {what} failed" if what else f"Failed: {job.error}" if job.error else "Failed"
    if job.status == JobStatus.CANCELLED:
        who = _who(stats.cancelled_by)
        reason = job.error.strip()
        same = reason.lower() in ("", f"cancelled by {who}".lower())
        return f"Cancelled by {who}" + ("" if same else f": {reason}")
    if job.status == JobStatus.SUCCEEDED and (skipped := skipped_text((job.stats or {}).get("verification"))):
        return f"Succeeded: {skipped}"
    return ""


def live_fields(stats: JobStats) -> dict[str, str]:
    p = stats.progress
    ended = stats.job.is_terminal
    words = job_words(stats)
    return {
        "outcome": outcome_text(stats),
        "throttle": words["throttle"],
        "status": stats.job.get_status_display(),
        "percent": f"{p.percent:.1f}%",
        "items": items_text(stats),
        "partitions": partitions_summary(stats),
        "rate": rate_text(stats),
        "eta": fmt_eta(stats),
        "duration": fmt_duration(stats.elapsed_seconds),
        "failures": failures_text(stats),
        "live_leases": f"{p.live_leases:,} being released" if ended and p.live_leases else fmt_int(
            0 if ended else p.live_leases),
        "projection": words["projection"],
        "workers_needed": words["advice"],
        "finished": humanize.when(stats.job.finished_at),
        "error": stats.job.error if stats.job.status == JobStatus.FAILED else "",
        "summary_title": "Summary of the previous attempt" if stats.retried and not ended else "Summary",
    }


def live_payload(stats: JobStats, *, controls: list[str] | None = None) -> dict:
    """One job's entry in the progress JSON; `controls` (the job page's poll): the controls to show now."""
    payload = {
        "status": stats.job.status,
        "active": not stats.job.is_terminal,
        "percent": round(stats.progress.percent, 2),
        "bar": bar_widths(stats),
        "fields": live_fields(stats),
        "figures": stats.figures(),
    }
    return payload if controls is None else {**payload, "controls": controls}


def live_text(job_id: int, field: str, text: str) -> SafeString:
    return format_html('<span data-job-id="{}" data-job-field="{}">{}</span>', job_id, field, text)


def status_badge(job_id: int, status: str, label: str) -> SafeString:
    return format_html('<span class="pj-badge pj-status-{}" data-job-id="{}" data-job-status>{}</span>',
                       status, job_id, label)


def progress_bar(stats: JobStats) -> SafeString:
    """Stacked bar (done / failed / skipped items) with its labels; updated in place by progress.js.

    The bar is an SVG whose rects carry their widths as attributes (no inline styles, CSP-friendly).
    """
    job_id, fields, widths = stats.job.pk, live_fields(stats), bar_widths(stats)
    x, rects = 0.0, []
    for name, width in widths.items():
        rects.append((name, f"{x:.2f}", f"{width:.2f}"))
        x += width
    segments = format_html_join("", '<rect class="pj-seg pj-seg-{}" data-seg="{}" x="{}" y="0" width="{}" '
                                    'height="10"/>', ((n, n, sx, w) for n, sx, w in rects))
    return format_html(
        '<div class="pj-progress" data-job-id="{}" data-job-active="{}">'
        '<svg class="pj-bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="progressbar" '
        'aria-valuemin="0" aria-valuemax="100" aria-valuenow="{}" aria-label="progress">{}</svg>'
        '<div class="pj-bar-label">{} \u00b7 {}</div><div class="pj-bar-parts">{}</div></div>',
        job_id, "0" if stats.job.is_terminal else "1", round(stats.progress.percent, 2), segments,
        live_text(job_id, "percent", fields["percent"]), live_text(job_id, "items", fields["items"]),
        live_text(job_id, "partitions", fields["partitions"]),
    )


def throughput_svg(points: Sequence[ThroughputPoint], *, width: int = 760, height: int = 180) -> SafeString:
    """Items/s (line and area, left axis) and partitions in flight (dashed, right axis) over time, as an inline
    SVG (no JavaScript, no external assets)."""
    if len(points) < 2:
        return format_html('<p class="pj-muted">{}</p>',
                           "No throughput samples yet (workers take one every few seconds while they run).")
    left, right, top, bottom = 64, 40, 12, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    t0, t1 = points[0].taken_at, points[-1].taken_at
    span = max((t1 - t0).total_seconds(), 1e-9)
    peak = max(p.rate for p in points) or 1.0
    peak_leases = max(p.live_leases for p in points) or 1

    def xy(p: ThroughputPoint, value: float, top_value: float) -> str:
        x = left + plot_w * (p.taken_at - t0).total_seconds() / span
        y = top + plot_h * (1 - value / top_value)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(p, p.rate, peak) for p in points)
    leases = " ".join(xy(p, p.live_leases, peak_leases) for p in points)
    base = top + plot_h
    area = f"{left:.1f},{base:.1f} {line} {left + plot_w:.1f},{base:.1f}"
    grid = format_html_join("", '<line x1="{}" x2="{}" y1="{}" y2="{}" class="pj-grid"/>'
                                '<text x="{}" y="{}" class="pj-axis" text-anchor="end">{}</text>'
                                '<text x="{}" y="{}" class="pj-axis">{}</text>',
                            ((left, left + plot_w, top + plot_h * f, top + plot_h * f, left - 6,
                              top + plot_h * f + 4, fmt_rate(peak * (1 - f)).replace(" items/s", ""),
                              left + plot_w + 6, top + plot_h * f + 4, f"{peak_leases * (1 - f):.0f}")
                             for f in (0.0, 0.5, 1.0)))
    return format_html(
        '<svg class="pj-chart" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{aria}">'
        "<title>{aria}</title>{grid}"
        '<polygon points="{area}" class="pj-chart-area"/><polyline points="{line}" class="pj-chart-line"/>'
        '<polyline points="{leases}" class="pj-chart-leases"/>'
        '<text x="{left}" y="{ty}" class="pj-axis">{start}</text>'
        '<text x="{right}" y="{ty}" class="pj-axis" text-anchor="end">{end}</text>'
        '<text x="{mid}" y="{ty}" class="pj-axis pj-legend-rate" text-anchor="end">— items/s</text>'
        '<text x="{mid2}" y="{ty}" class="pj-axis pj-legend-leases">- - partitions in flight</text></svg>',
        w=width, h=height, grid=grid, area=area, line=line, leases=leases, left=left, right=left + plot_w,
        ty=height - 6, start=humanize.when(t0), end=humanize.when(t1), mid=left + plot_w / 2 - 4,
        mid2=left + plot_w / 2 + 4,
        aria=f"Throughput over time, peak {fmt_rate(peak)}, at most {peak_leases} partitions in flight, "
             f"{len(points)} samples",
    )
