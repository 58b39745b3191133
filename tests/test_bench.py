"""`manage.py bench all --quick` produces every scenario's figures, and they are sane (never timed)."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from partitions.bench import SCENARIOS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_bench_all_quick_reports_positive_figures_with_ratios_for_every_scenario():
    out = StringIO()
    call_command("bench", "all", "--quick", "--json", stdout=out, stderr=StringIO())
    report = json.loads(out.getvalue())
    assert report["machine"]["cpus"] >= 1
    assert list(report["scenarios"]) == list(SCENARIOS)
    for name, scenario in report["scenarios"].items():
        figures = scenario["figures"]
        assert figures, name
        assert all(f["value"] > 0 for f in figures), (name, figures)
        keys = {f["key"] for f in figures}
        compared = [f for f in figures if f["ratios"]]
        assert compared, f"{name}: no figure is compared with a baseline"
        for figure in compared:
            assert set(figure["ratios"]) <= keys, (name, figure)
            assert all(r > 0 for r in figure["ratios"].values()), (name, figure)
    assert report["scenarios"]["failover"]["checks"]["rows_redone"] == 0
