"""`manage.py jobs …`: the operators' CLI, thin over services and the read modules (progress, statistics, pages).

Every subcommand takes --json. Bad input exits non-zero with one line and writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from partitions import conf
from partitions.core import humanize, validation
from partitions.core.encoding import dumps
from partitions.core.exceptions import InvalidTransition, PartitionsError, did_you_mean, error_line
from partitions.core.states import JOB_TERMINAL, JobStatus, PartitionStatus
from partitions.core.waits import sleep_for
from partitions.jobtypes import registry
from partitions.management.cli_arguments import (
    DEADLINE_HELP,
    Pair,
    age_arg,
    job_id_arg,
    list_limit,
    param_pair,
    parse_deadline,
    parse_params,
    rate_arg,
    whole_number,
)
from partitions.management.cli_output import (
    REDRAW,
    ended_line,
    job_summary,
    knob_line,
    list_lines,
    plan_rows,
    progress_line,
    projection_line,
    quiet_logs,
    throttle_line,
)
from partitions.management.cli_parser import JobEnded, OneLineErrors, OneLineParser
from partitions.management.failures_cli import REASON_HELP, FailureCommands
from partitions.management.sample_cli import SampleCommands, sample_text
from partitions.management.schedules_cli import ScheduleCommands
from partitions.models import Job, JobEvent, Partition
from partitions.operations import knob, services
from partitions.operations.retention import history_prune
from partitions.reads import verification
from partitions.reads.estimates import plan_estimate
from partitions.reads.pages import job_get
from partitions.reads.statistics import job_run_statistics
from partitions.wording import presenters

ACTOR = "cli"

log = logging.getLogger(__name__)


class Command(OneLineErrors, SampleCommands, ScheduleCommands, FailureCommands, BaseCommand):
    help = "Start, watch, steer and schedule partitioned jobs."
    ACTOR = ACTOR

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, parser_class=OneLineParser, metavar="subcommand")

        def add(name: str, help_text: str, *, job_id: bool = False):
            p = sub.add_parser(name, help=help_text)
            p.add_argument("--json", action="store_true", help="machine-readable output")
            if job_id:
                p.add_argument("job_id", type=job_id_arg)
            return p

        add("types", "list registered job types and their params")
        start = add("start", "validate params and start a job")
        start.add_argument("type_name")
        start.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", type=param_pair)
        start.add_argument("--max-parallel", type=whole_number, default=0)
        start.add_argument("--priority", type=whole_number, default=0)
        start.add_argument("--deadline", help=DEADLINE_HELP)
        start.add_argument("--dedupe-key")
        start.add_argument("--rate", type=rate_arg, default=validation.UNSET,
                           help="items/s across the fleet, or none (default: the job type's)")
        start.add_argument("--pause-ms", type=whole_number, default=validation.UNSET,
                           help="pause after each batch (default: the job type's)")
        start.add_argument("--notify", action="append", default=[], metavar="CHANNEL",
                           help="this run's channels instead of the defaults: email:ADDRESS, webhook:NAME or none")
        start.add_argument("--dry-run", action="store_true", help="print the planned partitions, write nothing")
        start.add_argument("--wait", action="store_true", help="show progress until the job ends")
        self.add_sample_arguments(start)
        listing = add("list", "recent jobs")
        listing.add_argument("--status", choices=list(JobStatus.values))
        listing.add_argument("--limit", type=list_limit, default=20)
        status = add("status", "one job's progress", job_id=True)
        status.add_argument("--watch", action="store_true", help="show progress until the job ends")
        retry = add("retry", "retry failed partitions (or --subjobs: failed sub-jobs; --reason: those of one reason)",
                    job_id=True)
        retry.add_argument("--subjobs", action="store_true")
        retry.add_argument("--reason", help=f"only the failed and skipped items of one reason: {REASON_HELP}")
        throttle = add("throttle", "change a job's rate limit, pause or health override while it runs", job_id=True)
        throttle.add_argument("--rate", type=rate_arg, default=validation.UNSET, help="items/s, or none")
        throttle.add_argument("--pause-ms", type=whole_number, default=validation.UNSET)
        health = throttle.add_mutually_exclusive_group()
        health.add_argument("--ignore-health", dest="ignore_health", action="store_true", default=None,
                            help="run even when a health check fails")
        health.add_argument("--respect-health", dest="ignore_health", action="store_false",
                            help="let health checks hold the job again")
        parts = add("partitions", "a job's partitions: status, progress, batch size", job_id=True)
        parts.add_argument("--status", choices=list(PartitionStatus.values))
        parts.add_argument("--limit", type=list_limit, default=50)
        add("cancel", "cancel a job", job_id=True)
        add("pause", "pause a job (running partitions stop at their next batch)", job_id=True)
        add("resume", "resume a paused job", job_id=True)
        knob = add("set", "change a live job's max parallel (the time/cost knob) or deadline", job_id=True)
        knob.add_argument("--max-parallel", type=whole_number, help="partitions in flight at most (0 = no cap)")
        knob.add_argument("--deadline", help=f"{DEADLINE_HELP}, or none to clear it")
        add("verify", "prove a job complete: its committed partitions cover the planned key space exactly and "
                      "its job type's invariant holds (exit 1 with the reasons when not)", job_id=True)
        events = add("events", "a job's event timeline", job_id=True)
        events.add_argument("--limit", type=list_limit, default=50)
        prune = add("prune", "delete finished jobs' history (partition events, samples, sub-jobs) past an age")
        prune.add_argument("--older-than", type=age_arg, help="e.g. 30d (default: PARTITIONS_RETENTION_DAYS)")
        prune.add_argument("--batch-size", type=list_limit, default=None, help="rows per DELETE")
        prune.add_argument("--force", action="store_true",
                           help="allow an --older-than under the floor (PARTITIONS_PRUNE_FLOOR_SECONDS, a day)")
        self.add_schedule_arguments(add, whole_number=whole_number, rate_arg=rate_arg)
        self.add_failure_arguments(add, list_limit=list_limit)

    def handle(self, *args, action: str, **options):
        self.as_json = options["json"]
        try:
            with quiet_logs(options.get("verbosity", 1)):
                getattr(self, f"do_{action.replace('-', '_')}")(**options)
        except PartitionsError as exc:
            raise CommandError(str(exc)) from exc

    def emit(self, data: Any, text: str) -> None:
        self.stdout.write(dumps(data, indent=2) if self.as_json else text)

    def do_types(self, **options):
        types = {
            name: {"label": jt.label, "params": {f: type(field).__name__ for f, field in jt.Params.base_fields.items()}}
            for name, jt in registry.all_types().items()
        }
        lines = [f"{name:40} {', '.join(info['params']) or '-'}" for name, info in types.items()]
        self.emit(types, "\n".join(lines))

    def do_start(self, *, type_name: str, param: list[Pair], max_parallel: int, priority: int, deadline: str | None,
                 dedupe_key: str | None, dry_run: bool, wait: bool, rate, pause_ms, notify: list[str],
                 sample: int | None = None, sample_items: int | None = None, **options):
        self.check_sample_options(dry_run=dry_run, sample=sample, sample_items=sample_items)
        params = self.params_of(type_name, param)
        when = None if deadline is None else parse_deadline(deadline)
        throttle = {"rate_limit": rate, "pause_ms": pause_ms}
        if dry_run:
            run = validation.run_options(max_parallel=max_parallel, priority=priority, deadline=when,
                                         dedupe_key=dedupe_key,
                                         **{k: v for k, v in throttle.items() if v is not validation.UNSET})
            try:
                plans = services.job_preview(type_name, params)
            except PartitionsError:
                raise
            except Exception as exc:  # the job type's split failed: one line, the traceback goes to the log
                log.exception("dry run of %s failed", type_name)
                raise CommandError(f"dry run failed: {error_line(exc)}") from exc
            rows = plan_rows(plans)
            lines = [f"{r['seq']:>5} {r['kind']:7} {r['bounds']:60} ~{humanize.plural(r['estimated'], 'item')}"
                     if "gap" not in r else f"{'…':>5} {r['text']}" for r in presenters.preview_rows(plans)]
            total = sum(r["estimated_items"] for r in rows)
            limit = registry.get(type_name).rate_limit if rate is validation.UNSET else rate
            estimate = plan_estimate(type_name, total, deadline=when, rate_limit=limit)
            text = "\n".join([*lines, f"{presenters.preview_counts(plans)} (dry run: nothing written)",
                              f"estimated duration: {humanize.estimate(estimate)}"])
            report = {"dry_run": True, "partitions": rows, "estimate": asdict(estimate)}
            if sample is not None:
                report["sample"] = self.sample_of(type_name, params, sample=sample, sample_items=sample_items,
                                                  options=run, rate=rate, plans=plans)
                text += "\n" + sample_text(report["sample"])
            self.emit(report, text)
            return
        job, created = services.job_start(type_name, params, actor=ACTOR, max_parallel=max_parallel,
                                          priority=priority, deadline=when, dedupe_key=dedupe_key, notify=notify,
                                          **throttle)
        if not wait:
            verb = "started" if created else "already active (dedupe key)"
            self.emit({**job_summary(job), "created": created}, f"job {job.pk} {verb}: {job.type_name}")
            return
        self.stderr.write(f"job {job.pk} {'started' if created else 'already active'}: {job.type_name}")
        self.follow(job.pk)

    def do_list(self, *, status: str | None, limit: int, **options):
        jobs = Job.objects.order_by("-id")
        if status:
            jobs = jobs.filter(status=status)
        summaries = [job_summary(job) for job in jobs[:limit]]
        self.emit(summaries, "\n".join(list_lines(summaries)) if summaries else "no jobs")

    def do_status(self, *, job_id: int, watch: bool, **options):
        job = job_get(job_id)
        if watch:
            self.follow(job.pk)
            return
        summary = job_summary(job)
        proof = (job.stats or {}).get("verification")
        outcome = job.error if job.status == JobStatus.FAILED else presenters.skipped_text(proof)
        self.emit({**summary, "statistics": job_run_statistics(job)},
                  progress_line(summary) + throttle_line(summary) + projection_line(summary)
                  + (f"\n{job.status}: {outcome}" if outcome else ""))

    def do_verify(self, *, job_id: int, **options):
        report = verification.job_verify(job_id)
        skipped = presenters.skipped_text(report.summary())
        if report.complete:
            text = (f"job {job_id} ({report.status}) is complete: its {humanize.plural(report.partitions, 'partition')}"
                    " cover the planned key space, every sub-job is handled and its invariant holds"
                    + (f"; {skipped}" if skipped else "")
                    + "".join(f"; not checked: {what}" for what in report.unchecked))
        else:
            text = "\n".join([f"job {job_id} ({report.status}) is not complete:",
                              *(f"  - {reason}" for reason in report.reasons)])
        self.emit(report.as_dict(), text)
        if not report.complete:  # the report above, then one line on stderr (exit 1)
            raise CommandError(f"job {job_id} is not complete: {report.reason}")

    def do_throttle(self, *, job_id: int, rate, pause_ms, ignore_health: bool | None, **options):
        job = services.job_throttle(job_id, actor=ACTOR, rate_limit=rate, pause_ms=pause_ms,
                                    ignore_health=ignore_health)
        summary = job_summary(job)
        self.emit(summary, f"job {job_id} throttle:{throttle_line(summary) or ' none'}")

    def do_partitions(self, *, job_id: int, status: str | None, limit: int, **options):
        parts = Partition.objects.filter(job=job_get(job_id)).order_by("seq")
        if status:
            parts = parts.filter(status=status)
        rows = [{"seq": p.seq, "id": p.pk, "status": p.status, "bounds": p.bounds_display,
                 "estimated_items": p.estimated_items, "done_items": p.done_items, "failed_items": p.failed_items,
                 "batch_size": p.batch_size, "split_from": p.split_from_id, "attempts": p.attempts,
                 "lease_owner": p.lease_owner,
                 "checkpointed_at": p.checkpointed_at} for p in parts[:limit]]
        lines = [f"{r['seq']:>5} {r['status']:10} {r['done_items']:>10,}/{r['estimated_items']:<10,} "
                 f"batch {r['batch_size'] or '-':>6}  {r['bounds']}"
                 + (f"  (split from partition {r['split_from']})" if r["split_from"] else "") for r in rows]
        self.emit(rows, "\n".join(lines) or "no partitions")

    def do_retry(self, *, job_id: int, subjobs: bool, reason: str | None, **options):
        subjobs = subjobs or reason is not None
        key, what = ("subjobs_retried", "sub-jobs") if subjobs else ("partitions_retried", "partitions")
        count = (services.subjobs_retry(job_id, None, actor=ACTOR, reason=reason) if subjobs
                 else services.job_retry_failed(job_id, actor=ACTOR))
        self.emit({"job": job_id, key: count},
                  f"job {job_id}: {count:,} failed {what} retried" if count
                  else f"job {job_id} has no failed {what} to retry")

    def do_cancel(self, *, job_id: int, **options):
        job_get(job_id)
        job = services.job_cancel(job_id, actor=ACTOR, reason="cancelled from the CLI")
        self.emit(job_summary(job), f"job {job_id} cancelled")

    def do_pause(self, *, job_id: int, **options):
        job_get(job_id)
        self.emit(job_summary(services.job_pause(job_id, actor=ACTOR)), f"job {job_id} paused")

    def do_resume(self, *, job_id: int, **options):
        # job_resume's transition to running is also allowed from failed and planning (it would reopen a failed
        # job without retrying anything): resume means paused only. Narrows, not closes, the race: see services.
        job = job_get(job_id)
        if job.status != JobStatus.PAUSED:
            raise InvalidTransition("Job", job_id, job.status, JobStatus.RUNNING)
        self.emit(job_summary(services.job_resume(job_id, actor=ACTOR)), f"job {job_id} resumed")

    def do_set(self, *, job_id: int, max_parallel: int | None, deadline: str | None, **options):
        job_get(job_id)
        changes: dict[str, Any] = {}
        if max_parallel is not None:
            changes["max_parallel"] = max_parallel
        if deadline is not None:
            changes["deadline"] = None if deadline.strip().lower() == "none" else parse_deadline(deadline)
        if not changes:
            raise CommandError("nothing to change: give --max-parallel and/or --deadline")
        job = knob.job_set(job_id, actor=ACTOR, **changes)
        self.emit(job_summary(job), f"job {job_id}: {knob_line(job, changes)}")

    def do_events(self, *, job_id: int, limit: int, **options):
        job = job_get(job_id)
        events = list(JobEvent.objects.filter(job=job).order_by("-id")[:limit])[::-1]
        rows = [{"at": e.created_at, "type": e.type, "actor": e.actor, "partition": e.partition_id, "data": e.data}
                for e in events]
        lines = [f"{humanize.when(e.created_at)}  {e.type:26} {e.actor:32} "
                 f"{'p' + str(e.partition_id) if e.partition_id else '':7} {humanize.changes(e.data)}"
                 for e in events]
        self.emit(rows, "\n".join(lines))

    def do_prune(self, *, older_than: timedelta | None, batch_size: int | None, force: bool, **options):
        if older_than is None:
            if not conf.get("RETENTION_DAYS"):
                raise CommandError("PARTITIONS_RETENTION_DAYS is off: give --older-than")
            older_than = timedelta(days=conf.get("RETENTION_DAYS"))
        report = history_prune(older_than=older_than, batch_size=batch_size or conf.get("PRUNE_BATCH"), force=force)
        counts = (humanize.plural(report.events, "event"), humanize.plural(report.samples, "sample"),
                  humanize.plural(report.subjobs, "sub-job"))
        self.emit(report.as_dict(), f"pruned {humanize.plural(report.jobs, 'job')}: {', '.join(counts)} in "
                                    f"{humanize.plural(report.statements, 'statement')}")

    # helpers ----------------------------------------------------------------------------

    @staticmethod
    def params_of(type_name: str, pairs: list[Pair]) -> dict[str, str]:
        """--param pairs for `type_name`, refusing names its Params form does not have (naming the closest)."""
        params = parse_params(pairs)
        known = registry.get(type_name).Params.base_fields
        unknown = sorted(set(params) - set(known))
        if unknown:
            named = ", ".join(f"{name}{did_you_mean(name, known)}" for name in unknown)
            takes = ", ".join(known) or "none"
            raise CommandError(f"invalid params for {type_name}: unknown {named}; it takes {takes}")
        return params

    def follow(self, job_id: int, interval: float = 1.0) -> None:
        """Redraw a progress line until the job ends; exit 1 if it ended failed or cancelled."""
        interactive = self.stderr.isatty()  # the command's stream (call_command may redirect it), not sys.stderr
        while True:
            job = Job.objects.get(pk=job_id)
            summary = job_summary(job)
            line = progress_line(summary) + projection_line(summary)
            # On a terminal the line is redrawn in place, clearing what a longer previous line left.
            self.stderr.write((REDRAW + line) if interactive else line, ending="" if interactive else "\n")
            if job.status in JOB_TERMINAL:
                break
            sleep_for(interval)
        if interactive:
            self.stderr.write("")
        self.emit(summary, ended_line(summary))
        if job.status != JobStatus.SUCCEEDED:
            raise JobEnded(f"job {job_id} ended {job.status}", returncode=1)
