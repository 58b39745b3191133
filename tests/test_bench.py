"""`manage.py bench all --quick` produces every scenario's figures, and they are sane (never timed)."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from opsapp.bench.scenarios import SCENARIOS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def report(django_db_setup, django_db_blocker) -> dict:
    """One `bench all --quick --json` run, shared: it starts real qclusters, so it takes seconds."""
    out = StringIO()
    with django_db_blocker.unblock():
        call_command("bench", "all", "--quick", "--json", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


def test_bench_all_quick_reports_positive_figures_with_ratios_for_every_scenario(report):
    assert report["machine"]["cpus"] >= 1
    assert list(report["scenarios"]) == list(SCENARIOS)
    for name, scenario in report["scenarios"].items():
        figures = scenario["figures"]
        assert figures, name
        # A cost measured less the background (an idle cluster's ~0.4 xact/s) may be 0; every other is positive.
        assert all(f["value"] > 0 or ("background" in f["label"] and f["value"] == 0) for f in figures), (
            name, figures)
        keys = {f["key"] for f in figures}
        compared = [f for f in figures if f["ratios"]]
        assert compared, f"{name}: no figure is compared with a baseline"
        for figure in compared:
            assert set(figure["ratios"]) <= keys, (name, figure)
            assert all(r > 0 or figure["value"] == 0 for r in figure["ratios"].values()), (name, figure)
    assert report["scenarios"]["failover"]["checks"]["rows_redone"] == 0
    assert report["scenarios"]["failover"]["checks"]["promotion_rows_repeated"] == 0
    assert report["scenarios"]["failover"]["checks"]["promotion_qclusters_died"] == 0
    assert report["scenarios"]["failover"]["checks"]["configured_lease_round"] == "skipped (--quick)"


def test_bench_scale_quick_runs_the_job_to_success_on_real_qclusters_and_reports_each_fleet(report):
    scale = report["scenarios"]["scale"]
    counts = scale["params"]["clusters"]
    assert counts[0] == 1 and len(counts) >= 2
    assert scale["checks"]["qclusters_started"] == counts[-1]
    assert scale["checks"]["items_succeeded_per_round"] == scale["params"]["items"]
    figures = {f["key"]: f for f in scale["figures"]}
    assert figures["rate_1"]["baseline"]
    for n in counts:
        for key in ("ideal_s", "wall_s", "rate", "workers", "peak", "mean", "used", "first_claim_s", "succeeded_s"):
            assert f"{key}_{n}" in figures, (key, n, list(figures))
        assert figures[f"workers_{n}"]["value"] == n * scale["params"]["q_workers"]
        assert 1 <= figures[f"peak_{n}"]["value"] <= figures[f"workers_{n}"]["value"]
        assert f"full_s_{n}" in figures or scale["checks"][f"all_workers_busy_{n}"] == "never"
    for n in counts[1:]:
        assert set(figures[f"rate_{n}"]["ratios"]) == {"rate_1"}  # the speed-up over one cluster
