"""Fuzzing the sample dry-run's surfaces with Hypothesis, as tests/test_fuzz.py does the others: `jobs start …
--dry-run --sample N --sample-items M` with every run option, the start page's "Try on a sample" form, and the
service itself.

Properties: no 500 and no traceback (exit 0, 1 or 2, a refusal says why), and nothing written whatever the input,
accepted or refused: a sample only ever rolls back (the engine's tables counted, the demo tables checksummed)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from opsapp.billing.models import Event, Invoice, Subscription
from partitions.core.exceptions import PartitionsError
from partitions.worker.sample_run import job_sample
from tests.support import seed
from tests.test_fuzz import FUZZ, TYPE_NAMES, cli_holds, params_for, texts, whole_numbers
from tests.test_sample_run import checksum, engine_counts

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher", "admin_env")]

#: The test types' own slow-down: an input no sample must survive quickly (it sleeps as told), so left out.
SLOW_DOWN = "sleep_ms"


def params_without_slow_down(name: str):
    return params_for(name).map(lambda params: {k: v for k, v in params.items() if k != SLOW_DOWN})


job = st.sampled_from(TYPE_NAMES).flatmap(lambda name: st.tuples(st.just(name), params_without_slow_down(name)))
sizes = st.one_of(texts, st.integers(-3, 25).map(str), st.sampled_from(["1", "2", "20", "21", "10000", "10001"]))


def everything() -> tuple:
    """What a sample must leave as it was: the engine's row counts and the demo tables' contents."""
    return engine_counts(), checksum(Subscription), checksum(Event), checksum(Invoice)


@pytest.fixture
def demo_rows(db):
    seed(subscriptions=40, events=12, products=2)


def sample_args(job, sample, sample_items, option, dry_run) -> list[str]:
    type_name, params = job
    return ["start", type_name, *[a for k, v in params.items() for a in ("--param", f"{k}={v}")],
            *(["--dry-run"] if dry_run else []), *(["--sample", sample] if sample is not None else []),
            *(["--sample-items", sample_items] if sample_items is not None else []), *option]


options = st.one_of(st.just([]), st.tuples(st.sampled_from(["--max-parallel", "--deadline", "--rate"]), texts)
                    .map(list))


@FUZZ
@given(job=job, sample=st.one_of(st.none(), sizes), sample_items=st.one_of(st.none(), sizes), option=options,
       dry_run=st.booleans(), as_json=st.booleans())
def test_the_sample_options_never_print_a_traceback_and_never_write(
        job, sample, sample_items, option, dry_run, as_json, demo_rows):
    if not dry_run and sample is None:  # a real start: the other fuzz's ground (it writes a job)
        dry_run = True
    before = everything()
    cli_holds(sample_args(job, sample, sample_items, option, dry_run), as_json, counts=everything)
    assert everything() == before, "a sample, accepted or refused, writes nothing"


@FUZZ
@given(job=job, partitions=sizes, items=sizes, max_parallel=texts)
def test_the_try_on_a_sample_form_never_answers_500_and_never_writes(job, partitions, items, max_parallel,
                                                                       demo_rows, operator):
    type_name, params = job
    client = Client(raise_request_exception=False)
    client.force_login(operator)
    before = everything()
    response = client.post(reverse("admin:partitions_job_start") + f"?type={quote(type_name)}", {
        "job_type": type_name, "_sample": "Try on a sample", "max_parallel": max_parallel,
        "sample-partitions": partitions, "sample-items": items, **{f"params-{k}": v for k, v in params.items()}})
    assert response.status_code in (200, 400)  # 400: a NUL in the form, refused by the middleware
    assert everything() == before


@FUZZ
@given(job=job, partitions=whole_numbers, items=whole_numbers, max_parallel=whole_numbers)
def test_the_service_samples_or_refuses_with_a_typed_error_and_never_writes(job, partitions, items, max_parallel,
                                                                              demo_rows):
    type_name, params = job
    before = everything()
    try:
        report = job_sample(type_name, params, partitions=partitions, items=items, max_parallel=max_parallel)
    except PartitionsError:
        pass
    else:
        assert 1 <= partitions and 1 <= items and len(report.sampled) <= partitions
        assert report.measured.handled <= items * len(report.sampled)
    assert everything() == before
