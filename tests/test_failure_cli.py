"""`jobs failures ID [--csv] [--reason R] [--status S] [--json]`, `jobs retry ID --reason R` and `jobs skip ID
--reason R --note TEXT`: the failure ledger on the command line, and a Hypothesis fuzz over their options."""

from __future__ import annotations

import csv
import json

import pytest
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from partitions.models import Job, JobEvent, SubJob
from tests.support import cli, planned_job, run_to_end
from tests.test_failure_ledger import NO_ADDRESS, NO_TAX, OPTED_OUT
from tests.test_fuzz import FUZZ, texts

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_job(no_dispatcher):
    return run_to_end(planned_job("tests.two_failures", {"count": 50, "chunk_size": 10}))


def test_failures_csv_has_one_row_per_failed_item_with_its_reason(failed_job):
    code, out, err = cli("failures", str(failed_job.pk), "--csv")
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(out.splitlines()))
    expected = SubJob.objects.filter(job=failed_job, status__in=["failed", "skipped"])
    assert sorted(r["key"] for r in rows) == sorted(expected.values_list("key", flat=True))
    assert {r["key"]: r["reason"] for r in rows} == dict(expected.values_list("key", "reason"))
    code, out, _ = cli("failures", str(failed_job.pk), "--csv", "--reason", NO_TAX)
    assert [r["key"] for r in csv.DictReader(out.splitlines())] == [f"item-{i}" for i in (2, 12, 22, 32, 42)]


def test_failures_lists_the_groups_and_with_a_reason_its_items(failed_job):
    code, out, _ = cli("failures", str(failed_job.pk))
    assert code == 0
    assert out.splitlines()[0] == f"job {failed_job.pk}: 15 failed or skipped items, 3 reasons"
    assert NO_TAX in out and "33.3%" in out and "e.g. item-2: LookupError: no tax rate for region 2" in out
    code, out, _ = cli("failures", str(failed_job.pk), "--json")
    data = json.loads(out)
    assert (data["total"], data["reasons"]) == (15, 3)
    assert {g["reason"]: (g["failed"], g["skipped"]) for g in data["groups"]} == {
        NO_ADDRESS: (5, 0), NO_TAX: (5, 0), OPTED_OUT: (0, 5)}
    code, out, _ = cli("failures", str(failed_job.pk), "--reason", NO_ADDRESS, "--limit", "2")
    lines = out.splitlines()
    assert lines[0].startswith("item-1 ") and lines[1].startswith("item-11 ") and "more than 2" in lines[2]


def test_retry_of_one_reason_and_skip_with_a_note_from_the_cli(failed_job):
    code, out, _ = cli("retry", str(failed_job.pk), "--reason", NO_ADDRESS)
    assert (code, out.strip()) == (0, f"job {failed_job.pk}: 5 failed sub-jobs retried")
    assert set(SubJob.objects.filter(job=failed_job, status="pending").values_list("key", flat=True)) == {
        f"item-{i}" for i in (1, 11, 21, 31, 41)}
    code, out, _ = cli("skip", str(failed_job.pk), "--reason", NO_TAX, "--note", "no tax this year")
    assert (code, out.strip()) == (0, f"job {failed_job.pk}: 5 failed items of {NO_TAX!r} skipped")
    assert JobEvent.objects.get(job=failed_job, type="subjobs_skipped").actor == "cli"


@pytest.mark.parametrize(("args", "message"), [
    (["skip", "{job}", "--reason", NO_TAX, "--note", " "], "Say why these items are skipped"),
    (["skip", "{job}", "--reason", "nope", "--note", "n"], "has no failed or skipped items with reason 'nope'"),
    (["retry", "{job}", "--reason", NO_TAX[:-1]], f"(did you mean {NO_TAX!r}?)"),
    (["failures", "{job}", "--reason", "x\x00"], "has no failed or skipped items"),
    (["failures", "{job}", "--csv", "--json"], "--csv and --json are two formats"),
    (["failures", "999999"], "job 999999 does not exist"),
])
def test_bad_input_is_one_line_and_writes_nothing(failed_job, args, message):
    before = (JobEvent.objects.count(), list(SubJob.objects.values_list("status", "note").order_by("id")))
    code, _, err = cli(*(a.format(job=failed_job.pk) for a in args))
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert (JobEvent.objects.count(), list(SubJob.objects.values_list("status", "note").order_by("id"))) == before


reasons = st.one_of(texts, st.sampled_from([NO_ADDRESS, NO_TAX, OPTED_OUT, NO_TAX.lower(), NO_TAX + " "]))


@FUZZ
@given(verb=st.sampled_from(["failures", "retry", "skip"]), reason=reasons, note=texts,
       extra=st.lists(st.sampled_from(["--csv", "--json", "--status", "failed", "skipped", "--limit", "0"]),
                      max_size=3))
def test_fuzz_reason_note_and_options_refuse_with_one_line_or_act_only_on_that_reason(
        failed_job, verb, reason, note, extra):
    def rows():
        return list(SubJob.objects.filter(job=failed_job).values_list("id", "status", "note", "reason").order_by("id"))

    before, events = rows(), JobEvent.objects.count()
    args = [verb, str(failed_job.pk), "--reason", reason, *(["--note", note] if verb == "skip" else []),
            *(extra if verb == "failures" else [])]
    with transaction.atomic():  # each example starts from the fixture's job: what one changed is rolled back
        code, _, err = cli(*args)
        assert "Traceback" not in err and code in (0, 1, 2), (args, err)
        changed = [was for was, now in zip(before, rows(), strict=True) if now != was]
        if code:
            assert 1 <= len(err.strip().splitlines()) <= 3 and "usage:" not in err, (args, err)
            assert not changed and JobEvent.objects.count() == events, args
        else:  # only a reason the job has acts, and only on its own items
            assert not changed or reason in {NO_ADDRESS, NO_TAX, OPTED_OUT}, args
            assert {r[3] for r in changed} <= {reason}, args
        transaction.set_rollback(True)
    assert Job.objects.get(pk=failed_job.pk).status == "failed"


def test_the_readmes_failure_commands_run_as_written(failed_job):
    from tests.test_cli_messages import readme_commands

    commands = [*readme_commands("failures"), *readme_commands("retry"), *readme_commands("skip")]
    ledger_commands = [args for args in commands if args[0] == "failures" or "--reason" in args]
    assert len(ledger_commands) >= 5
    for args in ledger_commands:
        args = args[:args.index(">")] if ">" in args else args  # the shell's redirection
        code, out, err = cli(*[str(failed_job.pk) if a == "JOB_ID" else a for a in args])
        assert code == 0 and out, (args, err)
    assert SubJob.objects.filter(job=failed_job, reason=NO_TAX, status="skipped").count() == 5
