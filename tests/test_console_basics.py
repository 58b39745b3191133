"""What every page of the console relies on: the icon browsers ask for, the admin index's order."""

import logging
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from opsapp.billing.seeding import seed_demo
from tests.support import planned_job, run_to_end

REPO = Path(__file__).resolve().parent.parent


def test_favicon_answers_with_an_icon_to_anonymous_callers():
    response = Client().get("/favicon.ico", secure=True)

    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert "max-age=86400" in response["Cache-Control"]
    reserved, kind, count = struct.unpack("<HHH", response.content[:6])
    assert (reserved, kind, count) == (0, 1, 1)  # an ICO file with one image
    assert response.content[22:30] == b"\x89PNG\r\n\x1a\n"  # that image is a PNG


def test_favicon_refuses_writes():
    assert Client().post("/favicon.ico", secure=True).status_code == 405


def test_admin_index_shows_the_engine_first_and_django_q2_last_as_internals(admin_env, superuser, client):
    client.force_login(superuser)

    response = client.get("/admin/", secure=True)

    assert response.status_code == 200
    labels = [app["app_label"] for app in response.context["app_list"]]
    assert labels[:2] == ["partitions", "billing"]
    assert labels[-1] == "django_q"
    assert set(labels) >= {"auth"}  # Django's own apps stay, between the two
    names = {app["app_label"]: app["name"] for app in response.context["app_list"]}
    assert names["django_q"].endswith("(internals)")
    assert names["partitions"] == "Partitioned jobs"
    body = response.content.decode()
    assert body.index("Partitioned jobs") < body.index("Billing demo") < body.index("(internals)")


def test_an_invoice_run_logs_one_line_for_the_terminal_and_mails_to_the_backend(transactional_db, caplog, mailoutbox):
    seed_demo(products=1, subscriptions=0, customers=30, events=0)
    job = planned_job("billing.send_invoices", {"period": "2026-11", "work_ms": 0})

    with caplog.at_level(logging.INFO, logger="opsapp.billing"):
        job = run_to_end(job)

    assert job.status == "succeeded", job.error
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("opsapp.billing")]
    assert lines == [f"invoice run 2026-11 (job {job.pk}): 30 invoices mailed, summary mailed to ops@example.com"]
    assert len(mailoutbox) == 31  # 30 invoices and the summary, in the backend, not in the log


@pytest.mark.slow  # runs make
def test_make_writes_a_dot_env_that_sends_mail_to_files_not_the_terminal(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")

    subprocess.run(["make", "-s", ".env", f"PY={sys.executable}"], cwd=tmp_path, check=True, capture_output=True)

    settings = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines()
                    if line and not line.startswith("#"))
    assert settings["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend"
    assert settings["EMAIL_FILE_PATH"] == "var/mail"
    assert len(settings["SECRET_KEY"]) > 40


@pytest.mark.slow  # a fresh settings module per environment, in a subprocess
@pytest.mark.parametrize("backend", ["locmem", "filebased", "console"])
def test_mail_works_whatever_backend_the_environment_picks_over_the_dot_env_folder(tmp_path, backend):
    """make's .env names a mail folder; a backend chosen in the environment (as the test clusters pick locmem)
    must still send, and only the filebased one writes under the folder."""
    env = {**os.environ, "EMAIL_BACKEND": f"django.core.mail.backends.{backend}.EmailBackend",
           "EMAIL_FILE_PATH": str(tmp_path / "mail")}
    sent = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from django.core.mail import send_mail; print('sent', send_mail('s', 'b', 'a@x.example', ['b@x.example']))"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)

    assert "sent 1" in sent.stdout, sent.stderr[-2000:]
    written = list((tmp_path / "mail").glob("*.log")) if (tmp_path / "mail").exists() else []
    assert len(written) == (1 if backend == "filebased" else 0)
