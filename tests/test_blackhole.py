"""The blackhole relay the partition test cuts (tests/blackhole.py): while cut, a statement sent through it never
reaches the server and the session stays open; on heal it arrives, in order, and its answer comes back."""

from __future__ import annotations

import threading

import psycopg
import pytest
from django.db import connection

from tests.blackhole import Blackhole, upstream
from tests.support import WAIT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def session(application_name: str) -> tuple[str, str] | None:
    """(state, last statement) of the session with this name, as the server sees it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT state, query FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name = %s", [application_name])
        return cursor.fetchone()


def test_a_statement_sent_during_a_cut_reaches_the_server_only_on_heal_and_the_session_survives():
    settings = connection.settings_dict
    relay = Blackhole(upstream(settings))
    try:
        relayed = psycopg.connect(host="127.0.0.1", port=relay.port, dbname=settings["NAME"], user=settings["USER"],
                                  password=settings.get("PASSWORD") or None, application_name="relayed",
                                  autocommit=True)
        assert relayed.execute("SELECT 1").fetchone() == (1,)
        relay.cut()
        answer: list = []
        sender = threading.Thread(target=lambda: answer.append(relayed.execute("SELECT 'after the cut'").fetchone()))
        sender.start()
        sender.join(1)
        assert sender.is_alive() and not answer, "no answer through a cut link"
        assert session("relayed") == ("idle", "SELECT 1"), "the statement never reached the server; its session is open"
        relay.heal()
        sender.join(WAIT)
        assert answer == [("after the cut",)]
        assert session("relayed") == ("idle", "SELECT 'after the cut'")
        relayed.close()
    finally:
        relay.close()
