"""DATABASE_URL with several hosts (libpq multi-host): what Django's DATABASES gets, the URL handed to subprocesses,
the one clear error for a URL that could land on a standby, and a real connection past a server that is gone."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper

from opsapp.databases import database_from_url, database_url


@pytest.mark.parametrize(("url", "host", "port", "options"), [
    ("postgres://app@db1:5432,db2:5433/app?target_session_attrs=read-write",
     "db1,db2", "5432,5433", {"target_session_attrs": "read-write"}),
    ("postgres://app@db1,db2/app?target_session_attrs=primary", "db1,db2", "", {"target_session_attrs": "primary"}),
    ("postgres://app@/app?host=/run/pg-a,/run/pg-b&target_session_attrs=read-write",
     "", "", {"host": "/run/pg-a,/run/pg-b", "target_session_attrs": "read-write"}),
    ("postgres://app@/app?host=%2Frun%2Fpg-a%2C%2Frun%2Fpg-b&target_session_attrs=read-write",
     "", "", {"host": "/run/pg-a,/run/pg-b", "target_session_attrs": "read-write"}),
])
def test_a_multi_host_url_becomes_the_host_list_and_session_attrs_libpq_reads(url, host, port, options):
    database = database_from_url(url)
    assert (database["NAME"], database["USER"], database["HOST"], database["PORT"]) == ("app", "app", host, port)
    assert database["OPTIONS"] == options
    assert database["ENGINE"] == "django.db.backends.postgresql"
    again = database_from_url(database_url(database))  # what a subprocess (a qcluster) is given
    assert {k: again[k] for k in ("NAME", "USER", "HOST", "PORT", "OPTIONS")} == {
        k: database[k] for k in ("NAME", "USER", "HOST", "PORT", "OPTIONS")}


@pytest.mark.parametrize("url", [
    "postgres://app@db1,db2/app",
    "postgres://app@db1:5432,db2:5432/app?target_session_attrs=any",
    "postgres://app@/app?host=/run/pg-a,/run/pg-b&target_session_attrs=prefer-standby",
])
def test_several_hosts_without_read_write_sessions_is_one_clear_error(url):
    with pytest.raises(ImproperlyConfigured, match=r"several hosts.*target_session_attrs=read-write"):
        database_from_url(url)


def test_one_host_needs_no_session_attrs():
    assert database_from_url("postgres://app:secret@db1:5432/app")["HOST"] == "db1"


@pytest.mark.django_db
def test_django_connects_past_a_listed_server_that_is_gone(tmp_path):
    """The first host is a socket folder where no server listens (a lost primary): libpq moves on to the next."""
    real = connection.settings_dict["HOST"] or connection.settings_dict["OPTIONS"].get("host")
    options = {k: v for k, v in connection.settings_dict["OPTIONS"].items() if k != "host"}
    settings_dict = {**connection.settings_dict, "HOST": f"{tmp_path},{real}",
                     "OPTIONS": {**options, "target_session_attrs": "read-write"}}
    url = database_url(settings_dict)
    assert str(tmp_path) in url and "target_session_attrs=read-write" in url
    wrapper = DatabaseWrapper(settings_dict, alias="multi-host")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT current_database(), pg_is_in_recovery()")
            assert cursor.fetchone() == (connection.settings_dict["NAME"], False)
    finally:
        wrapper.close()
