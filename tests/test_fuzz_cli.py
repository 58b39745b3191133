"""Fuzzing the `jobs` CLI's argument errors with Hypothesis: any subcommand (or a mistyped one) with any mix of
its own options, positionals and hostile values.

Properties: no traceback, exit 0, 1 (refused by the engine) or 2 (refused by the parser); a refusal is at most 3
lines on stderr, never the usage dump, and writes nothing."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partitions.management.commands.jobs import Command as JobsCommand
from partitions.models import Job, JobEvent, JobSchedule, Partition
from tests.factories import make_job, make_partition
from tests.support import cli
from tests.test_fuzz import FUZZ, texts

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatcher")]

#: Options that follow a job until it ends: no argument error to find there, and they would wait.
FOLLOWING = {"--wait", "--watch"}


def _options_by_subcommand() -> dict[str, list[str]]:
    parser = JobsCommand().create_parser("manage.py", "jobs")
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sorted({o for a in sub._actions for o in a.option_strings} - FOLLOWING - {"-h", "--help"})
            for name, sub in subparsers.choices.items()}


OPTIONS = _options_by_subcommand()
#: Values a operator might type: ids near the seeded job's, known names and the hostile texts.
values = st.one_of(texts, st.sampled_from(["1", "2", "3", "tests.bump_range", "billing.send_invoices", "+30m",
                                            "partitions=2", "period", "2026-11", "none", "5m", "UTC"]))


@st.composite
def command_lines(draw) -> list[str]:
    name = draw(st.one_of(st.sampled_from(sorted(OPTIONS)), texts.filter(lambda t: not t.startswith("-"))))
    options = OPTIONS.get(name, ["--json"])
    tokens = draw(st.lists(st.one_of(st.sampled_from(options), values), max_size=6))
    return [name, *tokens]


def row_counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Job, Partition, JobEvent, JobSchedule))


@FUZZ
@given(args=command_lines())
def test_an_argument_error_is_at_most_three_lines_without_the_usage_and_writes_nothing(args):
    if not Job.objects.exists():
        make_partition(make_job(status="running"), status="failed")
    before = row_counts()
    code, _, err = cli(*args)
    assert "Traceback" not in err, (args, err)
    assert code in (0, 1, 2), (args, err)
    if code:
        lines = err.strip().splitlines()
        assert 1 <= len(lines) <= 3, (args, err)
        assert "usage:" not in err, (args, err)
        assert row_counts() == before, args


@FUZZ
@given(job_id=texts)
def test_jobs_verify_of_a_bad_or_unknown_job_id_is_one_clear_line_and_writes_nothing(job_id):
    before = row_counts()
    code, out, err = cli("verify", job_id, "--json")
    assert "Traceback" not in err, (job_id, err)
    assert (code, out) in ((1, ""), (2, "")), (job_id, code, out, err)
    line, = err.strip().splitlines()
    assert "does not exist" in line if code == 1 else "error:" in line, (job_id, err)
    assert row_counts() == before
