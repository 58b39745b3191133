"""`manage.py bench <scenario>|all [--quick] [--json]`: benchmarks, each figure a ratio to a same-run baseline.

Thin: the scenarios live in `opsapp.bench`. Progress goes to stderr, figures to stdout.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from opsapp.bench import harness, scenarios


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise ValueError(text)
        return value

    parse.__name__ = kind.__name__
    return parse


class Command(BaseCommand):
    help = "Run benchmarks in a scratch database; print each figure with its ratio to a baseline of the same run."

    def add_arguments(self, parser):
        parser.add_argument("scenario", choices=[*scenarios.SCENARIOS, "all"])
        parser.add_argument("--quick", action="store_true", help="small sizes (seconds, for smoke tests)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--workers", type=_positive(int), default=2,
                            help="worker processes (W, P; scale: Q_WORKERS of each qcluster); default 2")
        parser.add_argument("--concurrency", type=_positive(int), default=8,
                            help="io: items in flight per process (C); default 8")
        parser.add_argument("--size", type=_positive(int),
                            help="override the scenario's main size (partitions, items, rows or sub-jobs)")
        parser.add_argument("--lease", type=_positive(float), default=2.0,
                            help="failover: the short lease, seconds (the configured one is measured too); default 2")
        parser.add_argument("--database", help="scratch database name (default: the current one + _bench)")
        parser.add_argument("--keep", action="store_true", help="keep the scratch database afterwards")

    def handle(self, *args, **options):
        names = list(scenarios.SCENARIOS) if options["scenario"] == "all" else [options["scenario"]]
        opts = harness.Options(quick=options["quick"], workers=options["workers"],
                               concurrency=options["concurrency"], size=options["size"], lease=options["lease"],
                               log=lambda line: self.stderr.write(line))
        try:
            host, results = scenarios.run(names, opts, database=options["database"], keep=options["keep"])
        except harness.BenchError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(harness.as_json(results, host), indent=2))
        else:
            self.stdout.write(harness.table(results, host))
