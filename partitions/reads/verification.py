"""Completion proof: before a job counts as succeeded, its committed partitions cover the planned key space
exactly, every planned sub-job is handled, and the job type's invariant holds.

What "committed" means: a succeeded partition walked its whole bounds, so its bounds are committed; any other
partition commits nothing. Coverage, by kind (splits and retries included, since both only cut or move work):

- range: per group (same key and scope) the union of the committed half-open ranges `[lower, upper)` equals
  the planned spans, with no two ranges sharing a key (a split cuts `[lower, upper)` at a middle key);
- modulo: per group the committed classes `key % modulus = remainder` are pairwise disjoint and cover the
  planned classes exactly (a split turns `r mod N` into `r` and `r + N mod 2N`);
- items: every planned sub-job (seq 0..n-1, written with the plan) is in exactly one partition, and every
  sub-job of the job is succeeded or skipped (a retry partition holds the sub-jobs it moved).

The plan's side is recorded with it (`Job.key_space`, from `planned_key_space`), so a partition deleted or cut
short afterwards shows as a gap. The coverage functions are pure (bounds in, problems out);
`job_verify` reads what they need in a fixed number of queries, never one per partition or item: the
partitions' bounds (one), the sub-jobs' aggregate (one), who skipped (one, only when an operator did), and
whatever the job type's own `verify` reads.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from math import gcd, lcm
from typing import Any

from django.db.models import Count, Max, Q

from partitions.core.encoding import dumps
from partitions.core.events import EventType
from partitions.core.exceptions import error_line
from partitions.core.humanize import plural
from partitions.core.states import PARTITION_TERMINAL, PartitionStatus, SubJobStatus
from partitions.jobtypes import registry
from partitions.jobtypes.splits import PartitionPlan
from partitions.models import Job, JobEvent, Partition, SubJob, bounds_text
from partitions.reads.pages import job_get

log = logging.getLogger(__name__)

Kind = Partition.Kind
#: Problems of one kind a report lists; the rest are counted in one more line.
SHOWN = 5
#: The event an operator's skip with a note writes (`services.subjobs_skip`): who skipped, and why.
SKIP_EVENT = EventType.SUBJOBS_SKIPPED
#: Who skipped the items nobody skipped by hand: the job type's own code (`SkipItem`).
JOB_CODE = "job code (SkipItem)"

# The planned key space ------------------------------------------------------------------------------------------


def _group(kind: str, key: Any, scope: Any) -> str:
    return dumps([kind, key, scope], sort_keys=True)


def planned_key_space(plans: Sequence[PartitionPlan]) -> dict[str, Any]:
    """What a plan covers, as `Job.key_space` keeps it: per group of range partitions (same key and scope)
    their spans, adjacent ones merged; per group of modulo partitions their classes ([[1, 0]]: every integer,
    when they partition the integers); and how many sub-jobs it writes."""
    groups: dict[str, dict[str, Any]] = {}
    for plan in plans:
        if plan.kind not in (Kind.RANGE, Kind.MODULO):
            continue
        group = groups.setdefault(_group(plan.kind, plan.key, plan.scope),
                                  {"kind": plan.kind, "key": plan.key, "scope": plan.scope, "bounds": []})
        bounds = group["bounds"]
        if plan.kind == Kind.MODULO:
            bounds.append([plan.modulus, plan.remainder])
        elif bounds and bounds[-1][1] is not None and bounds[-1][1] == plan.lower:
            bounds[-1][1] = plan.upper
        else:
            bounds.append([plan.lower, plan.upper])
    for group in groups.values():
        if group["kind"] == Kind.MODULO and partition_the_integers(group["bounds"]):
            group["bounds"] = [[1, 0]]
    return {"groups": list(groups.values()), "sub_jobs": sum(len(plan.items) for plan in plans)}


# Ranges -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Edge:
    """One end of a half-open key range, ordered as the key: -inf (rank 0) < every key (rank 1) < +inf (2)."""

    rank: int
    value: tuple = ()
    json: Any = field(default=None, compare=False)


def _edge(values: Any, order: Callable[[Any], tuple], *, upper: bool) -> Edge:
    return Edge(2 if upper else 0) if values is None else Edge(1, order(values), values)


def _span_text(lower: Edge, upper: Edge) -> str:
    return bounds_text(Kind.RANGE, lower=lower.json, upper=upper.json)


def _merged(spans: Iterable[tuple[Edge, Edge]]) -> list[tuple[Edge, Edge]]:
    merged: list[tuple[Edge, Edge]] = []
    for lower, upper in sorted(spans):
        if merged and lower <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], upper))
        else:
            merged.append((lower, upper))
    return merged


def _minus(spans: list[tuple[Edge, Edge]], cut: list[tuple[Edge, Edge]]) -> list[tuple[Edge, Edge]]:
    """What of `spans` no span of `cut` covers (both sorted and merged)."""
    left = []
    for lower, upper in spans:
        start = lower
        for cut_lower, cut_upper in cut:
            if cut_upper <= start or cut_lower >= upper:
                continue
            if cut_lower > start:
                left.append((start, cut_lower))
            start = max(start, cut_upper)
        if start < upper:
            left.append((start, upper))
    return left


def range_problems(planned: Sequence[Sequence[Any]], committed: Sequence[tuple[str, Any, Any]], *,
                   order: Callable[[Any], tuple] = tuple, what: str = "the key") -> list[str]:
    """Gaps and overlaps of one group's committed ranges, (label, lower, upper) each with JSON key values
    (None: open), against its planned spans; `order` turns a key's JSON values into comparable values."""
    problems = []
    spans = sorted((_edge(lo, order, upper=False), _edge(hi, order, upper=True), label) for label, lo, hi in committed)
    reach: tuple[Edge, str] | None = None  # how far the ranges so far reach, and which one reaches there
    for lower, upper, label in spans:
        if lower >= upper:
            problems.append(f"{label} has an empty range {_span_text(lower, upper)}")
            continue
        if reach is not None and lower < reach[0]:
            problems.append(f"overlap: {label} {_span_text(lower, upper)} and {reach[1]} share keys of {what}")
        if reach is None or upper > reach[0]:
            reach = (upper, f"{label} (up to {_span_text(lower, upper)})")
    covered = _merged((lo, hi) for lo, hi, _ in spans if lo < hi)
    plan = _merged((_edge(lo, order, upper=False), _edge(hi, order, upper=True)) for lo, hi in planned)
    problems += [f"gap: no committed partition covers {_span_text(lo, hi)} of {what}"
                 for lo, hi in _minus(plan, covered)]
    problems += [f"{_span_text(lo, hi)} of {what} is committed but outside the planned key space"
                 for lo, hi in _minus(covered, plan)]
    return problems


# Modulo classes -----------------------------------------------------------------------------------------------


def _by_modulus(classes: Iterable[Sequence[Any]]) -> dict[int, list[tuple[int, Any]]]:
    by_modulus: dict[int, list[tuple[int, Any]]] = defaultdict(list)
    for modulus, remainder, *label in classes:
        by_modulus[modulus].append((remainder, label[0] if label else None))
    return by_modulus


def overlapping_classes(classes: Sequence[tuple[int, int, Any]], *, limit: int = 100) -> list[tuple[Any, Any]]:
    """Pairs of (modulus, remainder, label) classes that share an integer (r1 = r2 mod gcd(m1, m2)), at most
    `limit`: one pass per pair of distinct moduli, not per pair of classes."""
    by_modulus, pairs = _by_modulus(classes), []
    moduli = sorted(by_modulus)
    for i, a in enumerate(moduli):
        for b in moduli[i:]:
            g = gcd(a, b)
            seen: dict[int, list[Any]] = defaultdict(list)
            for remainder, label in by_modulus[a]:
                if a == b:
                    pairs += [(other, label) for other in seen[remainder % g]]
                seen[remainder % g].append(label)
            if a != b:
                pairs += [(other, label) for remainder, label in by_modulus[b] for other in seen.get(remainder % g, ())]
            if len(pairs) >= limit:
                return pairs[:limit]
    return pairs


def covered_share(modulus: int, remainder: int, family: dict[int, list[tuple[int, Any]]]) -> Fraction:
    """The share of the class `key % modulus = remainder` that the classes of `family` (by modulus, pairwise
    disjoint) cover: 1 when they cover all of it."""
    share = Fraction(0)
    for other, members in family.items():
        g = gcd(modulus, other)
        meeting = sum(1 for r, _ in members if r % g == remainder % g)
        share += Fraction(meeting * modulus, lcm(modulus, other))
    return share


#: The largest common modulus whose classes a gap is named in (beyond it, a gap is named by its share).
NAMED_MODULUS = 4096


def _uncovered(modulus: int, remainder: int, family: dict[int, list[tuple[int, Any]]]) -> list[tuple[int, int]]:
    """The classes mod the family's common modulus inside `key % modulus = remainder` that no class of `family`
    covers ([] when that modulus is too large to name them)."""
    common = lcm(modulus, *family)
    if common > NAMED_MODULUS:
        return []
    held = {m: {r for r, _ in members} for m, members in family.items()}
    return [(common, x) for x in range(remainder % modulus, common, modulus)
            if not any(x % m in rs for m, rs in held.items())]


def partition_the_integers(classes: Sequence[Sequence[int]]) -> bool:
    """Whether (modulus, remainder) classes cover every integer exactly once."""
    labelled = [(m, r, i) for i, (m, r) in enumerate(classes)]
    return not overlapping_classes(labelled, limit=1) and sum(Fraction(1, m) for m, _ in classes) == 1


def modulo_problems(planned: Sequence[Sequence[int]], committed: Sequence[tuple[int, int, str]], *,
                    what: str = "the key") -> list[str]:
    """Gaps and overlaps of one group's committed classes, (modulus, remainder, label) each, against its
    planned classes (pairwise disjoint)."""
    def text(modulus: int, remainder: int) -> str:
        return f"every key of {what}" if modulus == 1 else f"{what} % {modulus} = {remainder}"

    labels = {label: text(m, r) for m, r, label in committed}
    problems = [f"overlap: {a} ({labels[a]}) and {b} ({labels[b]}) share keys"
                for a, b in overlapping_classes(committed)]
    mine, plan = _by_modulus(committed), _by_modulus(planned)
    for modulus, remainder in planned:
        if (share := covered_share(modulus, remainder, mine)) >= 1:
            continue
        if missing := _uncovered(modulus, remainder, mine):
            named = ", ".join(text(*c) for c in missing[:SHOWN]) + (" …" if len(missing) > SHOWN else "")
        else:
            named = f"{1 - share} of {text(modulus, remainder)}"
        problems.append(f"gap: no committed partition covers {named}")
    problems += [f"{label} ({text(m, r)}) is committed but outside the planned key space"
                 for m, r, label in committed if covered_share(m, r, plan) < 1]
    return problems


# Reading one job -----------------------------------------------------------------------------------------------


@dataclass
class VerificationReport:
    """What `job_verify` found: the problems (gaps, overlaps, unhandled sub-jobs), the invariant's failure, and
    the skipped items with who skipped them and why."""

    job_id: int
    status: str
    partitions: int = 0
    problems: list[str] = field(default_factory=list)
    invariant: str | None = None
    skipped: int = 0
    skipped_by: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: What could not be checked (a pruned job's sub-jobs are gone).
    unchecked: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every planned key and item is committed and the invariant holds."""
        return not self.problems and self.invariant is None

    @property
    def reasons(self) -> list[str]:
        """The problems, SHOWN at most (the rest counted), then the invariant's failure."""
        shown = self.problems[:SHOWN]
        if len(self.problems) > SHOWN:
            shown.append(f"and {len(self.problems) - SHOWN:,} more")
        return shown + ([f"invariant failed: {self.invariant}"] if self.invariant is not None else [])

    @property
    def reason(self) -> str:
        """The reasons in one line (a failed job's error)."""
        return "; ".join(self.reasons)

    def summary(self) -> dict[str, Any]:
        """What a job's stats keep of it (`stats["verification"]`)."""
        return {"complete": self.complete, "skipped": self.skipped, "skipped_by": self.skipped_by,
                "notes": self.notes, **({} if self.complete else {"reasons": self.reasons})}

    def as_dict(self) -> dict[str, Any]:
        """Everything found, for `jobs verify --json`."""
        return {**asdict(self), "complete": self.complete, "reasons": self.reasons}


def job_verify(job_id: int, *, job: Job | None = None) -> VerificationReport:
    """The completion proof of one job; JobNotFound for an id that names none. A fixed number of queries: the job
    (unless given), its partitions, its sub-jobs' aggregate, the skip events (only when an operator skipped
    items), and what the job type's `verify` reads."""
    job = job or job_get(job_id)
    report = VerificationReport(job_id=job.pk, status=job.status)
    rows = list(Partition.objects.filter(job_id=job.pk).order_by("seq").values_list(
        "seq", "kind", "status", "key", "scope", "lower", "upper", "modulus", "remainder", "skipped_items"))
    report.partitions = len(rows)
    report.skipped = sum(row[-1] for row in rows)
    # A failed or cancelled partition commits nothing: its keys show as a gap unless committed ones hold them.
    unfinished = defaultdict(int)
    for row in rows:
        if row[2] not in PARTITION_TERMINAL:
            unfinished[row[2]] += 1
    if unfinished:
        report.problems.append(f"{plural(sum(unfinished.values()), 'partition')} not finished yet ("
                               + ", ".join(f"{status} {n:,}" for status, n in sorted(unfinished.items())) + ")")
    setup = _setup(job)
    planned = job.key_space or _whole_key_space(rows)
    report.problems += _coverage(planned, rows, setup)
    if job.pruned_at is None:
        report.problems += _subjob_problems(job.pk, planned.get("sub_jobs"), report)
    else:
        report.unchecked.append("its sub-jobs (deleted with its history by retention)")
    if report.complete and setup is not None:
        report.invariant = _invariant(*setup)
    return report


def _setup(job: Job) -> tuple[Job, Any, dict] | None:
    try:
        job_type = registry.get(job.type_name)
        return job, job_type, job_type.load_params(job.params)
    except Exception:  # a type removed since, or params it no longer takes: bounds compare as stored
        log.warning("job %s: its type cannot be loaded; its bounds compare as stored", job.pk, exc_info=True)
        return None


def _whole_key_space(rows: list[tuple]) -> dict[str, Any]:
    """The key space of a job planned before `Job.key_space`: each group its whole key (all of it, every
    integer); the sub-jobs present are the planned ones."""
    groups = {}
    for _, kind, _, key, scope, *_ in rows:
        if kind in (Kind.RANGE, Kind.MODULO):
            groups[_group(kind, key, scope)] = {"kind": kind, "key": key, "scope": scope,
                                                "bounds": [[None, None]] if kind == Kind.RANGE else [[1, 0]]}
    return {"groups": list(groups.values()), "sub_jobs": None}


def _coverage(planned: dict[str, Any], rows: list[tuple], setup: tuple[Job, Any, dict] | None) -> list[str]:
    """Each group's committed partitions against its planned bounds; a committed group the plan has not is
    outside the planned key space as a whole."""
    committed: dict[str, list[tuple]] = defaultdict(list)
    groups: dict[str, dict[str, Any]] = {}
    for seq, kind, status, key, scope, lower, upper, modulus, remainder, _ in rows:
        if status == PartitionStatus.SUCCEEDED and kind in (Kind.RANGE, Kind.MODULO):
            name = _group(kind, key, scope)
            groups.setdefault(name, {"kind": kind, "key": key, "scope": scope, "bounds": []})
            bounds = (lower, upper) if kind == Kind.RANGE else (modulus, remainder)
            committed[name].append((f"partition {seq}", *bounds))
    groups.update({_group(g["kind"], g["key"], g["scope"]): g for g in planned["groups"]})
    problems = []
    for name, group in groups.items():
        what = ", ".join(group["key"] or []) + (f" (scope {dumps(group['scope'], sort_keys=True)})"
                                                if group["scope"] else "")
        mine = committed.get(name, [])
        if group["kind"] == Kind.MODULO:
            problems += modulo_problems(group["bounds"], [(m, r, label) for label, m, r in mine], what=what)
            continue
        try:
            problems += range_problems(group["bounds"], mine, order=_order(setup, group), what=what)
        except TypeError as exc:  # keys a job type changed since: values of different types
            problems.append(f"the bounds of {what} cannot be compared: {error_line(exc)}")
    return problems


def _order(setup: tuple[Job, Any, dict] | None, group: dict[str, Any]) -> Callable[[Any], tuple]:
    """A key's JSON values as the key's fields' Python values (so they compare as the database orders them:
    datetimes as times, not as text); as stored when the job type cannot say."""
    if setup is None:
        return tuple
    job, job_type, params = setup
    try:
        model = job_type.queryset(job, params, group["scope"]).model
        fields = [model._meta.get_field(name) for name in group["key"]]
    except Exception:
        log.warning("job %s: no queryset for scope %s; its bounds compare as stored", job.pk, group["scope"],
                    exc_info=True)
        return tuple
    return lambda values: tuple(f.to_python(v) for f, v in zip(fields, values, strict=True))


#: A sub-job the plan wrote: in an items partition, or in a retry partition of one (its scope says items).
_PLANNED = Q(partition__kind=Kind.ITEMS) | Q(partition__kind=Kind.RETRY, partition__scope__items=True)
_HANDLED = [SubJobStatus.SUCCEEDED, SubJobStatus.SKIPPED]


def _subjob_problems(job_id: int, planned: int | None, report: VerificationReport) -> list[str]:
    """Every planned sub-job present once and every sub-job handled (one aggregate); who skipped (one more
    query, only when an operator skipped some)."""
    counts = SubJob.objects.filter(job_id=job_id).aggregate(
        planned=Count("id", filter=_PLANNED), seqs=Count("seq", filter=_PLANNED, distinct=True),
        last=Max("seq", filter=_PLANNED), by_hand=Count("id", filter=Q(status=SubJobStatus.SKIPPED) & ~Q(note="")),
        skipped=Count("id", filter=Q(status=SubJobStatus.SKIPPED)),
        **{status: Count("id", filter=Q(status=status)) for status in SubJobStatus if status not in _HANDLED})
    problems = []
    if planned is not None and (counts["planned"] != planned or counts["seqs"] != planned
                                or (planned and counts["last"] != planned - 1)):
        missing = planned - counts["seqs"]
        problems.append(f"{plural(missing, 'planned sub-job')} missing" if missing > 0
                        else f"{plural(counts['planned'], 'sub-job')} where the plan wrote {planned:,}")
    elif counts["planned"] != counts["seqs"]:
        problems.append(f"{plural(counts['planned'] - counts['seqs'], 'sub-job')} planned twice")
    unhandled = {status: counts[status] for status in SubJobStatus if status not in _HANDLED and counts[status]}
    if unhandled:
        problems.append(f"{plural(sum(unhandled.values()), 'sub-job')} not succeeded or skipped ("
                        + ", ".join(f"{status} {n:,}" for status, n in unhandled.items()) + ")")
    if counts["by_hand"]:
        skips = JobEvent.objects.filter(job_id=job_id, type=SKIP_EVENT).order_by("id").values_list("actor", "data")
        for actor, data in skips:
            if actor not in report.skipped_by:
                report.skipped_by.append(actor)
            report.notes.append(f"{actor.removeprefix('user:')}: {data.get('note', '')}")
    if counts["skipped"] > counts["by_hand"]:
        report.skipped_by.append(JOB_CODE)
    return problems


def _invariant(job: Job, job_type: Any, params: dict[str, Any]) -> str | None:
    """The job type's own check (`JobType.verify`): its failure reason, or None when it holds."""
    try:
        return job_type.verify(job, params)
    except Exception as exc:
        log.exception("the invariant of job %s raised", job.pk)
        return f"the check raised {error_line(exc)}"
