"""`/metrics`: Prometheus text for dashboards and alerts (jobs, partitions, leases, queue)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from partitions import tasks
from partitions.claiming import lapsed_lease_q, live_lease_q
from partitions.models import Job, Partition
from partitions.states import JobStatus

ACTIVE = [JobStatus.PLANNING, JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.FINALIZING]


def _utf8(text: str) -> bytes:
    # compare_digest refuses non-ASCII str, and a header may hold any str (even a lone surrogate).
    return text.encode("utf-8", "surrogatepass")


def _allowed(request: HttpRequest) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(_utf8(given), _utf8(token))
    return request.user.is_authenticated and request.user.is_staff


def _lines(name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        out.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")
    return out


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Gauges read with a handful of grouped queries (active jobs only for partition-level figures)."""
    if not _allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    jobs = Job.objects.values_list("status").annotate(n=Count("id")).order_by()
    active = Partition.objects.filter(job__status__in=ACTIVE)
    partitions = active.values_list("status").annotate(n=Count("id")).order_by()
    items = active.values_list("job__type_name").annotate(
        total=Sum("estimated_items"), done=Sum("done_items"), failed=Sum("failed_items")).order_by()
    live = active.filter(live_lease_q()).count()
    expired = active.filter(lapsed_lease_q()).count()
    body = [
        *_lines("partitions_jobs", "Jobs by status.", [({"status": s}, n) for s, n in jobs]),
        *_lines("partitions_active_partitions", "Partitions of active jobs by status.",
                [({"status": s}, n) for s, n in partitions]),
        *_lines("partitions_active_items_total", "Estimated items of active jobs by type.",
                [({"type": t}, total or 0) for t, total, _, _ in items]),
        *_lines("partitions_active_items_done", "Items done in active jobs by type.",
                [({"type": t}, done or 0) for t, _, done, _ in items]),
        *_lines("partitions_active_items_failed", "Items failed in active jobs by type.",
                [({"type": t}, failed or 0) for t, _, _, failed in items]),
        *_lines("partitions_live_leases", "Partitions held by a live lease.", [({}, live)]),
        *_lines("partitions_expired_leases", "Running partitions whose lease expired (reaped by tick).",
                [({}, expired)]),
        *_lines("django_q_queued_tasks", "Tasks waiting in the django-q2 ORM broker.", [({}, tasks.queued_tasks())]),
    ]
    return HttpResponse("\n".join(body) + "\n", content_type="text/plain; version=0.0.4")
