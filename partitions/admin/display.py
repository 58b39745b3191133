"""Presentation of job stats shared by the job list, the job page and the progress JSON.

The server formats every text the pages show; the polling script only copies
the `fields` of the JSON into elements marked `data-job-id` + `data-job-field`,
so a number looks the same before and after a refresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from partitions.selectors import JobStats, ThroughputPoint
from partitions.states import JobStatus, PartitionStatus

DASH = "\u2014"
PARTITION_ORDER = [PartitionStatus.RUNNING, PartitionStatus.PENDING, PartitionStatus.SUCCEEDED,
                   PartitionStatus.FAILED, PartitionStatus.CANCELLED]


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def fmt_int(n: int | None) -> str:
    return DASH if n is None else f"{n:,}"


def fmt_duration(seconds: float | None) -> str:
    """`2d 3h`, `1h 02m`, `3m 20s`, `12s`."""
    if seconds is None:
        return DASH
    s = round(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def fmt_rate(rate: float | None) -> str:
    if rate is None:
        return DASH
    return f"{rate:,.0f} items/s" if rate >= 100 else f"{rate:.1f} items/s"


def fmt_dt(dt: datetime | None) -> str:
    return DASH if dt is None else date_format(timezone.localtime(dt), "Y-m-d H:i:s")


def fmt_eta(stats: JobStats) -> str:
    status = stats.job.status
    if stats.job.is_terminal:
        return DASH
    if status != JobStatus.RUNNING:
        return status
    eta = stats.eta_seconds
    return DASH if eta is None else fmt_duration(eta)


def partitions_summary(stats: JobStats) -> str:
    counts = stats.progress.partitions
    parts = [f"{counts[s]:,} {s}" for s in PARTITION_ORDER if counts.get(s)]
    return " \u00b7 ".join(parts) or "no partitions yet"


def failures_text(stats: JobStats) -> str:
    failed_partitions = stats.progress.partitions.get(PartitionStatus.FAILED, 0)
    failed_items = stats.progress.items_failed
    if not failed_partitions and not failed_items:
        return DASH
    return f"{plural(failed_partitions, 'partition')} \u00b7 {plural(failed_items, 'item')}"


def projection_text(stats: JobStats) -> str:
    """Projected finish vs the deadline, and the workers needed to meet it."""
    if stats.job.deadline is None:
        return ""
    deadline = fmt_dt(stats.job.deadline)
    if stats.job.is_terminal:
        finished = stats.job.finished_at
        verdict = "met" if finished and finished <= stats.job.deadline else "missed"
        return f"deadline {deadline}: {verdict}"
    left = stats.deadline_seconds_left
    if left is not None and left <= 0:
        return f"deadline {deadline} has passed"
    finish = stats.projected_finish
    if finish is None and stats.job.status != JobStatus.RUNNING:
        return f"deadline {deadline} (in {fmt_duration(left)}); no projection while {stats.job.status}"
    if finish is None:
        return f"deadline {deadline} (in {fmt_duration(left)}); no projection until throughput is measured"
    late = (finish - stats.job.deadline).total_seconds()
    verdict = "on time" if late <= 0 else f"{fmt_duration(late)} late"
    return f"projected finish {fmt_dt(finish)} vs deadline {deadline}: {verdict}"


def workers_needed_text(stats: JobStats) -> str:
    needed, per_worker = stats.workers_needed, stats.per_worker_rate
    if needed is None or per_worker is None:
        return ""
    cap = stats.job.max_parallel
    capped = f" (max parallel is {cap})" if cap and needed > cap else ""
    return (f"{needed} parallel workers needed to meet the deadline at {fmt_rate(per_worker)} per worker"
            f" (now {stats.progress.live_leases} in flight){capped}")


def bar_widths(stats: JobStats) -> dict[str, float]:
    p = stats.progress
    if not p.items_total:
        return {"done": round(p.percent, 2), "failed": 0.0, "skipped": 0.0}
    total = max(p.items_total, stats.handled)
    return {name: round(100.0 * value / total, 2)
            for name, value in (("done", p.items_done), ("failed", p.items_failed), ("skipped", p.items_skipped))}


def throttle_text(stats: JobStats) -> str:
    """The job's throttle as operators read it: rate against its limit, pause, health ("" when none)."""
    t = stats.throttle()
    parts = []
    if t["rate_limit"]:
        parts.append(f"{fmt_rate(stats.rate)} of {fmt_rate(t['rate_limit'])} allowed")
    if t["pause_ms"]:
        parts.append(f"{t['pause_ms']} ms pause after each batch")
    if t["held"]:
        parts.append(f"held by a health check since {fmt_dt(t['throttled_since'])}: {t['throttled_reason']}")
    if t["ignore_health"]:
        parts.append("health checks ignored")
    return "; ".join(parts)


def live_fields(stats: JobStats) -> dict[str, str]:
    p = stats.progress
    return {
        "throttle": throttle_text(stats),
        "status": stats.job.get_status_display(),
        "percent": f"{p.percent:.1f}%",
        "items": f"{fmt_int(stats.handled)} / {fmt_int(p.items_total)} items",
        "partitions": partitions_summary(stats),
        "rate": fmt_rate(stats.rate),
        "eta": fmt_eta(stats),
        "duration": fmt_duration(stats.elapsed_seconds),
        "failures": failures_text(stats),
        "live_leases": fmt_int(p.live_leases),
        "projection": projection_text(stats),
        "workers_needed": workers_needed_text(stats),
        "finished": fmt_dt(stats.job.finished_at),
        "error": stats.job.error,
    }


def live_payload(stats: JobStats) -> dict:
    """One job's entry in the progress JSON."""
    return {
        "status": stats.job.status,
        "active": not stats.job.is_terminal,
        "percent": round(stats.progress.percent, 2),
        "bar": bar_widths(stats),
        "fields": live_fields(stats),
        "summary": stats.job.stats.get("summary") if isinstance(stats.job.stats, dict) else None,
    }


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
        ty=height - 6, start=fmt_dt(t0), end=fmt_dt(t1), mid=left + plot_w / 2 - 4, mid2=left + plot_w / 2 + 4,
        aria=f"Throughput over time, peak {fmt_rate(peak)}, at most {peak_leases} partitions in flight, "
             f"{len(points)} samples",
    )
