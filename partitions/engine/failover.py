"""The database went away or stopped taking writes (a failover): the one place that says so, and the one reaction.

A primary that crashes takes every connection with it (psycopg's OperationalError or InterfaceError, with no
SQLSTATE, or 08xxx / 57P01-57P03 as it shuts down); a server that was demoted, or a pooler that now reaches a
standby, refuses writes with SQLSTATE 25006 (read_only_sql_transaction) on a connection that still looks
healthy, so Django would keep it. Either way the reaction is the same: drop the connection, and the next use
connects again, where libpq's multi-host URL with target_session_attrs=read-write finds the new primary.

What must not happen is that a worker carries on under a lease it took before the loss: with asynchronous
replication the new primary may not have the last checkpoints (nor even the claim, whose lease token may then
be handed out again), so a run that lost its database ends without writing anything more (`worker.run`),
and the partition lapses there by its backend identity or, at worst, by lease time, and resumes from the
checkpoint that survived, with the effects that survived with it.
"""

from __future__ import annotations

import logging
import time

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

from partitions.core.exceptions import error_line
from partitions.engine.sql import queries

log = logging.getLogger(__name__)

#: read_only_sql_transaction: the server is (now) a standby, or refuses writes.
READ_ONLY = "25006"
#: admin_shutdown, crash_shutdown, cannot_connect_now: the server is going away or not back yet.
SHUTTING_DOWN = frozenset({"57P01", "57P02", "57P03"})
#: First wait between two reconnect attempts, doubled up to RECONNECT_MAX_SECONDS.
RECONNECT_SECONDS = 0.25
RECONNECT_MAX_SECONDS = 2.0


def database_lost(exc: BaseException | None) -> bool:
    """Whether `exc` (or what it was raised from or during) says the database is gone or read-only: reconnect."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is not None:
            # A statement or lock timeout is an OperationalError too, of a server that is fine.
            if sqlstate == READ_ONLY or sqlstate in SHUTTING_DOWN or sqlstate.startswith("08"):
                return True
        elif isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or (
                isinstance(exc, OperationalError | InterfaceError) and exc.__cause__ is None):
            return True  # raised by the client: no server to give a SQLSTATE (refused, closed, reset)
        exc = exc.__cause__ or exc.__context__
    return False


def connection_drop(what: str, exc: BaseException, alias: str = DEFAULT_DB_ALIAS) -> None:
    """`what` failed on the database: drop the connection, so the next use connects again (to whichever server
    takes writes then), and say why: one line for a lost or read-only database, the traceback otherwise."""
    if database_lost(exc):
        log.warning("%s: the database is gone or read-only (%s); reconnecting", what, error_line(exc))
    else:
        log.warning("%s failed", what, exc_info=exc)
    connections[alias].close()


def session(alias: str = DEFAULT_DB_ALIAS) -> object | None:
    """This thread's open database session (the driver's connection object; None when not connected), to tell
    later whether it was replaced."""
    return connections[alias].connection


def same_session(began_on: object | None, alias: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether this thread still talks to the server through the session a holder began on (`session()` then;
    True when that is unknown). A replaced session means a lost database was reconnected meanwhile, perhaps to a
    new primary without the holder's last checkpoints or claim: the holder then writes nothing more under its
    lease."""
    return began_on is None or connections[alias].connection is began_on


def writable(alias: str = DEFAULT_DB_ALIAS) -> bool:
    """Connect (again) and check that the server takes writes (`pg_is_in_recovery()`: behind a pooler libpq's
    target_session_attrs cannot tell); a read-only connection is dropped."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(queries["database_writable"])
            (ok,) = cursor.fetchone()
    except DatabaseError as exc:
        if not database_lost(exc):
            raise
        ok = False
    if not ok:
        connections[alias].close()
    return ok


def reconnect(*, within: float, alias: str = DEFAULT_DB_ALIAS) -> bool:
    """Drop the connection and connect again until a server that takes writes answers, for at most `within`
    seconds (a promotion takes a few); whether one did."""
    deadline, wait = time.monotonic() + within, RECONNECT_SECONDS
    connections[alias].close()
    while not writable(alias):
        if time.monotonic() + wait > deadline:
            return False
        time.sleep(wait)
        wait = min(2 * wait, RECONNECT_MAX_SECONDS)
    return True
