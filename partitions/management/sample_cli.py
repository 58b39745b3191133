"""`jobs start TYPE … --dry-run --sample N [--sample-items M]`: the sample dry-run's options and its report
(partitions.worker.sample_run does the work), mixed into the `jobs` command."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandError

from partitions.core import humanize, validation
from partitions.jobtypes.splits import PartitionPlan
from partitions.wording import presenters
from partitions.worker.sample_run import (
    SAMPLE_ITEMS_DEFAULT,
    SAMPLE_ITEMS_MAX,
    SAMPLE_PARTITIONS_MAX,
    change_text,
    job_sample,
)


def _bounded(maximum: int, what: str):
    def parse(value: str) -> int:
        number = validation.parse_id(value)
        if number is None or not 1 <= number <= maximum:
            raise argparse.ArgumentTypeError(f"expected {what} from 1 to {maximum:,}, got {value!r}")
        return number
    return parse


sample_partitions_arg = _bounded(SAMPLE_PARTITIONS_MAX, "a number of partitions")
sample_items_arg = _bounded(SAMPLE_ITEMS_MAX, "a number of items")


def sample_text(sample: dict[str, Any]) -> str:
    """The report's lines: what ran, how fast, the load, the projection and the advice (in the start page's
    words, `presenters.sample_words`), the changes and the calls."""
    words = sample["words"]
    lines = [
        f"sample: {words['measured']} (rolled back: nothing written)",
        f"  database: {words['load']}",
        f"  projection: {words['projection']}",
        *([f"  advice: {words['advice']}"] if words["advice"] else []),
        f"  would change {humanize.plural(sample['changes_total'], 'row')}" + (":" if sample["changes"] else ""),
        *(f"    {c['table']} {c['pk']} {c['op']}: {change_text(c)}" for c in sample["changes"]),
    ]
    if sample["calls_total"]:
        lines += [f"  external calls not made ({sample['calls_total']:,}):", *(f"    {c}" for c in sample["calls"])]
    if sample["errors"]:
        lines += ["  item errors:", *(f"    {e}" for e in sample["errors"])]
    return "\n".join(lines)


class SampleCommands:
    """The start subcommand's sample options (`add_sample_arguments`) and its sample step (`sample_of`)."""

    @staticmethod
    def add_sample_arguments(start) -> None:
        start.add_argument("--sample", type=sample_partitions_arg, metavar="N",
                           help="with --dry-run: run the job's real code on N planned partitions in a transaction "
                                "that is rolled back, and report its changes, speed and projection")
        start.add_argument("--sample-items", type=sample_items_arg, metavar="M",
                           help=f"items read from each sampled partition (default {SAMPLE_ITEMS_DEFAULT})")

    @staticmethod
    def check_sample_options(*, dry_run: bool, sample: int | None, sample_items: int | None) -> None:
        """Before anything runs: the sample options only make sense together, and with --dry-run."""
        if sample is not None and not dry_run:
            raise CommandError("--sample needs --dry-run: a sample never starts a job")
        if sample_items is not None and sample is None:
            raise CommandError("--sample-items needs --sample N")

    @staticmethod
    def sample_of(type_name: str, params: dict[str, Any], *, sample: int, sample_items: int | None,
                  options: validation.RunOptions, rate: Any, plans: list[PartitionPlan]) -> dict[str, Any]:
        """The sample report's `sample` object for the previewed `plans`, with the start's run options applied to
        its projection, and its sentences (`words`)."""
        report = job_sample(type_name, params, partitions=sample, items=sample_items or SAMPLE_ITEMS_DEFAULT,
                            max_parallel=options.max_parallel, rate_limit=rate, deadline=options.deadline,
                            plans=plans)
        return {**report.as_dict(), "words": presenters.sample_words(report)}
