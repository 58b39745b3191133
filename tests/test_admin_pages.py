"""Admin pages as operators see them: job list, job page, progress JSON, workers, start page, read-only rows."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from partitions.models import Job, JobEvent, JobSample, Partition, SubJob
from partitions.reads.statistics import job_stats
from tests.factories import make_job, make_partition, make_subjob, move

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("admin_env")]

CHANGELIST = "admin:partitions_job_changelist"
PROGRESS = "admin:partitions_job_progress"


def job_page(job_id: int) -> str:
    return reverse("admin:partitions_job_change", args=[job_id])


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def job_with_progress(*, status: str = "running", done: int = 30, failed: int = 2, total: int = 100, **fields) -> Job:
    """A job with a succeeded, a failed, a running and a pending partition carrying these counters."""
    job = make_job(status=status, started_at=db_now() - timedelta(minutes=10), **fields)
    make_partition(job, seq=0, status="succeeded", estimated_items=done, done_items=done)
    make_partition(job, seq=1, status="failed", estimated_items=failed, failed_items=failed, last_error="boom")
    make_partition(job, seq=2, status="running", estimated_items=total // 4, lease_owner="host-a:12:abc")
    make_partition(job, seq=3, status="pending", estimated_items=total - done - failed - total // 4)
    return job


# Job list -----------------------------------------------------------------------------------------------------------


def test_job_list_shows_status_progress_throughput_eta_and_failures(viewer):
    job = job_with_progress(done=30, failed=2, total=100)
    JobSample.objects.create(job=job, taken_at=db_now() - timedelta(seconds=60), done_items=20, failed_items=0,
                             live_leases=1)
    html = client_for(viewer).get(reverse(CHANGELIST)).content.decode()

    assert f'class="pj-badge pj-status-running" data-job-id="{job.pk}"' in html
    assert 'aria-valuenow="32.0"' in html and "32.0%" in html and "32 / 100 items" in html
    assert "1 running \u00b7 1 pending \u00b7 1 succeeded \u00b7 1 failed" in html
    assert "0.2 items/s" in html  # (32 - 20) items over the 60 s since the window's first sample
    assert "5m 40s" in html  # 68 items left at 0.2/s
    assert "1 partition \u00b7 2 items" in html
    assert 'data-job-active="1"' in html
    assert "partitions/progress.js" in html and reverse(PROGRESS) in html


def test_job_list_falls_back_to_the_average_rate_without_samples(viewer):
    job = job_with_progress(status="succeeded", done=300, failed=0, total=300)
    Job.objects.filter(pk=job.pk).update(planned_at=db_now() - timedelta(seconds=100), finished_at=db_now())
    html = client_for(viewer).get(reverse(CHANGELIST)).content.decode()
    assert "3.0 items/s" in html
    assert 'data-job-active="0"' in html and 'data-job-active="1"' not in html


def test_job_list_reads_progress_with_a_fixed_number_of_queries_whatever_the_page_size(viewer):
    client = client_for(viewer)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse(CHANGELIST)).status_code == 200
        return len(ctx)

    job_with_progress()
    few = count()
    for _ in range(20):
        job_with_progress()
    many = count()
    print(f"\njob list queries: {few} with 1 job, {many} with 21 jobs")
    assert many == few
    assert many <= 14


def test_job_list_is_newest_first_filterable_and_searchable(viewer):
    old = make_job(status="succeeded", type_name="tests.bump_range")
    new = make_job(status="running", type_name="tests.items_serial", dedupe_key="invoices-2024-05")
    client = client_for(viewer)

    def ids(**params) -> list[int]:
        return [job.pk for job in client.get(reverse(CHANGELIST), params).context["cl"].result_list]

    assert ids() == [new.pk, old.pk]
    assert ids(status__exact="succeeded") == [old.pk]
    assert ids(type_name="tests.items_serial") == [new.pk]
    assert ids(q=str(old.pk)) == [old.pk]
    assert ids(q="items_serial") == [new.pk]
    assert ids(q="invoices-2024-05") == [new.pk]
    assert ids(**{"started_at__isnull": "False"}) == [new.pk, old.pk]


def test_job_list_offers_start_to_starters_only(operator, viewer):
    start = reverse("admin:partitions_job_start")
    assert start in client_for(operator).get(reverse(CHANGELIST)).content.decode()
    page = client_for(viewer).get(reverse(CHANGELIST)).content.decode()
    assert start not in page and reverse("admin:partitions_job_workers") in page


# Progress JSON ------------------------------------------------------------------------------------------------------


def test_progress_json_gives_each_jobs_progress_status_and_eta(viewer):
    running = job_with_progress()
    JobSample.objects.create(job=running, taken_at=db_now() - timedelta(seconds=60), done_items=20, failed_items=0,
                             live_leases=1)
    done = make_job(status="succeeded")
    response = client_for(viewer).get(reverse(PROGRESS), {"ids": f"{running.pk},{done.pk},999999,junk,{10**30}"})

    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    data = response.json()
    assert data["active"] is True
    assert set(data["jobs"]) == {str(running.pk), str(done.pk)}
    entry = data["jobs"][str(running.pk)]
    assert (entry["status"], entry["active"], entry["percent"]) == ("running", True, 32.0)
    assert entry["bar"] == {"done": 30.0, "failed": 2.0, "skipped": 0.0}
    assert entry["fields"]["eta"] == "5m 40s" and entry["fields"]["rate"] == "0.2 items/s"
    assert data["jobs"][str(done.pk)]["active"] is False


def test_progress_json_needs_view_permission(db):
    from tests.conftest import make_staff

    job = make_job()
    assert Client().get(reverse(PROGRESS), {"ids": job.pk}).status_code == 302
    assert client_for(make_staff("nobody")).get(reverse(PROGRESS), {"ids": job.pk}).status_code == 403


# Job page -----------------------------------------------------------------------------------------------------------


def test_job_page_shows_header_chart_partitions_failed_subjobs_timeline_and_params(viewer, operator):
    job = job_with_progress()
    Job.objects.filter(pk=job.pk).update(params={"partitions": 4, "sleep_ms": 5})
    now = db_now()
    for i, done in enumerate([0, 10, 25]):
        JobSample.objects.create(job=job, taken_at=now - timedelta(seconds=60 - 20 * i), done_items=done,
                                 failed_items=0, live_leases=2)
    items = Partition.objects.get(job=job, seq=1)
    make_subjob(items, seq=0, key="invoice-42", status="failed", error="SMTP 451")
    JobEvent.objects.create(job=job, type="job_paused", actor=f"user:{operator.username}", actor_user=operator)

    html = client_for(viewer).get(job_page(job.pk)).content.decode()

    assert f"Job #{job.pk}: tests.bump_range" in html
    assert 'class="pj-chart"' in html and "<polyline" in html
    assert "host-a:12:abc" in html and "boom" in html
    assert "invoice-42" in html and "SMTP 451" in html
    assert "job_paused" in html and f"<strong>{operator.username}</strong>" in html
    assert "<th>sleep_ms</th><td>5</td>" in html
    assert 'id="pj-actions"' not in html  # view-only staff see no buttons


def test_job_page_buttons_match_the_users_permissions_and_the_status(operator):
    job = job_with_progress(status="running")
    html = client_for(operator).get(job_page(job.pk)).content.decode()
    assert 'id="pj-actions"' in html

    def button(name: str) -> str:
        start = html.index(f'data-job-action="{name}"')
        return html[start: html.index(">", start)]

    assert "hidden" not in button("pause") and "hidden" not in button("cancel")
    assert "hidden" in button("resume")  # shown by the live refresh once the job is paused
    assert 'data-job-control="resume"' in button("resume")


def test_job_page_projects_the_finish_against_the_deadline(viewer):
    now = db_now()
    job = job_with_progress(done=1000, failed=0, total=10_000, deadline=now + timedelta(seconds=300), max_parallel=2)
    JobSample.objects.create(job=job, taken_at=now - timedelta(seconds=60), done_items=400, failed_items=0,
                             live_leases=2)
    projection = job_stats(job).projection
    assert projection.items_per_second == pytest.approx(10.0)  # 600 items in 60 s
    assert projection.per_worker_rate == pytest.approx(5.0)
    assert projection.eta_seconds == pytest.approx(900.0)
    assert projection.limited_by == "max_parallel"  # 2 in flight of max parallel 2
    assert projection.workers_needed == 6  # 9000 items in 300 s at 5/s per worker
    assert projection.meets_deadline is False

    html = client_for(viewer).get(job_page(job.pk)).content.decode()
    assert "10m 00s late; limited by max parallel (2)" in html
    assert "needs 6 parallel workers to meet the deadline at 5.0 items/s per worker (now 1 in flight, " \
           "max parallel 2)" in html


def test_job_page_partitions_filter_by_status_and_paginate(viewer):
    job = make_job(status="running")
    Partition.objects.bulk_create([
        Partition(job=job, seq=i, kind="modulo", modulus=120, remainder=i, status="pending") for i in range(120)])
    for partition in Partition.objects.filter(job=job, seq__in=[5, 6, 7]):
        move(partition, "failed")
    client = client_for(viewer)

    first = client.get(job_page(job.pk)).context
    assert [r["p"].seq for r in first["partition_rows"]] == list(range(50))
    assert first["partitions"].paginator.num_pages == 3
    third = client.get(job_page(job.pk), {"pp": 3}).context
    assert [r["p"].seq for r in third["partition_rows"]] == list(range(100, 120))
    failed = client.get(job_page(job.pk), {"pstatus": "failed"})
    assert [r["p"].seq for r in failed.context["partition_rows"]] == [5, 6, 7]
    assert "id % 120 = 5" in failed.content.decode()
    assert client.get(job_page(job.pk), {"pstatus": "bogus", "pp": "x"}).status_code == 200


def test_job_page_timeline_pages_by_id(viewer):
    job = make_job()
    made = list(JobEvent.objects.filter(job=job).order_by("-id").values_list("type", flat=True))
    JobEvent.objects.bulk_create([JobEvent(job=job, type=f"e{i}", actor="w") for i in range(120)])
    client = client_for(viewer)
    first = client.get(job_page(job.pk)).context
    assert [row["e"].type for row in first["events"]][:2] == ["e119", "e118"] and len(first["events"]) == 50
    second = client.get(job_page(job.pk), {"ebefore": first["events_older"]}).context
    assert second["events"][0]["e"].type == "e69"
    third = client.get(job_page(job.pk), {"ebefore": second["events_older"]}).context
    assert [row["e"].type for row in third["events"]] == [f"e{i}" for i in range(19, -1, -1)] + made
    assert third["events_older"] is None


@pytest.mark.parametrize("job_id", ["987654", str(10**30), "abc"])
def test_job_page_of_a_missing_job_redirects_with_a_message(job_id, viewer):
    url = reverse("admin:partitions_job_change", args=[0]).replace("/0/", f"/{job_id}/")
    response = client_for(viewer).get(url, follow=True)
    assert response.redirect_chain and "doesn\u2019t exist" in response.content.decode()
    assert client_for(viewer).get(job_page(1), {"ebefore": str(10**30), "pp": "-1"}).status_code in {200, 302}


# 10k partitions and 100k sub-jobs -------------------------------------------------------------------------------------

PARTITIONS, SUBJOBS_PER_PARTITION = 10_000, 10
#: Includes the projection's reads: the job's course events and the fleet's size (a cache read in a savepoint).
JOB_PAGE_MAX_QUERIES = 22
#: The job page's live poll: every section of the page, without the admin's chrome.
LIVE_MAX_QUERIES = 22

# Partitions by seq % 10: 0-5 succeeded, 6 failed, 7 running, 8-9 pending.
SQL_BIG_PARTITIONS = """
    INSERT INTO partitions_partition (job_id, seq, kind, scope, status, estimated_items, done_items, failed_items,
        skipped_items, attempts, max_attempts, available_at, lease_owner, lease_token, lease_expires_at,
        checkpointed_at, started_at, finished_at, last_error, last_traceback)
    SELECT %(job)s, g, 'items', '{}'::jsonb,
        CASE WHEN g %% 10 < 6 THEN 'succeeded' WHEN g %% 10 = 6 THEN 'failed' WHEN g %% 10 = 7 THEN 'running'
             ELSE 'pending' END,
        10, CASE WHEN g %% 10 < 6 THEN 10 WHEN g %% 10 = 6 THEN 9 ELSE 0 END, CASE WHEN g %% 10 = 6 THEN 1 ELSE 0 END,
        0, 1, 5, now(), CASE WHEN g %% 10 = 7 THEN 'host-' || (g %% 7) || ':1:abc' ELSE '' END,
        1, CASE WHEN g %% 10 = 7 THEN now() + interval '60 seconds' END, now(), now(),
        CASE WHEN g %% 10 <= 6 THEN now() END, CASE WHEN g %% 10 = 6 THEN 'boom ' || g ELSE '' END, ''
    FROM generate_series(0, %(n)s - 1) g
"""
SQL_BIG_SUBJOBS = """
    INSERT INTO partitions_subjob (job_id, partition_id, seq, key, payload, ordering_key, status, attempts, error,
        duration_ms, created_at, finished_at)
    SELECT p.job_id, p.id, p.seq * %(per)s + i, 'item-' || (p.seq * %(per)s + i), '{}'::jsonb, '',
        CASE WHEN p.status = 'succeeded' THEN 'succeeded' WHEN p.status = 'failed' AND i = 0 THEN 'failed'
             WHEN p.status = 'failed' THEN 'succeeded' ELSE 'pending' END,
        1, CASE WHEN p.status = 'failed' AND i = 0 THEN 'smtp timeout' ELSE '' END, 20, now(),
        CASE WHEN p.status IN ('succeeded', 'failed') THEN now() END
    FROM partitions_partition p, generate_series(0, %(per)s - 1) i WHERE p.job_id = %(job)s
"""
SQL_BIG_EVENTS = """
    INSERT INTO partitions_jobevent (job_id, partition_id, type, actor, data, created_at)
    SELECT p.job_id, p.id, 'partition_claimed', p.lease_owner, '{}'::jsonb, now() - interval '30 seconds'
    FROM partitions_partition p WHERE p.job_id = %(job)s
"""
SQL_BIG_SAMPLES = """
    INSERT INTO partitions_jobsample (job_id, taken_at, done_items, failed_items, live_leases)
    SELECT %(job)s, now() - (500 - g) * interval '10 seconds', g * 120, g, 1000 FROM generate_series(0, 499) g
"""


def test_job_page_stays_bounded_with_10k_partitions_and_100k_subjobs(viewer, django_assert_max_num_queries):
    job = make_job(status="running", type_name="tests.items_serial", started_at=db_now() - timedelta(hours=1))
    with connection.cursor() as cursor:
        params = {"job": job.pk, "n": PARTITIONS, "per": SUBJOBS_PER_PARTITION}
        for sql in (SQL_BIG_PARTITIONS, SQL_BIG_SUBJOBS, SQL_BIG_EVENTS, SQL_BIG_SAMPLES):
            cursor.execute(sql, params)
        cursor.execute("ANALYZE partitions_partition, partitions_subjob, partitions_jobevent, partitions_jobsample")
    assert SubJob.objects.filter(job=job).count() == PARTITIONS * SUBJOBS_PER_PARTITION
    client = client_for(viewer)
    client.get(job_page(job.pk))  # warm: session, permissions cache, template loading

    pages = {"first page": {}, "failed partitions, page 10": {"pstatus": "failed", "pp": 10},
             "running partitions": {"pstatus": "running"}}
    for label, params in pages.items():
        with django_assert_max_num_queries(JOB_PAGE_MAX_QUERIES) as captured:
            started = time.perf_counter()
            response = client.get(job_page(job.pk), params)
            elapsed = time.perf_counter() - started
        assert response.status_code == 200
        print(f"\njob page ({label}) with {PARTITIONS:,} partitions and {PARTITIONS * SUBJOBS_PER_PARTITION:,} "
              f"sub-jobs: {len(captured)} queries, {elapsed * 1000:.0f} ms")

    context = response.context
    assert context["ledger"].total == PARTITIONS // 10
    assert context["partitions_total"] == PARTITIONS
    assert len(context["partition_rows"]) == 50

    for label, params in pages.items():
        with django_assert_max_num_queries(LIVE_MAX_QUERIES) as captured:
            live = client.get(reverse("admin:partitions_job_live", args=[job.pk]), params)
        assert live.status_code == 200 and set(live.json()["sections"]) >= {"partitions", "failures", "timeline"}
        print(f"live poll of the job page ({label}): {len(captured)} queries")

    with django_assert_max_num_queries(11) as captured:  # 8, and the course events and the fleet's size
        started = time.perf_counter()
        data = client.get(reverse(PROGRESS), {"ids": job.pk}).json()
        elapsed = time.perf_counter() - started
    print(f"progress.json for that job: {len(captured)} queries, {elapsed * 1000:.0f} ms")
    assert data["jobs"][str(job.pk)]["fields"]["partitions"].startswith("1,000 running")


# Workers, other lists, read-only rows -------------------------------------------------------------------------------


def test_workers_page_lists_live_leases_and_workers_seen(viewer):
    job = make_job(status="running")
    live = make_partition(job, seq=0, status="running", lease_owner="host-b:77:def",
                          checkpointed_at=db_now() - timedelta(seconds=5))
    JobEvent.objects.create(job=job, partition=live, type="partition_claimed", actor="host-b:77:def")
    expired = make_partition(job, seq=1, status="running", lease_owner="host-dead:1:zzz")
    Partition.objects.filter(pk=expired.pk).update(lease_expires_at=db_now() - timedelta(seconds=1))

    response = client_for(viewer).get(reverse("admin:partitions_job_workers"))
    assert response.status_code == 200
    leases = response.context["leases"]
    assert [row["p"].pk for row in leases] == [live.pk]
    assert leases[0]["lease_age"] == "0s" and leases[0]["since_checkpoint"] == "5s"
    workers = {row["w"].worker: row["w"] for row in response.context["workers"]}
    assert workers["host-b:77:def"].live_leases == 1 and workers["host-b:77:def"].claims == 1
    assert "host-dead:1:zzz" not in workers
    assert "No cluster reported" in response.content.decode()


@pytest.mark.parametrize("model", ["job", "partition", "subjob", "jobevent"])
def test_engine_rows_cannot_be_added_changed_or_deleted_even_by_a_superuser(model, superuser):
    job = make_job(status="running")
    partition = make_partition(job)
    subjob = SubJob.objects.create(job=job, partition=partition, seq=0, key="k")
    event = JobEvent.objects.create(job=job, type="job_created", actor="test")
    obj = {"job": job, "partition": partition, "subjob": subjob, "jobevent": event}[model]
    client = client_for(superuser)

    assert client.get(reverse(f"admin:partitions_{model}_add")).status_code == 403
    assert client.post(reverse(f"admin:partitions_{model}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    changed = client.post(reverse(f"admin:partitions_{model}_change", args=[obj.pk]), {"status": "succeeded"})
    assert changed.status_code in {403, 405}
    page = client.get(reverse(f"admin:partitions_{model}_change", args=[obj.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert Job.objects.get(pk=job.pk).status == "running"
    assert Partition.objects.get(pk=partition.pk).status == "pending"


def test_partition_and_subjob_lists_filter_by_status_and_job(viewer):
    one, two = make_job(), make_job()
    p1 = make_partition(one, status="failed")
    make_partition(two, status="pending")
    make_subjob(p1, seq=0, key="a", status="failed")
    make_subjob(p1, seq=1, key="b", status="succeeded")
    client = client_for(viewer)

    def listed(model: str, **params) -> list:
        response = client.get(reverse(f"admin:partitions_{model}_changelist"), params)
        assert response.status_code == 200
        return list(response.context["cl"].result_list)

    assert [p.pk for p in listed("partition", job=one.pk)] == [p1.pk]
    assert [p.job_id for p in listed("partition", status__exact="pending")] == [two.pk]
    assert [s.key for s in listed("subjob", job=one.pk, status__exact="failed")] == ["a"]
    events = listed("jobevent", job=one.pk)
    assert events and {e.job_id for e in events} == {one.pk}


def test_start_page_lists_registered_types_and_renders_the_params_form_as_is(operator):
    client = client_for(operator)
    chooser = client.get(reverse("admin:partitions_job_start")).content.decode()
    assert "tests.items_serial" in chooser and "tests.bump_range" in chooser

    page = client.get(reverse("admin:partitions_job_start"), {"type": "tests.items_serial"}).content.decode()
    for name in ("count", "chunk_size", "keys", "fail_every"):
        assert f'name="params-{name}"' in page
    assert "ordering keys (0 = none)" in page  # the form's own help text
    assert 'name="max_parallel"' in page and 'name="deadline"' in page
    assert 'value="Preview plan"' in page and 'value="Run now"' in page
    assert 'value="Schedule"' not in page  # scheduling needs add_jobschedule, which start_job does not give
