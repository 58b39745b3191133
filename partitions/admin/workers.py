"""The workers page: live leases, django-q2 clusters that reported lately, and workers seen from our tables."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.template.response import TemplateResponse

from partitions.admin import display
from partitions.core import humanize
from partitions.models import Partition
from partitions.permissions import Action, may
from partitions.reads.pages import leases_live, workers_recent
from partitions.tasks import clusters_recent

LEASES_SHOWN = 500


def _age(later, earlier) -> str:
    return "" if later is None or earlier is None else display.fmt_duration((later - earlier).total_seconds())


def workers_view(model_admin, request):
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    if not (model_admin.has_view_permission(request) and may(request.user, Action.VIEW_WORKERS)):
        raise PermissionDenied
    leases = [
        {"p": p, "job": p.job, "bounds": p.bounds_display, "lease_age": _age(p.db_now, p.lease_claimed_at),
         "since_checkpoint": _age(p.db_now, p.checkpointed_at or p.lease_claimed_at),
         "expires_in": _age(p.lease_expires_at, p.db_now)}
        for p in leases_live(limit=LEASES_SHOWN)
    ]
    clusters = clusters_recent()
    for cluster in clusters:
        cluster["seen"] = humanize.when(cluster["timestamp"])
        cluster["started"] = humanize.when(cluster["tob"])
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "partition_opts": Partition._meta,
        "title": "Workers",
        "leases": leases,
        "leases_capped": len(leases) >= LEASES_SHOWN,
        "clusters": clusters,
        "workers": [{"w": w, "last_seen": humanize.when(w.last_seen)} for w in workers_recent()],
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/partitions/job/workers.html", context)
