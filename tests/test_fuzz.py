"""Fuzzing every input surface with Hypothesis: job params and run options (service, admin start page, CLI),
admin URLs that take an id or a filter, progress.json and /metrics.

Properties: no 500, no traceback on the CLI (exit 1 or 2, the error on the last line), and nothing written
when an input is refused. A fixed profile (derandomized, no example database; tests/conftest.py) keeps CI deterministic.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from partitions.core.exceptions import PartitionsError
from partitions.jobtypes import registry
from partitions.models import Job, JobEvent, Partition, SubJob
from partitions.operations import services
from partitions.reads.statistics import jobs_stats
from tests.factories import make_job, make_partition
from tests.support import cli

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher", "admin_env")]

#: The loaded profile (tests/conftest.py): derandomized, 300 examples under `make test`, fewer in the fast lane.
FUZZ = hypothesis_settings()

#: Inputs hostile users tried, mixed into every text strategy.
HOSTILE = [
    "", " ", "\n", "\x00", "²", "\u0663", "\u0661\u0660\u0660", "\u0662\u0660\u0662\u0666-11", "2026-11\n",
    "2026-11", "2026-13", "0", "-1", "1.5", "1e309",
    "nan", "inf", "99999999999999999999", "2147483648", "32768", "-32769", "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:00:00-15:00", "0001-01-01T00:00:00+15:00", "2030-01-01T00:00:00+20:00", "2026-02-30T00:00",
    "2030-06-01T12:00", "2001-01-01T00:00:00Z", "<script>alert(1)</script>", "' OR 1=1 --", "x" * 300, "true",
]
texts = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40), st.integers().map(str))


def row_counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Job, Partition, SubJob, JobEvent))


def params_for(type_name: str):
    """Raw params for a job type's form: each field absent or any text, plus an unknown field now and then."""
    fields = list(registry.get(type_name).Params.base_fields)
    return st.fixed_dictionaries({}, optional={name: texts for name in [*fields, "unknown"]})


TYPE_NAMES = sorted(registry.all_types())
job_type_and_params = st.sampled_from(TYPE_NAMES).flatmap(lambda name: st.tuples(st.just(name), params_for(name)))

offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
deadlines = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                 timezones=offsets.map(lambda o: timezone(timedelta(minutes=o // timedelta(minutes=1))))),
)
whole_numbers = st.one_of(st.integers(-(2**70), 2**70), st.integers(-5, 40))


@FUZZ
@given(job=job_type_and_params, max_parallel=whole_numbers, priority=whole_numbers, deadline=deadlines,
       dedupe_key=st.one_of(st.none(), texts))
def test_the_service_accepts_a_job_it_can_store_and_plan_or_refuses_it_writing_nothing(
        job, max_parallel, priority, deadline, dedupe_key):
    type_name, params = job
    before = row_counts()
    try:
        created, _ = services.job_start(type_name, params, actor="fuzz", max_parallel=max_parallel,
                                        priority=priority, deadline=deadline, dedupe_key=dedupe_key)
    except PartitionsError:
        assert row_counts() == before
        return
    stored = Job.objects.get(pk=created.pk)  # reads back: every value fits its column
    assert stored.deadline is None or stored.deadline.tzinfo is not None
    jobs_stats([stored])
    registry.get(type_name).load_params(stored.params)


def _start_form_data(type_name: str, params: dict[str, str], max_parallel: str, deadline: str, button: str):
    return {"job_type": type_name, button: button, "max_parallel": max_parallel, "deadline": deadline,
            **{f"params-{k}": v for k, v in params.items()}}


@FUZZ
@given(job=job_type_and_params, max_parallel=texts, deadline=texts, button=st.sampled_from(["_start", "_preview"]))
def test_the_start_page_never_answers_500_and_a_refused_start_writes_nothing(
        job, max_parallel, deadline, button, operator):
    type_name, params = job
    client = Client(raise_request_exception=False)
    client.force_login(operator)
    before = row_counts()
    response = client.post(reverse("admin:partitions_job_start") + f"?type={quote(type_name)}",
                           _start_form_data(type_name, params, max_parallel, deadline, button))
    assert response.status_code in (200, 302, 400)
    if response.status_code != 302:  # refused, or a preview: nothing written
        assert row_counts() == before


CLI_ACTIONS = ["list", "status", "retry", "cancel", "pause", "resume", "events"]


def cli_args():
    """Argument lists for every subcommand, valid or not."""
    option = st.tuples(st.sampled_from(["--max-parallel", "--priority", "--deadline", "--dedupe-key"]), texts)
    start = st.tuples(job_type_and_params, st.lists(option, max_size=3), st.booleans()).map(
        lambda t: ["start", t[0][0], *[a for k, v in t[0][1].items() for a in ("--param", f"{k}={v}")],
                   *[a for pair in t[1] for a in pair], *(["--dry-run"] if t[2] else [])])
    by_id = st.tuples(st.sampled_from(CLI_ACTIONS[1:]), texts).map(list)
    listing = st.tuples(st.just("list"), st.sampled_from(["--limit", "--status"]), texts).map(list)
    events = texts.map(lambda limit: ["events", "1", "--limit", limit])
    retry = texts.map(lambda job_id: ["retry", job_id, "--subjobs"])
    return st.one_of(start, by_id, listing, events, retry)


def cli_holds(args: list[str], as_json: bool, counts=row_counts) -> int:
    """Run the CLI: no traceback, and a refusal (exit 1 or 2) says why and leaves `counts()` as it was; the code."""
    before = counts()
    code, _, err = cli(*args, *(["--json"] if as_json else []))
    assert "Traceback" not in err
    if code != 0:
        assert code in (1, 2), err
        assert err.strip(), "a refusal says why"
        assert counts() == before
    return code


@FUZZ
@given(args=cli_args(), as_json=st.booleans())
def test_the_cli_never_prints_a_traceback_and_a_refusal_writes_nothing(args, as_json):
    cli_holds(args, as_json)


@pytest.fixture
def some_rows(db):
    job = make_job(status="running", deadline=datetime.now(UTC) + timedelta(hours=1))
    make_partition(job, status="running")
    make_partition(job, seq=1, status="failed", last_error="ValueError: bad row")
    return job


ADMIN_URLS = [
    "/admin/partitions/job/{value}/change/",
    "/admin/partitions/job/{job}/change/?ebefore={value}",
    "/admin/partitions/job/{job}/change/?pstatus={value}&pp={value}&sp={value}",
    "/admin/partitions/job/{value}/action/pause/",
    "/admin/partitions/job/progress.json?ids={value}",
    "/admin/partitions/job/progress.json?ids={job},{value}",
    "/admin/partitions/job/?status__exact={value}&q={value}",
    "/admin/partitions/job/start/?type={value}",
    "/admin/partitions/partition/?job={value}",
    "/admin/partitions/partition/?status={value}&kind={value}&p={value}",
    "/admin/partitions/partition/{value}/change/",
    "/admin/partitions/subjob/?job={value}&status={value}",
    "/admin/partitions/subjob/{value}/change/",
    "/admin/partitions/jobevent/?job={value}&q={value}",
    "/admin/partitions/jobevent/{value}/change/",
    "/admin/partitions/job/workers/?{value}={value}",
]


@FUZZ
@given(template=st.sampled_from(ADMIN_URLS), value=texts)
def test_admin_urls_with_any_id_or_filter_never_answer_500(template, value, some_rows, viewer):
    client = Client(raise_request_exception=False)
    client.force_login(viewer)
    url = template.format(job=some_rows.pk, value=quote(value, safe=""))
    assert client.get(url).status_code in (200, 302, 400, 403, 404)


@hypothesis_settings(FUZZ, max_examples=FUZZ.max_examples * 2 // 3)
@given(token=st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40)),
       scheme=st.sampled_from(["Bearer ", "", "Basic "]))
def test_metrics_never_answers_500_whatever_the_authorization_header(token, scheme, settings, some_rows):
    settings.METRICS_TOKEN = "s3cret-token"
    # A real WSGI server hands header bytes over as latin-1 text.
    header = (scheme + token).encode("utf-8").decode("latin-1")
    response = Client(raise_request_exception=False).get("/metrics", HTTP_AUTHORIZATION=header)
    assert response.status_code == (200 if header == "Bearer s3cret-token" else 403)
