"""docs/reference/ is what the code says: each generated page (settings, metrics, CLI, events) rendered again
equals the committed file, so a changed setting, metric, option or event fails here until the docs are
regenerated with `python manage.py docs_reference`."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from partitions import conf
from partitions.management.commands.docs_reference import DOCS, PAGES, REGENERATE, event_vocabulary, stale_pages
from partitions.management.commands.jobs import Command as Jobs

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_reference_page_is_what_the_code_renders(name):
    committed = (DOCS / name).read_text(encoding="utf-8") if (DOCS / name).exists() else ""
    assert committed == PAGES[name](), f"docs/reference/{name} is stale: run `{REGENERATE}` and commit it"


def test_the_pages_cover_every_setting_subcommand_and_metric():
    settings, cli, metrics = PAGES["settings.md"](), PAGES["cli.md"](), PAGES["metrics.md"]()
    assert all(f"`PARTITIONS_{name}`" in settings for name in conf.DEFAULTS)
    parser = Jobs().create_parser("manage.py", "jobs")
    subcommands = next(a for a in parser._actions if a.dest == "action").choices
    assert len(subcommands) > 20 and all(f"\n## jobs {name}\n" in cli for name in subcommands)
    assert "`partitions_items_total` | counter | `type`, `outcome`" in metrics
    assert "`partitions_job_limited` | gauge | `job`, `type`, `limited_by`" in metrics


def test_the_event_scan_finds_each_way_the_engine_writes_an_event():
    written = {doc.type: doc.written_in for doc in event_vocabulary()}
    assert written["job_created"] == ("partitions/services.py",)  # lifecycle.event(job, "type", …)
    assert "partitions/claiming/steps.py" in written["planning_started"]  # a keyword naming it
    assert written["partition_claimed"] == ("partitions/sql/leases.sql",)  # in a statement of the registry
    assert written["subjob_{status}"] == ("partitions/worker/run.py",)  # a formatted type
    assert "partitions/deadline_alerts.py" in written["deadline_at_risk"]


def test_a_changed_default_makes_the_check_fail_with_the_command_to_run(monkeypatch):
    call_command("docs_reference", "--check")
    monkeypatch.setitem(conf.DEFAULTS, "LEASE_SECONDS", conf.DEFAULTS["LEASE_SECONDS"] + 1)
    assert stale_pages() == ["settings.md"]
    with pytest.raises(CommandError, match=f"docs/reference/settings.md .run {REGENERATE}"):
        call_command("docs_reference", "--check")
