"""The SQL registry: every statement named and described once in partitions/engine/sql/*.sql, statuses from `states`,
no SQL in the engine's Python outside the loader (run-time SQL is built from the registry's templates)."""

from __future__ import annotations

import ast
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models.functions import Now

from partitions.core.states import DeliveryStatus, JobStatus, PartitionStatus, SubJobStatus
from partitions.engine import claiming
from partitions.engine.lifecycle import TABLES, delivery_finish, timestamps_for
from partitions.engine.sql import build, conjunction, descriptions, load, placeholders, queries, templates
from partitions.models import Delivery, Job, JobEvent, Partition, SubJob
from partitions.worker.splitting import remaining
from tests.factories import make_job, make_partition

ENGINE = Path(__file__).resolve().parent.parent / "partitions"
#: The loader is the only engine module that may hold SQL text; nothing else is allowed, not even the run-time
#: builders (splits.py's keyset walk, worker/compiled.py's item fetch): they fill in the registry's templates.
LOADER = ENGINE / "engine" / "sql" / "__init__.py"
#: Two distinct upper-case SQL words in one string literal make it SQL ("SELECT … FROM", "… AND … IS NULL")…
SQL_WORDS = re.compile(r"\b(SELECT|FROM|WHERE|UPDATE|SET|INSERT|INTO|DELETE|JOIN|LIMIT|OFFSET|RETURNING|UNION"
                       r"|LATERAL|VALUES|ORDER BY|GROUP BY|FOR UPDATE|SKIP LOCKED|AND|OR|NOT|NULL|TRUE|FALSE|IS|IN|AS"
                       r"|WITH|EXISTS|ANY|CASE|WHEN|THEN|END)\b")
#: … and so does a piece of SQL's shape: a compared placeholder, a named parameter, a cast, a database function,
#: a row of placeholders, or one bare SQL word (" AND ", "TRUE" joining conditions).
SQL_SHAPE = re.compile(r"[=<>]\s*\(?%s|\bANY\(%s|%\(\w+\)s|::[a-z]"
                       r"|\b(statement_timestamp|coalesce|greatest|least|mod)\(|^\s*%s(\s*,\s*%s)*\s*$|^\s*(AND|OR|NOT|NULL|TRUE|FALSE)\s*$")
STATUSES = {str(s) for s in (*JobStatus, *PartitionStatus, *SubJobStatus, *DeliveryStatus)}


def looks_like_sql(text: str) -> bool:
    """Whether a string literal is SQL, or a piece of it."""
    return len(set(SQL_WORDS.findall(text))) >= 2 or SQL_SHAPE.search(text) is not None


def sql_literals(source: str) -> list[int]:
    """Lines of the string literals in `source` that are SQL (docstrings are prose, and not counted)."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and looks_like_sql(node.value)]


def test_every_statement_has_a_one_line_description_and_is_fully_expanded():
    assert len(queries) > 40
    for name, sql in [*queries.items(), *((name, text) for name, (_, text) in templates.items())]:
        assert descriptions[name].strip() and "\n" not in descriptions[name], name
        left = set(re.findall(r"\{(\w+)(?:\(\w+\))?\}", sql))
        assert left == set(templates[name][0] if name in templates else ()), f"{name} has an unexpanded fragment"
        assert not sql.lstrip().startswith("--"), name


def test_no_status_is_written_as_a_literal_in_the_registry():
    for path in (ENGINE / "engine" / "sql").glob("*.sql"):
        quoted = set(re.findall(r"'([a-z_]+)'", path.read_text()))
        assert not quoted & STATUSES, f"{path.name} spells statuses {quoted & STATUSES}: take them from states"


def test_the_statuses_in_the_statements_are_the_transition_tables():
    assert "p.status IN ('pending', 'running')" in queries["partition_claim"]  # sources of running
    assert "p.status IN ('running')" in queries["partitions_complete_if_held"]  # sources of succeeded
    assert "j.status IN ('pending', 'planning')" in queries["job_plan_claim"]
    assert "u.status NOT IN ('cancelled', 'failed', 'succeeded')" in queries["jobs_without_unfinished_partitions"]


def _engine_python():
    for path in ENGINE.rglob("*.py"):
        if "migrations" not in path.parts and path != LOADER:
            yield path


def test_no_engine_module_outside_the_loader_holds_sql():
    found = [f"{path.relative_to(ENGINE)}:{line}"
             for path in _engine_python() for line in sql_literals(path.read_text())]
    assert not found, f"SQL outside partitions/engine/sql: {found}"


@pytest.mark.parametrize("source", [
    'SQL = "SELECT * FROM ({scope}) AS _items WHERE {bounds} ORDER BY {order} LIMIT %s"',
    'cursor.execute("UPDATE partitions_job SET status = %(status)s")',
    'sql = "DELETE FROM partitions_jobevent WHERE job_id = ANY(%s)"',
    'bound = f"mod({column}, %s) = %s"',
    'bound = f"{seq} > %s"',
    'where = " AND ".join(bounds) or "TRUE"',
    'values = ", ".join(["%s"] * n)',
    'per = "%s::bigint"',
    'stamp = f"coalesce({alias}.{column}, statement_timestamp())"',
    'q = "p.status IN (\'pending\') AND p.lease_expires_at IS NULL"',
    'def f():\n    """Doc."""\n    return "SELECT 1 FROM t WHERE x"',
])
def test_sql_in_any_form_is_detected(source):
    assert sql_literals(source)


@pytest.mark.parametrize("source", [
    '"""A docstring may say SELECT … FROM … WHERE, FOR UPDATE SKIP LOCKED."""',
    'log.warning("giving up delivery %s (%s) after %s attempts: %s", 1, 2, 3, 4)',
    'log.info("partition %s: a batch timed out (%s); retrying with %d items", 1, 2, 3)',
    'MODE = "NOTIFY"',
    'HELP = "rows per DELETE"',
    'label = ", ".join(names)',
])
def test_prose_and_log_lines_are_not_sql(source):
    assert not sql_literals(source)


def test_every_statement_and_template_is_used_by_the_engine():
    text = "\n".join(path.read_text() for path in _engine_python())
    unused = [name for name in [*queries, *templates] if f'"{name}"' not in text]
    assert not unused, f"statements nobody runs: {unused}"


def test_a_template_is_built_from_exactly_its_parts():
    assert build("items_column", column='"seq"') == '_items."seq"'
    assert build("row_compare", row="a, b", op=">=", values=placeholders(2)) == "(a, b) >= (%s, %s)"
    assert conjunction([]) == "TRUE" and conjunction(["a", "b"]) == "a AND b"
    with pytest.raises(KeyError, match="takes the parts column"):
        build("items_column", column="x", extra="y")
    with pytest.raises(KeyError, match="takes the parts column"):
        build("items_column")


def test_a_template_keeps_its_parts_and_expands_the_rest(tmp_path):
    (tmp_path / "t.sql").write_text("-- template: t(scope, where)\n-- a wrapped scope\n"
                                    "SELECT 1 FROM ({scope}) s WHERE {where} AND s.status = {partition_running}\n")
    statements, described, built = load(tmp_path)
    assert statements == {} and described == {"t": "a wrapped scope"}
    assert built == {"t": (("scope", "where"), "SELECT 1 FROM ({scope}) s WHERE {where} AND s.status = \'running\'")}


@pytest.mark.parametrize(("text", "error"), [
    ("SELECT 1\n", "before the first"),
    ("-- name: a\nSELECT 1\n", "no one-line description"),
    ("-- name: a\n--\nSELECT 1\n", "no one-line description"),
    ("-- name: a\n-- one\nSELECT 1\n-- name: a\n-- two\nSELECT 2\n", "defined twice"),
    ("-- name: a\n-- uses a fragment nobody wrote\nSELECT {nothing(p)}\n", "unknown or recursive"),
    ("-- fragment: f(p)\n-- calls itself\n{f(p)}\n-- name: a\n-- loops\nSELECT {f(x)}\n", "unknown or recursive"),
    ("-- fragment: f(p)\n-- takes an alias\n{p}.id\n-- name: a\n-- gives none\nSELECT {f}\n", "takes (p)"),
    ("-- name: a\n-- a statement is not a fragment\nSELECT 1\n-- name: b\n-- uses it\nSELECT {a}\n", "unknown"),
    ("-- template: t(x)\n-- a template is not a fragment\n{x}\n-- name: b\n-- uses it\nSELECT {t}\n", "unknown"),
    ("-- template: t(x)\n-- a part unknown\nSELECT {y}\n", "unknown"),
    ("-- fragment: f(a, b)\n-- two aliases\n{a}.id = {b}.id\n", "takes one alias"),
])
def test_a_malformed_registry_is_one_clear_error_at_load(tmp_path, text, error):
    (tmp_path / "bad.sql").write_text(text)
    with pytest.raises((ValueError, KeyError), match=re.escape(error)):
        load(tmp_path)


def test_a_fragment_passes_its_alias_on_to_the_fragments_it_uses(tmp_path):
    (tmp_path / "ok.sql").write_text(
        "-- fragment: inner(p)\n-- inner\n{p}.status = {partition_running}\n"
        "-- fragment: outer(p)\n-- outer\n({inner(p)} AND {p}.id > 0)\n"
        "-- name: a\n-- uses outer with l\nSELECT 1 FROM t l WHERE {outer(l)}\n")
    statements, described, _ = load(tmp_path)
    assert statements == {"a": "SELECT 1 FROM t l WHERE (l.status = 'running' AND l.id > 0)"}
    assert described == {"a": "uses outer with l"}


# The one stale-step rule: a step lease has lapsed from the instant it expires (<=), for the claim and for tick.

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("status", "claim"), [
    (JobStatus.PLANNING, claiming.job_plan_claim),
    (JobStatus.FINALIZING, claiming.job_finalize_claim),
])
@pytest.mark.parametrize("offset", [-1.0, -0.001, 0.5, 60.0])
def test_claim_and_tick_agree_on_a_stale_step_either_side_of_its_expiry(no_dispatcher, status, claim, offset):
    job = make_job(status=status)
    Job.objects.filter(pk=job.pk).update(step_expires_at=Now() + timedelta(seconds=offset), step_owner="first")
    lapsed = offset < 0
    assert Job.objects.filter(claiming.step_lapsed_q(), pk=job.pk).exists() is lapsed
    if status == JobStatus.FINALIZING:
        Job.objects.filter(pk=job.pk).update(status=status)  # make_job's running job has no partition left
    token = claim(job.pk, worker_id="w", lease_seconds=30)
    assert (token is not None) is lapsed
    assert Job.objects.get(pk=job.pk).step_owner == ("w" if lapsed else "first")


def test_one_stale_step_rule_for_the_claims_and_tick():
    rule = "(j.step_expires_at <= statement_timestamp())"  # lapsed from the instant it expires, like a lease
    assert "p.lease_expires_at <= statement_timestamp()" in queries["partitions_lease_lapsed"]
    for name in ("job_plan_claim", "job_finalize_claim", "jobs_step_lapsed"):
        assert rule in queries[name], name


@pytest.mark.django_db(transaction=True)
def test_a_delivery_ends_once_through_lifecycle(no_dispatcher):
    job = make_job()
    event = JobEvent.objects.create(job=job, type="job_succeeded", actor="t")
    delivery = Delivery.objects.create(job=job, event=event, kind="job_succeeded", channel="log",
                                       idempotency_key="k1", payload={})
    assert delivery_finish(delivery.pk, error=None) is True
    assert delivery_finish(delivery.pk, error="late failure") is False, "a sent delivery does not fail after"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error, delivery.sent_at is not None) == ("sent", "", True)
    other = Delivery.objects.create(job=job, event=event, kind="job_succeeded", channel="log2",
                                    idempotency_key="k2", payload={})
    assert delivery_finish(other.pk, error="gave up") is True
    assert Delivery.objects.filter(pk=other.pk, status="failed", last_error="gave up").exists()


@pytest.mark.django_db(transaction=True)
def test_named_locks_return_full_rows(no_dispatcher):
    job = make_job()
    part = make_partition(job, status=PartitionStatus.RUNNING)
    locked = claiming.job_locked(job.pk)
    assert (locked.pk, locked.status, locked.type_name) == (job.pk, job.status, job.type_name)
    assert claiming.job_locked(job.pk, no_key=True).pk == job.pk
    assert claiming.job_locked(-1) is None
    assert claiming.partition_locked_for_split(part.pk, part.bounds_version).pk == part.pk
    assert claiming.partition_locked_for_split(part.pk, part.bounds_version + 1) is None


@pytest.mark.parametrize("model", [Job, Partition, SubJob])
def test_the_orm_and_the_statements_stamp_the_same_columns_on_entering_a_status(model, tmp_path):
    name = model._meta.model_name
    for status in TABLES[model]:
        (tmp_path / "stamps.sql").write_text(f"-- name: s\n-- stamps\nUPDATE t x SET {{{name}_enters_{status}(x)}}\n")
        sql = load(tmp_path)[0]["s"]
        set_columns = re.findall(r"(\w+) = ", sql)
        assert set_columns == list(timestamps_for(model, status)), (name, status, sql)
    assert "started_at = coalesce(p.started_at, statement_timestamp())" in queries["partition_claim"]
    assert "finished_at = statement_timestamp(), lease_expires_at = NULL" in queries["partitions_complete_if_held"]


# The one "handled" expression: rendered from states.HANDLED_COUNTERS for SQL and for the ORM.

@pytest.mark.django_db
def test_the_orm_and_the_statements_count_the_same_items_as_handled(tmp_path):
    job = make_job()
    part = make_partition(job, status=PartitionStatus.RUNNING)
    Partition.objects.filter(pk=part.pk).update(done_items=7, failed_items=2, skipped_items=3, estimated_items=20)
    (tmp_path / "h.sql").write_text("-- name: h\n-- handled\nSELECT {handled(p)} FROM partitions_partition p "
                                    "WHERE p.id = %(id)s\n")
    with connection.cursor() as cursor:
        cursor.execute(load(tmp_path)[0]["h"], {"id": part.pk})
        in_sql = cursor.fetchone()[0]
    in_orm = Partition.objects.filter(pk=part.pk).annotate(h=claiming.handled_items()).get().h
    assert in_sql == in_orm == 12
    assert remaining(Partition.objects.get(pk=part.pk)) == 8


def test_no_engine_module_adds_up_the_handled_counters_by_hand():
    counter = "(done_items|failed_items|skipped_items)"
    by_hand = re.compile(rf"{counter}\W{{0,4}}\s*[+-]\s*\W{{0,4}}\w*\W{{0,3}}{counter}")
    found = [str(path.relative_to(ENGINE)) for path in [*_engine_python(), *(ENGINE / "engine" / "sql").glob("*.sql")]
             if by_hand.search(path.read_text())]
    assert not found, f"'handled' spelled out again in {found}: use claiming.handled_items() or {{handled(p)}}"
    assert queries["jobs_sample_window"].count("(s.done_items + s.failed_items + s.skipped_items)") == 1
