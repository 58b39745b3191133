"""The SQL registry: every statement of the engine, loaded once from the `.sql` files beside this module.

Each file holds named sections, Procrastinate-style:

    -- name: partition_checkpoint_if_held
    -- One line saying what it does (the first comment line is the description; more lines are notes).
    UPDATE …

A `-- fragment: claimable(p)` section is a predicate defined once; a statement (or another fragment) uses it
as `{claimable(p)}`, `{claimable(l)}`, the argument replacing `{p}` in the fragment. The statuses come from
`partitions.states`, never as literals: `{partition_running}` is the quoted status, `{partition_terminal}` a
terminal set, `{partition_to_running}` the transition table's sources of a target (the guard of an UPDATE).
They are substituted here, once, at import: every statement is one constant string with %(name)s parameters,
so psycopg prepares it (a partial index such as partition_claimable_idx matches only status literals, which a
generic plan over a parameter could not prove).
"""

from __future__ import annotations

import re
from pathlib import Path

from partitions.stamps import stamps_sql
from partitions.states import (
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    PARTITION_TERMINAL,
    PARTITION_TRANSITIONS,
    SUBJOB_TERMINAL,
    SUBJOB_TRANSITIONS,
    DeliveryStatus,
    JobStatus,
    PartitionStatus,
    SubJobStatus,
    sources,
)

_HEADER = re.compile(r"^-- (name|fragment): (\w+)(?:\((\w+)\))?\s*$", re.MULTILINE)
_USE = re.compile(r"\{(\w+)(?:\((\w+)\))?\}")


def _quoted(values) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


def _vocabulary() -> dict[str, str]:
    """The status words a statement may use, all derived from `partitions.states`."""
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
    # Sub-jobs whose item was handled (succeeded, failed or skipped): terminal, except cancelled.
    words["subjob_handled"] = _quoted(SUBJOB_TERMINAL - {SubJobStatus.CANCELLED})
    return words


def _stamp_fragments() -> dict[str, tuple[str, str | None, str]]:
    """`{partition_enters_running(p)}` …: what entering a status sets, from the table lifecycle renders too."""
    return {f"{model}_enters_{status}": ("fragment", "p", stamps_sql(model, status, "{p}"))
            for model, statuses in (("job", JobStatus), ("partition", PartitionStatus), ("subjob", SubJobStatus))
            for status in statuses}


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


def load(directory: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(statements by name, descriptions by name) of every `.sql` file in `directory`."""
    raw: dict[str, tuple[str, str | None, str]] = {}
    descriptions: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        for kind, name, param, description, body in _sections(path.read_text(), path.name):
            if name in raw:
                raise ValueError(f"{path.name}: {name} is defined twice")
            raw[name] = (kind, param, body)
            descriptions[name] = description
    raw = {**_stamp_fragments(), **raw}
    words = _vocabulary()

    def expand(text: str, stack: tuple[str, ...]) -> str:
        def one(match: re.Match) -> str:
            name, argument = match[1], match[2]
            if name in words and argument is None:
                return words[name]
            if name not in raw or raw[name][0] != "fragment" or name in stack:
                raise KeyError(f"unknown or recursive SQL fragment {{{match[0][1:-1]}}} in {stack[-1]}")
            _, param, body = raw[name]
            if (param is None) != (argument is None):
                raise KeyError(f"fragment {name} takes {'(' + param + ')' if param else 'no argument'}")
            if param is not None:  # `{p}`, and `p` passed on to a nested fragment: `{lease_lapsed(p)}`
                body = body.replace(f"{{{param}}}", argument)
                body = re.sub(rf"\{{(\w+)\({param}\)\}}", rf"{{\1({argument})}}", body)
            return expand(body, (*stack, name))
        return _USE.sub(one, text)

    statements = {name: expand(body, (name,)) for name, (kind, _, body) in raw.items() if kind == "name"}
    return statements, {name: descriptions[name] for name in statements}


#: Every statement of the engine by name, and its one-line description.
queries, descriptions = load(Path(__file__).parent)
