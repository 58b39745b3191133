"""Wake-ups by LISTEN/NOTIFY: when a cluster's pusher looks at the broker queue, and when schedules are due.

Whatever creates work enqueues a task, and the enqueue sends `NOTIFY` on WORK_CHANNEL in the same statement
(`tasks.WakeupBroker`); a schedule row created or changed notifies SCHEDULES_CHANNEL (a trigger, so every path
that writes one is covered). Each cluster's pusher holds one `LISTEN` connection and looks at the queue when it
is told to, or when the safety net (PARTITIONS_WAKEUP_SAFETY_SECONDS) runs out: a notification is only a hint,
the queue rows are the truth, so a NOTIFY lost with its connection (dropped, PostgreSQL restarted) delays work
by at most the safety net, never loses it. After the listener reconnects it looks at once.

Behind a transaction pooler (PgBouncer in transaction mode) a LISTEN session cannot exist: either the LISTEN
connection goes straight to PostgreSQL (PARTITIONS_WAKEUP_LISTEN_URL; sending NOTIFY works through the pooler),
or PARTITIONS_WAKEUPS="poll" looks every `poll` seconds instead and reads the next schedule fire every
SCHEDULE_POLL_SECONDS. Nothing here imports django-q2: the broker in `partitions.tasks` drives a `Waiter`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import psycopg
from django.db import DatabaseError, connections

from partitions import conf
from partitions.engine.sql import queries

log = logging.getLogger(__name__)

WORK_CHANNEL = "partitions_work"
SCHEDULES_CHANNEL = "partitions_schedules"
#: The listener's application_name in pg_stat_activity (operators and tests find it by this name).
APPLICATION_NAME = "partitions-wakeups"
#: The longest single wait: a pusher checks its stop event between two dequeues, so it stops within this.
SLICE_SECONDS = 1.0
#: Poll mode: seconds between two reads of the next schedule fire (no NOTIFY tells the pusher of a change).
SCHEDULE_POLL_SECONDS = 1.0
#: Seconds between two fire requests while a schedule stays due (its fire runs on a worker meanwhile).
FIRE_AGAIN_SECONDS = 1.0
#: Reconnect backoff of a lost listener: first wait, doubling up to the safety net.
RECONNECT_SECONDS = 0.5


def listening() -> bool:
    """Whether wake-ups come by LISTEN/NOTIFY (else the pusher polls)."""
    return conf.get("WAKEUPS") == "listen"


def startup_message(poll_seconds: float) -> tuple[int, str]:
    """The line a pusher logs when it starts: its wake-up mode and what that costs an idle cluster."""
    if listening():
        return logging.INFO, (f"wake-ups: LISTEN {WORK_CHANNEL}, {SCHEDULES_CHANNEL}; safety-net look every "
                              f"{conf.get('WAKEUP_SAFETY_SECONDS'):g} s")
    return logging.WARNING, (
        f"wake-ups: polling the broker every {poll_seconds:g} s (PARTITIONS_WAKEUPS=poll, e.g. behind a "
        f"transaction pooler): an idle cluster costs ~{1 / poll_seconds + 1 / SCHEDULE_POLL_SECONDS:.0f} "
        "transactions/s; with a session connection for LISTEN it would cost well under 1")


@dataclass(frozen=True)
class Due:
    """What the pusher should do now."""

    #: Look at the broker queue (told to, safety net, or the listener came back).
    queue: bool = False
    #: A schedule's fire time has come: ask a worker to fire due schedules.
    schedules: bool = False


class Waiter:
    """The wake-up state of one pusher: its LISTEN connection, when to look next, when a schedule is due.

    Every `wait()` blocks at most SLICE_SECONDS (poll mode: the poll interval when there is nothing to do)
    and says what is due; `looked(found=…)` after a look keeps looking while the queue gives tasks.
    """

    def __init__(self, *, list_key: str, poll_seconds: float, alias: str = "default") -> None:
        self.list_key, self.poll_seconds, self.alias = list_key, poll_seconds, alias
        self.listen = listening()
        self.safety = conf.get("WAKEUP_SAFETY_SECONDS")
        self._conn: psycopg.Connection | None = None
        self._reconnect_at = 0.0
        self._reconnect_wait = RECONNECT_SECONDS
        now = time.monotonic()
        self._look_at = now  # look at once when the pusher starts
        self._schedules_read_at = now  # read the next fire at once
        self._fire_at = math.inf
        self.wakeups = 0  # notifications that woke this pusher (a seam, counted)

    # -- the pusher's loop ---------------------------------------------------------------------------------

    def wait(self) -> Due:
        """Block until something is due (at most a slice) and say what."""
        if self.listen:
            self._connection()  # listen first, then look: nothing notified in between is missed
        now = time.monotonic()
        if self._schedules_read_at <= now:
            self._read_next_fire()
        due = self._due(now)
        if due.queue or due.schedules:
            return self._mark(due, now)
        until = min(self._look_at, self._fire_at, self._schedules_read_at) - now
        if self.listen:
            self._listen_for(min(until, SLICE_SECONDS))
        else:
            time.sleep(max(0.0, min(until, self.poll_seconds)))
        now = time.monotonic()
        return self._mark(self._due(now), now)

    def looked(self, *, found: bool) -> None:
        """After a look: tasks found, look again at once (more may wait); none, wait for a wake-up."""
        now = time.monotonic()
        self._look_at = now if found else now + (self.safety if self.listen else self.poll_seconds)

    def look_failed(self) -> None:
        """A look failed (the server is away): look again after the reconnect backoff, not the safety net."""
        self._look_at = time.monotonic() + RECONNECT_SECONDS

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- internals -----------------------------------------------------------------------------------------

    def _due(self, now: float) -> Due:
        return Due(queue=self._look_at <= now, schedules=self._fire_at <= now)

    def _mark(self, due: Due, now: float) -> Due:
        if due.schedules:  # asked once; read again after the fire had time to move next_run_at
            self._fire_at = math.inf
            self._schedules_read_at = min(self._schedules_read_at, now + FIRE_AGAIN_SECONDS)
        return due

    def _listen_for(self, seconds: float) -> None:
        conn = self._conn
        if conn is None:  # the server is away: wait for the next reconnect attempt (looks go on meanwhile)
            time.sleep(max(0.0, min(seconds, self._reconnect_at - time.monotonic())))
            return
        try:
            notes = list(conn.notifies(timeout=max(0.0, seconds), stop_after=1))
        except psycopg.Error:
            log.warning("wake-ups: the LISTEN connection was lost; looking now, reconnecting", exc_info=True)
            self._lost()
            return
        now = time.monotonic()
        for note in notes:
            if note.channel == WORK_CHANNEL and note.payload in ("", self.list_key):
                self._look_at = now
            elif note.channel == SCHEDULES_CHANNEL:
                self._schedules_read_at = now
        self.wakeups += len(notes)

    def _connection(self) -> psycopg.Connection | None:
        if self._conn is not None:
            return self._conn
        if time.monotonic() < self._reconnect_at:
            return None
        try:
            if url := conf.get("WAKEUP_LISTEN_URL"):  # past a transaction pooler, straight to PostgreSQL
                conn = psycopg.connect(url, application_name=APPLICATION_NAME, autocommit=True)
            else:
                params = connections[self.alias].get_connection_params()
                conn = psycopg.connect(**{**params, "application_name": APPLICATION_NAME}, autocommit=True)
            conn.execute(queries["wakeups_listen"])
        except psycopg.Error:
            log.warning("wake-ups: cannot LISTEN (retrying in %.1f s)", self._reconnect_wait, exc_info=True)
            self._reconnect_at = time.monotonic() + self._reconnect_wait
            self._reconnect_wait = min(self._reconnect_wait * 2, self.safety)
            return None
        self._conn, self._reconnect_wait = conn, RECONNECT_SECONDS
        now = time.monotonic()
        self._look_at = self._schedules_read_at = now  # what was notified while nobody listened
        return conn

    def _lost(self) -> None:
        self.close()
        self._reconnect_at = time.monotonic() + self._reconnect_wait
        now = time.monotonic()
        self._look_at = self._schedules_read_at = now

    def _read_next_fire(self) -> None:
        """When the next schedule fires, from the database clock (None: no enabled schedule)."""
        now = time.monotonic()
        try:
            seconds = schedules_next_fire_in(self.alias)
        except DatabaseError:  # the server is away: try again with the next look
            log.warning("wake-ups: cannot read the next schedule fire", exc_info=True)
            connections[self.alias].close()
            seconds = None
        self._fire_at = math.inf if seconds is None else now + max(0.0, seconds)
        # A change notifies in listen mode, so the safety net is enough; poll mode reads again soon.
        self._schedules_read_at = now + (self.safety if self.listen else SCHEDULE_POLL_SECONDS)


def schedules_next_fire_in(alias: str = "default") -> float | None:
    """Seconds until the earliest enabled schedule's next fire (negative: overdue), on the database clock."""
    with connections[alias].cursor() as cursor:
        cursor.execute(queries["schedules_next_fire_in"])
        (seconds,) = cursor.fetchone()
    return None if seconds is None else float(seconds)

