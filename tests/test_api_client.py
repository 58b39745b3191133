"""The documented client (docs/examples/api_client.py) against a live server: it starts the demo's
`billing.send_invoices` with a token, polls until the job ends (driven here by the engine, in this process, as a
worker would) and prints the summary; a refusal prints the problem's fields and exits 2."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from partitions.httpapi.tokens import token_create
from partitions.models import Job
from partitions.worker import steps
from tests.support import run_to_end, seed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_dispatcher")]

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "examples" / "api_client.py"


def client_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_client", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_client_starts_a_job_waits_for_its_end_and_prints_its_summary(live_server, operator, capsys):
    seed(subscriptions=10)
    token = token_create(operator, "client")[1]
    outcome: list[int] = []
    argv = ["billing.send_invoices", "--param", "period=2026-11", "--param", "work_ms=0",
            "--url", live_server.url, "--token", token, "--interval", "0.05"]
    polling = threading.Thread(target=lambda: outcome.append(client_module().main(argv)))
    polling.start()
    deadline = time.monotonic() + 30
    while (job := Job.objects.first()) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job is not None, "the client started no job"
    steps.job_plan(job.pk, worker_id="planner")
    assert run_to_end(job).status == "succeeded"
    polling.join(timeout=30)
    assert outcome == [0]
    out = capsys.readouterr().out
    assert out.strip() == f"job {job.pk} succeeded: 5/5 items handled, 0 failed"


def test_the_client_prints_a_refusal_field_by_field(live_server, operator, capsys):
    token = token_create(operator, "client")[1]
    code = client_module().main(["billing.send_invoices", "--param", "period=someday", "--url", live_server.url,
                                 "--token", token])
    assert code == 2 and Job.objects.count() == 0
    err = capsys.readouterr().err
    assert "422 Invalid input" in err and "params.period: Enter a month as YYYY-MM." in err
