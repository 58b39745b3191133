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


def test_the_events_page_lists_every_event_type_with_when_it_is_written():
    from partitions.core.events import EventType

    documented = {doc.type: doc for doc in event_vocabulary()}
    assert set(documented) == set(EventType.values)
    assert all(doc.when for doc in documented.values())
    assert documented["job_paused"].shapes == ("attempts (run 1, retry 1 …)", "rate measured afresh")
    assert "job_failed (prepare)" in documented["planning_failed"].notifies


def test_a_changed_default_makes_the_check_fail_with_the_command_to_run(monkeypatch):
    call_command("docs_reference", "--check")
    monkeypatch.setitem(conf.DEFAULTS, "LEASE_SECONDS", conf.DEFAULTS["LEASE_SECONDS"] + 1)
    assert stale_pages() == ["settings.md"]
    with pytest.raises(CommandError, match=f"docs/reference/settings.md .run {REGENERATE}"):
        call_command("docs_reference", "--check")
