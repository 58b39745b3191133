"""`jobs start TYPE … --dry-run --sample N [--sample-items M]`: the sample dry-run's options and its report
(partitions.sample_run does the work), mixed into the `jobs` command."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandError

from partitions import humanize, validation
from partitions.sample_run import (
    SAMPLE_ITEMS_DEFAULT,
    SAMPLE_ITEMS_MAX,
    SAMPLE_PARTITIONS_MAX,
    change_text,
    job_sample,
)
from partitions.splits import PartitionPlan

#: Shown for a figure the sample could not measure (no item handled).
UNKNOWN = "?"


def _bounded(maximum: int, what: str):
    def parse(value: str) -> int:
        number = validation.parse_id(value)
        if number is None or not 1 <= number <= maximum:
            raise argparse.ArgumentTypeError(f"expected {what} from 1 to {maximum:,}, got {value!r}")
        return number
    return parse


sample_partitions_arg = _bounded(SAMPLE_PARTITIONS_MAX, "a number of partitions")
sample_items_arg = _bounded(SAMPLE_ITEMS_MAX, "a number of items")


def _figure(value: float | None, unit: str = "") -> str:
    """Three significant digits below 100 (0.0133, 51.8), none above (1,234)."""
    return UNKNOWN if value is None else f"{value:,.3g}{unit}" if value < 100 else f"{value:,.0f}{unit}"


def sample_text(sample: dict[str, Any]) -> str:
    """The report's lines: what ran, how fast, the load, the projection, the changes and the calls."""
    lines = [
        f"sample: {len(sample['partitions'])} of {sample['planned_partitions']} partitions, {sample['items']:,} items "
        f"({sample['items_failed']} failed, {sample['items_skipped']} skipped) in {sample['seconds']:.3f}s: "
        f"{_figure(sample['items_per_second'])} items/s on one worker"
        + (f" (one at a time; it runs {sample['item_concurrency']} at once)" if sample["item_concurrency"] > 1 else "")
        + " (rolled back: nothing written)",
        f"  database: {_figure(sample['statements_per_item'])} statements and {_figure(sample['rows_per_item'])} "
        f"rows per item; for the whole job {_figure(sample['statements_per_second'])} statements/s and "
        f"{_figure(sample['rows_per_second'])} rows/s",
        f"  projection: {sample['planned_items']:,} items in {_figure(sample['projected_seconds'], 's')} at "
        f"{sample['parallel']} in parallel ({_figure(sample['projected_items_per_second'])} items/s"
        + (f", {sample['limited_by'].replace('_', ' ')} binds" if sample["limited_by"] else "") + ")"
        + (f"; deadline: {sample['verdict'] or UNKNOWN}" if sample["deadline"] else "")
        + (f"; needs {humanize.plural(sample['workers_needed'], 'parallel worker')}"
           if sample["workers_needed"] else "")
        + (f"; a rate of {sample['rate_needed']:,.1f} items/s would meet it" if sample["rate_needed"] else ""),
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
        its projection."""
        report = job_sample(type_name, params, partitions=sample, items=sample_items or SAMPLE_ITEMS_DEFAULT,
                            max_parallel=options.max_parallel, rate_limit=rate, deadline=options.deadline,
                            plans=plans)
        return report.as_dict()
