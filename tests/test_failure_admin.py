"""The failure ledger in the admin: the job page's Failures section, the keyset item list, the CSV download and the
per-reason actions (permission, POST + CSRF, confirm, audit with the user, one clear error on bad input)."""

from __future__ import annotations

import csv

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from partitions.models import Job, JobEvent, SubJob
from partitions.reads import ledger
from tests.conftest import VIEW_PERMS, make_staff
from tests.support import planned_job, run_to_end
from tests.test_failure_ledger import NO_ADDRESS, NO_TAX, OPTED_OUT
from tests.test_fuzz import FUZZ, texts

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("admin_env")]


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def url(name: str, job: Job, *args) -> str:
    return reverse(f"admin:partitions_job_{name}", args=[job.pk, *args])


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def ledger_state(job: Job) -> list:
    return list(SubJob.objects.filter(job=job).values_list("id", "status", "note", "reason", "partition_id")
                .order_by("id"))


@pytest.fixture
def failed_job(no_dispatcher):
    return run_to_end(planned_job("tests.two_failures", {"count": 50, "chunk_size": 10}))


def test_the_job_page_groups_failures_by_reason_with_filters_csv_and_operator_buttons(failed_job, operator):
    page = client_for(operator).get(reverse("admin:partitions_job_change", args=[failed_job.pk]))
    html = page.content.decode()
    assert "Failures (15 items, 3 reasons)" in html
    assert page.context["ledger"].groups[0].reason in {NO_ADDRESS, NO_TAX, OPTED_OUT}
    for reason in (NO_ADDRESS, NO_TAX, OPTED_OUT):
        assert f'data-reason="{reason.replace("<", "&lt;").replace(">", "&gt;")}"' in html
    assert 'name="reason"' in html and url("failures_csv", failed_job) in html
    assert html.count("Retry these items") == 3 and html.count("Skip with note") == 2  # nothing failed to skip
    live = client_for(operator).get(url("live", failed_job)).json()["sections"]["failures"]
    assert "Failures (15 items, 3 reasons)" in live


def test_a_viewer_sees_the_groups_but_no_actions_and_may_not_act(failed_job):
    viewer = make_staff("viewer", *VIEW_PERMS)
    client = client_for(viewer)
    html = client.get(reverse("admin:partitions_job_change", args=[failed_job.pk])).content.decode()
    assert "Failures (15 items" in html and "Retry these items" not in html and "Skip with note" not in html
    before = ledger_state(failed_job)
    assert client.get(url("failures_action", failed_job, "retry"), {"reason": NO_TAX}).status_code == 403
    assert client.post(url("failures_action", failed_job, "skip"),
                       {"reason": NO_TAX, "note": "n", "confirm": "yes"}).status_code == 403
    assert ledger_state(failed_job) == before
    no_items = client_for(make_staff("no-items", "view_job"))
    assert no_items.get(url("failures_csv", failed_job)).status_code == 403
    assert no_items.get(url("failures", failed_job)).status_code == 403


def test_the_item_list_pages_by_keyset_and_filters_by_reason_and_status(failed_job, operator, monkeypatch):
    monkeypatch.setattr(ledger, "ITEMS_PER_PAGE", 4)
    client = client_for(operator)
    keys, next_url = [], url("failures", failed_job)
    while next_url:
        page = client.get(next_url)
        assert page.status_code == 200
        keys += [row["i"].key for row in page.context["items"]]
        next_url = page.context["next_url"]
    assert sorted(keys) == sorted(SubJob.objects.filter(job=failed_job, status__in=["failed", "skipped"])
                                  .values_list("key", flat=True))
    tax = client.get(url("failures", failed_job), {"reason": NO_TAX, "status": "failed"})
    assert [row["i"].key for row in tax.context["items"]] == ["item-2", "item-12", "item-22", "item-32"]
    skipped = client.get(url("failures", failed_job), {"status": "skipped"})
    assert {row["i"].status for row in skipped.context["items"]} == {"skipped"}
    unknown = client.get(url("failures", failed_job), {"reason": "nope"})
    assert unknown.status_code == 200 and not unknown.context["items"]
    assert "has no failed or skipped items with reason 'nope'" in unknown.context["error"]


def test_the_csv_download_streams_one_row_per_item_with_its_reason(failed_job, operator):
    response = client_for(operator).get(url("failures_csv", failed_job))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert f"job-{failed_job.pk}-failures.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(b"".join(response.streaming_content).decode().splitlines()))
    assert len(rows) == 15 and {r["reason"] for r in rows} == {NO_ADDRESS, NO_TAX, OPTED_OUT}
    one = client_for(operator).get(url("failures_csv", failed_job), {"reason": OPTED_OUT})
    assert {r["status"] for r in csv.DictReader(b"".join(one.streaming_content).decode().splitlines())} == {"skipped"}
    bad = client_for(operator).get(url("failures_csv", failed_job), {"reason": "nope"})
    assert bad.status_code == 302 and "has no failed or skipped items" in messages_of(bad)[0]


def test_retry_these_items_confirms_then_reruns_that_reason_only_and_is_audited(failed_job, operator):
    client = client_for(operator, enforce_csrf_checks=True)
    confirm = client.get(url("failures_action", failed_job, "retry"), {"reason": NO_ADDRESS})
    assert confirm.status_code == 200 and "This touches 5 items." in confirm.content.decode()
    before = ledger_state(failed_job)
    assert client.post(url("failures_action", failed_job, "retry"),
                       {"reason": NO_ADDRESS, "confirm": "yes"}).status_code == 403  # no CSRF token
    assert client.get(url("failures_action", failed_job, "retry"),
                      {"reason": NO_ADDRESS, "confirm": "yes"}).status_code == 200  # GET only asks
    assert ledger_state(failed_job) == before
    token = str(confirm.context["csrf_token"])
    done = client.post(url("failures_action", failed_job, "retry"),
                       {"reason": NO_ADDRESS, "confirm": "yes", "csrfmiddlewaretoken": token})
    assert done.status_code == 302
    assert messages_of(done) == [f"Job #{failed_job.pk}: 5 items of “{NO_ADDRESS}” queued again."]
    assert set(SubJob.objects.filter(job=failed_job, status="pending").values_list("key", flat=True)) == {
        f"item-{i}" for i in (1, 11, 21, 31, 41)}
    audit = JobEvent.objects.get(job=failed_job, type="subjobs_retried")
    assert (audit.actor_user, audit.data["reason"]) == (operator, NO_ADDRESS)
    assert Job.objects.get(pk=failed_job.pk).status == "running"


def test_the_confirmation_counts_a_reason_beyond_the_groups_the_page_shows(failed_job, operator, monkeypatch):
    groups = ledger.job_failure_groups(failed_job.pk).groups
    smallest = groups[-1]
    monkeypatch.setitem(ledger.job_failure_groups.__kwdefaults__, "limit", 1)  # the page shows only the largest
    assert [g.reason for g in ledger.job_failure_groups(failed_job.pk).groups] != [smallest.reason]
    confirm = client_for(operator).get(url("failures_action", failed_job, "retry"), {"reason": smallest.reason})
    assert confirm.status_code == 200
    assert f"This touches {smallest.count} item{'' if smallest.count == 1 else 's'}." in confirm.content.decode()


def test_skip_with_note_needs_a_note_and_is_audited_with_the_user(failed_job, operator):
    client = client_for(operator)
    confirm = client.get(url("failures_action", failed_job, "skip"), {"reason": NO_TAX})
    assert 'name="note"' in confirm.content.decode() and "required" in confirm.content.decode()
    before = ledger_state(failed_job)
    empty = client.post(url("failures_action", failed_job, "skip"), {"reason": NO_TAX, "note": " ", "confirm": "yes"})
    assert messages_of(empty) == [f"Cannot skip the items of one reason of job #{failed_job.pk}: "
                                  "note: Say why these items are skipped."]
    assert ledger_state(failed_job) == before
    done = client.post(url("failures_action", failed_job, "skip"),
                       {"reason": NO_TAX, "note": "no tax in 2026", "confirm": "yes"})
    assert messages_of(done)[-1] == f"Job #{failed_job.pk}: 5 failed items of “{NO_TAX}” skipped."
    audit = JobEvent.objects.get(job=failed_job, type="subjobs_skipped")
    assert (audit.actor_user, audit.data["note"]) == (operator, "no tax in 2026")


def test_a_reason_action_in_a_status_that_does_not_allow_it_is_one_clear_error(failed_job, operator):
    Job.objects.filter(pk=failed_job.pk).update(status="cancelled")
    before = ledger_state(failed_job)
    response = client_for(operator).post(url("failures_action", failed_job, "retry"),
                                         {"reason": NO_TAX, "confirm": "yes"})
    assert messages_of(response) == [f"Cannot retry the items of one reason of job #{failed_job.pk}: it has finished "
                                     "(cancelled); a cancelled job cannot be retried: re-run it instead."]
    assert ledger_state(failed_job) == before
    assert client_for(operator).get(url("failures_action", failed_job, "nope"), {"reason": NO_TAX}).status_code == 404


@FUZZ
@given(action=st.sampled_from(["retry", "skip"]), method=st.sampled_from(["get", "post"]),
       reason=st.one_of(texts, st.sampled_from([NO_ADDRESS, NO_TAX, OPTED_OUT])), note=texts,
       status=texts, after=texts)
def test_fuzz_the_failure_forms_never_500_and_write_only_a_confirmed_action_on_a_real_reason(
        failed_job, operator, action, method, reason, note, status, after):
    from django.db import transaction

    client = client_for(operator)
    before, events = ledger_state(failed_job), JobEvent.objects.count()
    for path, params in ((url("failures", failed_job), {"reason": reason, "status": status, "after": after}),
                         (url("failures_csv", failed_job), {"reason": reason, "status": status})):
        response = client.get(path, params)
        assert response.status_code in (200, 302, 400), (path, params)
    with transaction.atomic():
        data = {"reason": reason, "note": note, "confirm": "yes"}
        response = getattr(client, method)(url("failures_action", failed_job, action), data)
        assert response.status_code in (200, 302, 400)
        changed = [was for was, now in zip(before, ledger_state(failed_job), strict=True) if now != was]
        acted = method == "post" and reason in {NO_ADDRESS, NO_TAX, OPTED_OUT} and (
            action == "retry" or (note.replace("\x00", "").strip() and len(note) <= 1000 and reason != OPTED_OUT))
        assert bool(changed) == bool(acted), (action, method, reason, note)
        assert {row[3] for row in changed} <= {reason}
        assert (JobEvent.objects.count() > events) == bool(acted)
        transaction.set_rollback(True)
