"""Content-Security-Policy on the admin pages: a strict header, and markup that lives within it.

The browser test (test_browser.py) proves Chromium runs the job page under the policy; these tests
check every page we render through the test client: each script and stylesheet carries the request's
nonce, and nothing relies on what the policy forbids (inline style attributes, inline event handlers).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from partitions.models import JobEvent
from tests.factories import make_job, make_partition, make_subjob

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("admin_env")]


class Tags(HTMLParser):
    """Every start tag of a page as (tag, attributes)."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def nonced(self) -> list[tuple[str, dict[str, str | None]]]:
        """Elements the policy lets run or style only with the nonce: scripts (not JSON data), styles, stylesheets."""
        return [(tag, attrs) for tag, attrs in self.tags
                if (tag == "script" and attrs.get("type") != "application/json") or tag == "style"
                or (tag == "link" and attrs.get("rel") == "stylesheet")]


def directives(header: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def header_nonce(response) -> str:
    found = re.findall(r"'nonce-([^']+)'", directives(response.headers["Content-Security-Policy"])["script-src"][1])
    assert found, response.headers["Content-Security-Policy"]
    return found[0]


def running_job_with_rows():
    job = make_job(status="running")
    partition = make_partition(job, seq=0, status="running", estimated_items=10, lease_owner="host-a:1:x")
    make_subjob(partition, seq=0, key="invoice-1", status="failed", error="smtp down")
    JobEvent.objects.create(job=job, partition=partition, type="partition_claimed", actor="host-a:1:x")
    return job


def test_job_page_sends_a_strict_policy_and_its_scripts_carry_the_nonce(superuser):
    job = running_job_with_rows()
    client = Client()
    client.force_login(superuser)
    url = reverse("admin:partitions_job_change", args=[job.pk])
    response = client.get(url)

    policy = directives(response.headers["Content-Security-Policy"])
    nonce = header_nonce(response)
    assert policy["script-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert policy["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert policy["default-src"] == ["'self'"]
    for directive in ("object-src", "base-uri", "frame-ancestors"):
        assert policy[directive] == ["'none'"]
    assert policy["form-action"] == ["'self'"]

    scripts = [attrs for tag, attrs in Tags(response.content.decode()).tags if tag == "script"]
    assert any(attrs.get("src", "").endswith("partitions/progress.js") for attrs in scripts)
    assert [attrs.get("nonce") for attrs in scripts] == [nonce] * len(scripts)
    assert header_nonce(client.get(url)) != nonce, "a fresh nonce per response"


PAGES = {
    "job list": lambda job: reverse("admin:partitions_job_changelist"),
    "job page": lambda job: reverse("admin:partitions_job_change", args=[job.pk]),
    "start page": lambda job: reverse("admin:partitions_job_start") + "?type=billing.send_invoices",
    "workers": lambda job: reverse("admin:partitions_job_workers"),
    "partition list": lambda job: reverse("admin:partitions_partition_changelist"),
    "partition page": lambda job: reverse("admin:partitions_partition_change", args=[job.partitions.get().pk]),
    "sub-job list": lambda job: reverse("admin:partitions_subjob_changelist"),
    "event list": lambda job: reverse("admin:partitions_jobevent_changelist"),
    "action confirmation": lambda job: reverse("admin:partitions_job_action", args=[job.pk, "pause"]),
}


@pytest.mark.parametrize("page", list(PAGES))
def test_every_admin_page_nonces_its_scripts_and_styles_and_has_no_inline_style_or_handler(page, superuser):
    job = running_job_with_rows()
    client = Client()
    client.force_login(superuser)
    response = client.get(PAGES[page](job))
    assert response.status_code == 200

    nonce = header_nonce(response)
    tags = Tags(response.content.decode())
    assert tags.nonced(), "the admin always loads stylesheets and scripts"
    assert [(tag, attrs.get("nonce")) for tag, attrs in tags.nonced()] == [(tag, nonce) for tag, _ in tags.nonced()]
    inline = [(tag, name) for tag, attrs in tags.tags for name in attrs if name == "style" or name.startswith("on")]
    assert inline == [], "blocked by style-src / script-src without 'unsafe-inline'"
