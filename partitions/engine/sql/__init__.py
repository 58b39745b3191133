"""The SQL registry: every statement of the engine, loaded once from the `.sql` files beside this module.

Each file holds named sections, Procrastinate-style:

    -- name: partition_checkpoint_if_held
    -- One line saying what it does (the first comment line is the description; more lines are notes).
    (the statement)

A `-- fragment: claimable(p)` section is a predicate defined once; a statement (or another fragment) uses it
as `{claimable(p)}`, `{claimable(l)}`, the argument replacing `{p}` in the fragment. A `-- template:
items_fetch(scope, bounds, order)` section is SQL that can only be completed at run time (it wraps a job type's
own queryset): `build("items_fetch", scope=…, bounds=…, order=…)` fills in its parts, which are identifiers and
SQL the ORM compiled, never values. The statuses come from
`partitions.core.states`, never as literals: `{partition_running}` is the quoted status, `{partition_terminal}` a
terminal set, `{partition_to_running}` the transition table's sources of a target (a write's guard); the event
types come from `partitions.core.events`: `{event_partition_claimed}` is the quoted type.
They are substituted here, once, at import: every statement is one constant string with %(name)s parameters,
so psycopg prepares it (a partial index such as partition_claimable_idx matches only status literals, which a
generic plan over a parameter could not prove).
"""

from __future__ import annotations

import re
from pathlib import Path

from partitions.core.events import EventType
from partitions.core.stamps import CLEAR, KEEP_OR_NOW, NOW, stamps
from partitions.core.states import (
    HANDLED_COUNTERS,
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    PARTITION_TERMINAL,
    PARTITION_TRANSITIONS,
    SUBJOB_HANDLED,
    SUBJOB_LEDGER,
    SUBJOB_TERMINAL,
    SUBJOB_TRANSITIONS,
    DeliveryStatus,
    JobStatus,
    PartitionStatus,
    SubJobStatus,
    sources,
)

_HEADER = re.compile(r"^-- (name|fragment|template): (\w+)(?:\(([\w, ]+)\))?\s*$", re.MULTILINE)
_USE = re.compile(r"\{(\w+)(?:\((\w+)\))?\}")


def _quoted(values) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


def _vocabulary() -> dict[str, str]:
    """The status and event words a statement may use, derived from `partitions.core.states` and
    `partitions.core.events`."""
    words: dict[str, str] = {}
    for model, statuses, terminal, table in (
        ("job", JobStatus, JOB_TERMINAL, JOB_TRANSITIONS),
        ("partition", PartitionStatus, PARTITION_TERMINAL, PARTITION_TRANSITIONS),
        ("subjob", SubJobStatus, SUBJOB_TERMINAL, SUBJOB_TRANSITIONS),
    ):
        words[f"{model}_terminal"] = _quoted(terminal)
        for status in statuses:
            words[f"{model}_{status}"] = f"'{status}'"
            words[f"{model}_to_{status}"] = _quoted(sources(table, status))
    words.update({f"delivery_{status}": f"'{status}'" for status in DeliveryStatus})
    words["subjob_handled"] = _quoted(SUBJOB_HANDLED)
    words["subjob_ledger"] = _quoted(SUBJOB_LEDGER)
    words.update({f"event_{event}": f"'{event}'" for event in EventType})
    return words


def _stamps_sql(model: str, target: str) -> str:
    """`col = expr, …` assignments on entering `target` (`{p}`: the updated row), from `stamps`."""
    render = {NOW: lambda c: "statement_timestamp()", CLEAR: lambda c: "NULL",
              KEEP_OR_NOW: lambda c: f"coalesce({{p}}.{c}, statement_timestamp())"}
    return ", ".join(f"{column} = {render[how](column)}" for column, how in stamps(model, target).items())


def _generated_fragments() -> dict[str, tuple[str, str | None, str]]:
    """Fragments rendered from Python tables the ORM reads too: `{partition_enters_running(p)}` … (what entering
    a status sets, as lifecycle stamps it) and `{handled(p)}` (a row's items handled so far)."""
    fragments = {f"{model}_enters_{status}": ("fragment", "p", _stamps_sql(model, status))
                 for model, statuses in (("job", JobStatus), ("partition", PartitionStatus), ("subjob", SubJobStatus))
                 for status in statuses}
    fragments["handled"] = ("fragment", "p", "(" + " + ".join(f"{{p}}.{column}" for column in HANDLED_COUNTERS) + ")")
    return fragments


def _sections(text: str, source: str):
    heads = list(_HEADER.finditer(text))
    if text[:heads[0].start()].strip() if heads else text.strip():
        raise ValueError(f"{source}: text before the first '-- name:' or '-- fragment:'")
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        body = text[head.end():following.start() if following else len(text)].strip("\n")
        lines = body.splitlines()
        notes = []
        while lines and lines[0].lstrip().startswith("--"):
            notes.append(lines.pop(0).lstrip()[2:].strip())
        if not notes or not notes[0]:
            raise ValueError(f"{source}: {head[2]} has no one-line description")
        yield head[1], head[2], head[3], notes[0], "\n".join(lines).strip()


Raw = dict[str, tuple[str, str | None, str]]  # name -> (kind, its alias or parts, body)


def _expand(text: str, raw: Raw, words: dict[str, str], stack: tuple[str, ...], parts: tuple[str, ...] = ()) -> str:
    """`text` with every status word and fragment use expanded (recursively); a template's `parts` stay."""
    def one(match: re.Match) -> str:
        name, argument = match[1], match[2]
        if name in words and argument is None:
            return words[name]
        if name in parts and argument is None:  # a template's part, filled in by build()
            return match[0]
        if name not in raw or raw[name][0] != "fragment" or name in stack:
            raise KeyError(f"unknown or recursive SQL fragment {{{match[0][1:-1]}}} in {stack[-1]}")
        _, param, body = raw[name]
        if (param is None) != (argument is None):
            raise KeyError(f"fragment {name} takes {'(' + param + ')' if param else 'no argument'}")
        if param is not None:  # `{p}`, and `p` passed on to a nested fragment: `{lease_lapsed(p)}`
            body = body.replace(f"{{{param}}}", argument)
            body = re.sub(rf"\{{(\w+)\({param}\)\}}", rf"{{\1({argument})}}", body)
        return _expand(body, raw, words, (*stack, name))
    return _USE.sub(one, text)


def load(directory: Path) -> tuple[dict[str, str], dict[str, str], dict[str, tuple[tuple[str, ...], str]]]:
    """(statements by name, descriptions by name, templates by name: their parts and text) of every `.sql` file
    in `directory`."""
    raw: Raw = {}
    descriptions: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        for kind, name, param, description, body in _sections(path.read_text(), path.name):
            if name in raw:
                raise ValueError(f"{path.name}: {name} is defined twice")
            if kind == "fragment" and param and "," in param:
                raise ValueError(f"{path.name}: fragment {name} takes one alias, not ({param})")
            raw[name] = (kind, param, body)
            descriptions[name] = description
    raw = {**_generated_fragments(), **raw}
    words = _vocabulary()
    statements = {name: _expand(body, raw, words, (name,)) for name, (kind, _, body) in raw.items() if kind == "name"}
    templates = {}
    for name, (kind, declared, body) in raw.items():
        if kind == "template":
            parts = tuple(part.strip() for part in (declared or "").split(",") if part.strip())
            templates[name] = (parts, _expand(body, raw, words, (name,), parts))
    return statements, {name: descriptions[name] for name in [*statements, *templates]}, templates


#: Every statement of the engine by name, its one-line description (templates' too), and the templates.
queries, descriptions, templates = load(Path(__file__).parent)


def _format_string(parts: tuple[str, ...], text: str) -> tuple[frozenset[str], str]:
    """A template as a str.format string (any other brace escaped), so filling it in costs one format call."""
    escaped = text.replace("{", "{{").replace("}", "}}")
    for part in parts:
        escaped = escaped.replace(f"{{{{{part}}}}}", f"{{{part}}}")
    return frozenset(parts), escaped


#: The templates ready to fill in: a drain builds its partitions' fetches with them, so they stay cheap.
_formats = {name: _format_string(parts, text) for name, (parts, text) in templates.items()}


def build(name: str, **parts: str) -> str:
    """Template `name` with its parts filled in (SQL compiled at run time from a job type's queryset)."""
    declared, text = _formats[name]
    if parts.keys() != declared:
        raise KeyError(f"template {name} takes the parts {', '.join(sorted(declared))}, not {', '.join(sorted(parts))}")
    return text.format_map(parts)


def placeholders(count: int) -> str:
    """`%s, %s, …`: the positional parameters of a row of `count` values."""
    return ", ".join(["%s"] * count)


def conjunction(conditions: list[str]) -> str:
    """The conditions ANDed (TRUE when there is none)."""
    return " AND ".join(conditions) or "TRUE"
