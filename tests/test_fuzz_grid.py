"""Fuzzing the partition grid's inputs with Hypothesis, like tests/test_fuzz.py does the older surfaces: the job
page's and its live poll's `?pseq=` (a grid cell's partitions), alone and with the status filter and the page.

Properties: no 500 (a NUL is the project's 400); a value the filter takes lists only partitions inside it, any
other is no filter; nothing is written; the grid is always drawn."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from partitions.models import Job, JobEvent, Partition
from partitions.reads.grid import parse_seq_range
from tests.factories import make_job
from tests.test_admin_pages import SQL_BIG_PARTITIONS
from tests.test_fuzz import FUZZ, texts

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher", "admin_env")]

SEQ_HOSTILE = ["0", "0-0", "1-0", "3-3", "0-39", "39-40", "40", "-0", "0x10", "1_0", "+1", "1--2", "1-\n",
               "\u0663-\u0665", "1\x00", "99999999999-1", "9999999999", "1-9999999999", "07", "%", "a-b"]
seq_values = st.one_of(texts, st.sampled_from(SEQ_HOSTILE),
                       st.tuples(st.integers(-5, 50), st.integers(-5, 50)).map(lambda t: f"{t[0]}-{t[1]}"))
query = st.fixed_dictionaries({"pseq": seq_values}, optional={"pstatus": st.sampled_from(
    ["", "failed", "pending", "running", "succeeded", "nope"]), "pp": st.sampled_from(["1", "2", "-1", "x", ""])})


@pytest.fixture
def grid_job(db):
    job = make_job(status="running", type_name="tests.items_serial")
    with connection.cursor() as cursor:
        cursor.execute(SQL_BIG_PARTITIONS, {"job": job.pk, "n": 40})
    return job


def counts() -> tuple[int, ...]:
    return (Job.objects.count(), JobEvent.objects.count(), Partition.objects.count(),
            tuple(Partition.objects.order_by("pk").values_list("status", flat=True)))


@FUZZ
@given(params=query)
def test_any_seq_filter_gets_the_page_or_its_poll_and_never_a_500(grid_job, viewer, params):
    client = Client()
    client.force_login(viewer)
    before = counts()
    page = client.get(reverse("admin:partitions_job_change", args=[grid_job.pk]), params)
    live = client.get(reverse("admin:partitions_job_live", args=[grid_job.pk]), params)
    if any("\x00" in value for value in params.values()):  # opsapp.middleware.RejectNulBytes: one clear 400
        assert page.status_code == live.status_code == 400 and counts() == before
        return
    assert page.status_code == 200 and live.status_code == 200
    assert "data-partition-grid" in live.json()["sections"]["grid"]
    seqs = parse_seq_range(params["pseq"])
    assert page.context["seq_filter"] == seqs
    shown = [row["p"].seq for row in page.context["partition_rows"]]
    if seqs:
        assert all(seqs[0] <= seq <= seqs[1] for seq in shown)
    assert counts() == before
