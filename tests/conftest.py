"""Tests run on a real PostgreSQL: DATABASE_URL, or the embedded server started here."""

import os

import pytest


def pytest_sessionstart(session):
    if not os.environ.get("DATABASE_URL"):
        from opsapp import devdb

        devdb.start()


@pytest.fixture
def db_url(django_db_setup) -> str:
    """A DATABASE_URL for the test database, for subprocesses (workers, qclusters)."""
    from urllib.parse import quote

    from django.db import connection

    s = connection.settings_dict
    host = quote(s["HOST"] or "", safe="")
    auth = quote(s["USER"] or "", safe="") + (f":{quote(s['PASSWORD'], safe='')}" if s.get("PASSWORD") else "")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{s['NAME']}"
