"""What an operator reads on the console: numbers, dates in the operator's zone, summaries and event data as
words, actors by name, the knob's current values and its explicit deadline choice, deadline inputs that take
`+30m`, validation messages in the field's unit, empty states that say what to do, confirm pages with counts."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from partitions.core import humanize
from partitions.models import Job, JobEvent
from tests.conftest import make_staff
from tests.factories import make_job, make_partition, make_subjob
from tests.test_fuzz import FUZZ, texts

pytestmark = pytest.mark.usefixtures("admin_env")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(user, job: Job) -> str:
    return client_for(user).get(reverse("admin:partitions_job_change", args=[job.pk])).content.decode()


# The formatting rules ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "text"), [
    (51.76620223770319, "51.8"), (1234567, "1,234,567"), (12345.6, "12,346"), (2.0, "2"), (0.5, "0.5"),
    (0.0002777777777777778, "0.000278"), (0, "0"), (True, "yes"), (-3, "-3")])
def test_numbers_have_separators_and_three_significant_digits_below_a_hundred(value, text):
    assert humanize.number(value) == text


def test_a_key_gives_its_unit_and_the_label_drops_it():
    assert humanize.rows({"avg_ms": 51.766, "took_seconds": 134, "count": 12000}) == [
        ("avg", "51.8 ms"), ("took", "2m 14s"), ("count", "12,000")]


def test_a_before_after_pair_reads_as_an_arrow_and_other_data_as_label_and_value(settings):
    settings.TIME_ZONE = "UTC"
    with timezone.override("UTC"):
        text = humanize.changes({"max_parallel": [1, 4], "deadline": [None, "2026-12-02T10:17:00+00:00"],
                                 "reason": "too slow"})
    assert text == "max parallel 1 → 4 · deadline none → 2026-12-02 10:17:00 UTC · reason: too slow"
    assert "{" not in humanize.changes({"nested": {"a": [1, 2, 3]}})


def test_dates_are_in_the_operators_zone_with_its_name():
    moment = datetime(2026, 12, 2, 10, 16, 49, tzinfo=UTC)
    with timezone.override("Europe/Paris"):
        assert humanize.when(moment) == "2026-12-02 11:16:49 CET"
        assert humanize.zone_name() == "Europe/Paris"
    with timezone.override("UTC"):
        assert humanize.when(moment) == "2026-12-02 10:16:49 UTC"
    assert humanize.when(None) == humanize.DASH


@pytest.mark.django_db
def test_an_actor_is_the_users_full_name_else_the_username_else_the_process(operator):
    assert humanize.actor("user:operator", operator) == "operator"
    operator.first_name, operator.last_name = "Ada", "Lovelace"
    assert humanize.actor("user:operator", operator) == "Ada Lovelace"
    assert humanize.actor("worker-7") == "worker-7"
    assert humanize.actor("") == "the system"


# The job page --------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_job_page_shows_summary_and_final_stats_as_tables_not_json(operator):
    job = make_job(status="succeeded", stats={"summary": {"avg_ms": 51.76620223770319, "invoices_mailed": 12345},
                                              "items_per_second": 1234.5678})
    html = page(operator, job)
    assert 'id="pj-summary"' in html and "<pre" not in html
    assert "51.8 ms" in html and "12,345" in html and "1,235" in html
    assert "51.766" not in html and '"avg_ms"' not in html


@pytest.mark.django_db
def test_the_timeline_says_max_parallel_1_to_4_and_names_the_user(operator):
    job = make_job(status="running", max_parallel=1)
    operator.first_name = "Ada"
    operator.save()
    client_for(operator).post(reverse("admin:partitions_job_knob", args=[job.pk]), {"max_parallel": "4"})
    assert JobEvent.objects.filter(job=job, type="job_settings_changed").exists()
    html = page(operator, job)
    assert "max parallel 1 → 4" in html
    assert "{&#x27;max_parallel" not in html and "[1, 4]" not in html
    assert "<strong>Ada</strong>" in html and "user:operator" not in html


@pytest.mark.django_db
def test_every_date_on_the_job_page_names_the_zone(operator, settings):
    settings.TIME_ZONE = "Europe/Madrid"
    job = make_job(status="running", deadline=timezone.now() + timedelta(hours=2))
    html = page(operator, job)
    assert "Europe/Madrid" in html  # the page's zone line and the deadline inputs' help
    local = timezone.localtime(job.deadline, zoneinfo.ZoneInfo("Europe/Madrid"))  # CET or CEST, by the season
    assert f"{local:%Y-%m-%d %H:%M}:" in html and f" {local.tzname()}" in html


@pytest.mark.django_db
def test_the_knob_shows_the_current_deadline_and_max_parallel(operator):
    deadline = timezone.now() + timedelta(hours=3)
    job = make_job(status="running", max_parallel=5, deadline=deadline)
    html = page(operator, job)
    assert "now 5" in html
    assert f"keep ({humanize.when(deadline)})" in html
    assert "clear (no deadline)" in html


@pytest.mark.django_db
def test_clearing_the_deadline_is_one_explicit_choice_and_typing_one_as_well_is_refused(operator):
    job = make_job(status="running", deadline=timezone.now() + timedelta(hours=3))
    url = reverse("admin:partitions_job_knob", args=[job.pk])
    refused = client_for(operator).post(url, {"deadline_choice": "clear", "deadline": "+30m"}, follow=True)
    assert "not both" in refused.content.decode()
    assert Job.objects.get(pk=job.pk).deadline is not None
    client_for(operator).post(url, {"deadline_choice": "clear"})
    assert Job.objects.get(pk=job.pk).deadline is None


@pytest.mark.django_db
def test_the_knob_takes_a_relative_deadline_and_its_message_names_the_zone(operator):
    job = make_job(status="running")
    before = timezone.now()
    response = client_for(operator).post(reverse("admin:partitions_job_knob", args=[job.pk]),
                                         {"deadline_choice": "set", "deadline": "+30m"}, follow=True)
    deadline = Job.objects.get(pk=job.pk).deadline
    assert before + timedelta(minutes=30) <= deadline <= timezone.now() + timedelta(minutes=30)
    [message] = [str(m) for m in response.context["messages"]]
    assert message.endswith(f"deadline {humanize.when(deadline)}.") and "+00:00" not in message


@pytest.mark.django_db
@pytest.mark.parametrize("typed", ["+30x", "+", "+-5m", "+9999999m"])
def test_a_malformed_relative_deadline_is_one_message_and_writes_nothing(operator, typed):
    job = make_job(status="running")
    response = client_for(operator).post(reverse("admin:partitions_job_knob", args=[job.pk]),
                                         {"deadline_choice": "set", "deadline": typed}, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert len(messages) == 1 and messages[0].startswith(("Nothing changed", "Cannot change")), messages
    assert Job.objects.get(pk=job.pk).deadline is None


@pytest.mark.django_db
def test_the_notifications_empty_state_explains_how_to_add_a_channel(operator, settings):
    settings.PARTITIONS_NOTIFY = {}
    html = page(operator, make_job(status="running"))
    assert "nothing tells anyone when this job ends" in html and "email:you@example.com" in html
    settings.PARTITIONS_NOTIFY = {"email": ["ops@example.com"]}
    assert "Its notifications go to e-mail to ops@example.com" in page(operator, make_job(status="running"))


# Other pages ---------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_empty_job_list_invites_the_first_start(operator, viewer):
    url = reverse("admin:partitions_job_changelist")
    html = client_for(operator).get(url).content.decode()
    assert 'id="pj-empty-jobs"' in html and "Start the first job" in html
    assert "Start the first job" not in client_for(viewer).get(url).content.decode()
    make_job(status="running")
    assert 'id="pj-empty-jobs"' not in client_for(operator).get(url).content.decode()


@pytest.mark.django_db
def test_add_on_job_schedules_opens_the_start_form_in_schedule_mode_for_schedulers_only(operator):
    url = reverse("admin:partitions_jobschedule_add")
    assert client_for(operator).get(url).status_code == 403  # start_job without add_jobschedule
    scheduler = make_staff("scheduler", "view_job", "view_jobschedule", "start_job", "add_jobschedule")
    response = client_for(scheduler).get(url)
    assert response.status_code == 302 and response["Location"].endswith("?mode=schedule")
    index = client_for(scheduler).get(reverse("admin:partitions_jobschedule_changelist")).content.decode()
    assert url in index
    start = client_for(scheduler).get(response["Location"] + "&type=tests.bump_range").content.decode()
    assert "Schedule a job" in start and 'id="pj-schedule" open' in start


@pytest.mark.django_db
def test_the_retry_confirm_page_says_how_many_sub_jobs_it_touches(operator):
    job = make_job(status="failed")
    partition = make_partition(job, status="failed")
    for seq in range(3):
        make_subjob(partition, seq=seq, status="failed")
    html = client_for(operator).get(reverse("admin:partitions_job_action", args=[job.pk, "retry_subjobs"])
                                    ).content.decode()
    assert "This touches 3 failed sub-jobs." in html and "Yes, retry 3 failed sub-jobs" in html
    assert 'class="button default pj-primary' in html


@pytest.mark.django_db
def test_the_rate_limit_bounds_are_in_items_per_hour_not_a_long_fraction(operator):
    job = make_job(status="running")
    response = client_for(operator).post(reverse("admin:partitions_job_throttle", args=[job.pk]),
                                         {"rate_limit": "0.0001", "pause_ms": "0"})
    html = response.content.decode()
    assert "At least 1 item per hour" in html and "greater than or equal to" not in html


# The start page's preview ------------------------------------------------------------------------------------

def preview_of(user, **params):
    data = {"job_type": "tests.items_serial", "_preview": "Preview plan",
            **{f"params-{k}": str(v) for k, v in params.items()}}
    return client_for(user).post(reverse("admin:partitions_job_start"), data)


@pytest.mark.django_db
def test_the_preview_lists_the_first_and_last_partitions_with_the_count_between(operator):
    response = preview_of(operator, count=2000, chunk_size=10)
    preview = response.context["preview"]
    assert preview["partitions"] == 200
    seqs = [row.get("seq") for row in preview["rows"]]
    assert seqs == [0, 1, 2, 3, 4, None, 195, 196, 197, 198, 199]
    html = response.content.decode()
    assert "190 more partitions" in html and "2,000 sub-jobs" in html and "200 partitions" in html
    assert 'id="pj-preview-empty"' not in html


@pytest.mark.django_db
def test_a_small_plan_is_listed_whole(operator):
    rows = preview_of(operator, count=10, chunk_size=1).context["preview"]["rows"]
    assert [row["seq"] for row in rows] == list(range(10))


@pytest.mark.django_db
def test_the_preview_warns_when_nothing_would_be_processed(operator):
    response = preview_of(operator, count=0, chunk_size=4)
    assert response.context["preview"]["empty"]
    assert "Nothing would be processed" in response.content.decode()


RELATIVE = st.one_of(texts, st.from_regex(r"\+-?[0-9]{0,9}[mhdsx ]?", fullmatch=True))


@pytest.fixture
def running_job(db):
    return make_job(status="running")


@FUZZ
@given(choice=st.one_of(st.sampled_from(["", "keep", "set", "clear"]), texts), deadline=RELATIVE,
       max_parallel=texts)
def test_the_knobs_deadline_choice_and_relative_deadline_never_answer_500_and_refusals_write_nothing(
        choice, deadline, max_parallel, running_job, superuser):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    before = Job.objects.values_list("deadline", "max_parallel").get(pk=running_job.pk)
    response = client.post(reverse("admin:partitions_job_knob", args=[running_job.pk]),
                           {"deadline_choice": choice, "deadline": deadline, "max_parallel": max_parallel},
                           follow=True)
    assert response.status_code in (200, 400)
    levels = [m.level_tag for m in response.context["messages"]] if response.status_code == 200 else []
    if any(level == "error" for level in levels) or response.status_code == 400:
        assert Job.objects.values_list("deadline", "max_parallel").get(pk=running_job.pk) == before
    Job.objects.filter(pk=running_job.pk).update(deadline=None, max_parallel=0)


@FUZZ
@given(deadline=RELATIVE)
def test_the_start_forms_deadline_field_never_answers_500(deadline, operator):
    client = Client(raise_request_exception=False)
    client.force_login(operator)
    response = client.post(reverse("admin:partitions_job_start"), {
        "job_type": "tests.items_serial", "params-count": "3", "params-chunk_size": "1", "deadline": deadline,
        "_preview": "Preview plan"})
    assert response.status_code in (200, 400)
