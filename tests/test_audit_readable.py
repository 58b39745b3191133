"""The audit list (the job events list) and `jobs events` read as words: changes as "max parallel 1 → 4",
throttle changes as what changed between before and after, actors by name, one date-time format."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from partitions.core import humanize
from partitions.models import JobEvent
from partitions.operations import knob, services
from tests.factories import make_job
from tests.support import cli

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("admin_env")]


def test_before_after_dicts_show_only_what_changed():
    data = {"before": {"rate_limit": None, "pause_ms": 0, "ignore_health": False},
            "after": {"rate_limit": 5.0, "pause_ms": 0, "ignore_health": True}}
    assert humanize.changes(data) == "rate limit none \u2192 5 \u00b7 ignore health no \u2192 yes"
    assert humanize.changes({"before": {"pause_ms": 10}, "after": {"pause_ms": 10}}) == "no change"
    assert humanize.changes({"max_parallel": [1, 4]}) == "max parallel 1 \u2192 4"


def test_the_audit_list_shows_changes_and_users_in_words_not_python_reprs(operator):
    job = make_job(status="running", max_parallel=1)
    knob.job_set(job.pk, actor=operator, max_parallel=4)
    services.job_throttle(job.pk, actor=operator, rate_limit=5)
    client = Client()
    client.force_login(operator)
    html = client.get(reverse("admin:partitions_jobevent_changelist")).content.decode()
    assert "max parallel 1 \u2192 4" in html and "rate limit none \u2192 5" in html
    assert "{&#x27;" not in html and "user:" not in html
    assert JobEvent.objects.filter(actor_user=operator).count() == 2


def test_jobs_events_prints_the_same_words():
    job = make_job(status="running", max_parallel=1)
    knob.job_set(job.pk, actor="cli", max_parallel=4)
    code, out, _ = cli("events", str(job.pk))
    assert code == 0 and out.rstrip().endswith("max parallel 1 \u2192 4")
    assert " UTC  job_settings_changed" in out
