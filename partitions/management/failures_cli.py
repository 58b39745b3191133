"""`jobs failures ID [--reason R] [--status S] [--csv | --json]` and `jobs skip ID --reason R --note TEXT`: the
failure ledger on the command line (partitions.reads.ledger reads, the services act), mixed into the `jobs` command.
`jobs retry ID --reason R` (in the command) retries one reason."""

from __future__ import annotations

from django.core.management.base import CommandError

from partitions.core import humanize
from partitions.core.states import SUBJOB_LEDGER
from partitions.operations import services
from partitions.reads import ledger
from partitions.reads.ledger import FailedItem, FailureGroup
from partitions.reads.pages import job_get

REASON_HELP = "a failure reason exactly as `jobs failures ID` lists it (quote it)"


def _group_line(group: FailureGroup) -> str:
    split = f"{group.failed:,} failed" + (f", {group.skipped:,} skipped" if group.skipped else "")
    return (f"{group.count:>8,} {group.share:>6.1%}  {group.reason}\n"
            f"{'':16}{split}; first seen {humanize.when(group.first_seen)}, last seen {humanize.when(group.last_seen)}"
            f"; e.g. {group.example_key}: {group.example_error}")


def _item_line(item: FailedItem) -> str:
    return f"{item.key:24} {item.status:8} {item.attempts:>3}x  {item.error}" + (
        f"  (note: {item.note})" if item.note else "")


def _item_data(item: FailedItem) -> dict:
    return {"id": item.id, "key": item.key, "status": item.status, "attempts": item.attempts,
            "error_class": item.error_class, "reason": item.reason, "message": item.error,
            "first_seen": item.first_seen, "last_seen": item.last_seen, "partition": item.partition_id,
            "note": item.note}


class FailureCommands:
    """The ledger's subcommands (`add_failure_arguments`, `do_failures`, `do_skip`)."""

    @staticmethod
    def add_failure_arguments(add, *, list_limit) -> None:
        failures = add("failures", "a job's failed and skipped items grouped by reason (--reason: its items; "
                                   "--csv: one row per item)", job_id=True)
        failures.add_argument("--reason", help=REASON_HELP)
        failures.add_argument("--status", choices=sorted(SUBJOB_LEDGER), help="only failed, or only skipped items")
        failures.add_argument("--csv", action="store_true", help="every item (of --reason) as CSV, one row each")
        failures.add_argument("--limit", type=list_limit, default=50, help="items listed with --reason (not --csv)")
        skip = add("skip", "mark the failed items of one reason skipped, with a note (audited)", job_id=True)
        skip.add_argument("--reason", required=True, help=REASON_HELP)
        skip.add_argument("--note", required=True, help="why they are skipped (kept on each item and in the events)")

    def do_failures(self, *, job_id: int, reason: str | None, status: str | None, csv: bool, limit: int,
                    **options) -> None:
        if csv and self.as_json:
            raise CommandError("--csv and --json are two formats: give one")
        job_get(job_id)
        if reason is not None:
            ledger.reason_check(job_id, reason)
        if csv:
            for line in ledger.csv_lines(job_id, ledger.job_failed_items_all(job_id, reason=reason, status=status)):
                self.stdout.write(line, ending="")
            return
        if reason is not None or status is not None:
            items = ledger.job_failed_items(job_id, reason=reason, status=status, limit=limit + 1)
            more, items = len(items) > limit, items[:limit]  # one row more tells "more", without a count
            text = "\n".join(map(_item_line, items)) or f"job {job_id} has no {status or 'failed or skipped'} items"
            if more:
                text += f"\n… more than {limit:,}: --csv lists every item"
            self.emit({"job": job_id, "reason": reason, "status": status, "items": [_item_data(i) for i in items]},
                      text)
            return
        groups = ledger.job_failure_groups(job_id)
        head = (f"job {job_id}: {humanize.plural(groups.total, 'failed or skipped item')}, "
                f"{humanize.plural(groups.reasons, 'reason')}" if groups.total
                else f"job {job_id} has no failed or skipped items")
        lines = [head, *map(_group_line, groups.groups)]
        if groups.more:
            lines.append(f"… and {groups.more:,} more reasons")
        self.emit({"job": job_id, "total": groups.total, "reasons": groups.reasons,
                   "groups": [{"reason": g.reason, "count": g.count, "failed": g.failed, "skipped": g.skipped,
                               "share": round(g.share, 4), "error_class": g.error_class,
                               "example": {"key": g.example_key, "message": g.example_error},
                               "first_seen": g.first_seen, "last_seen": g.last_seen} for g in groups.groups]},
                  "\n".join(lines))

    def do_skip(self, *, job_id: int, reason: str, note: str, **options) -> None:
        count = services.subjobs_skip(job_id, reason=reason, note=note, actor=self.ACTOR)
        self.emit({"job": job_id, "reason": reason, "skipped": count},
                  f"job {job_id}: {humanize.plural(count, 'failed item')} of {reason!r} skipped" if count
                  else f"job {job_id} has no failed items of {reason!r} left to skip")
