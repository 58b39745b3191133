"""Settings, health endpoint and migrations on a real PostgreSQL."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

REPO = Path(__file__).resolve().parent.parent


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Only what is given: neither .env nor the variables it put into this process's environment.
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "ENV_FILE": ""}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env={**base, **env},
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.slow
def test_missing_secret_key_with_debug_off_is_a_clear_startup_error():
    proc = run_manage("check", env={})
    assert proc.returncode != 0
    assert "SECRET_KEY is not set" in proc.stderr


@pytest.mark.slow
def test_debug_on_runs_without_a_secret_key():
    proc = run_manage("check", env={"DEBUG": "true"})
    assert proc.returncode == 0, proc.stderr


PRODUCTION = {
    "SECRET_KEY": "k" * 20 + "-production-like-secret-key-with-enough-entropy-123456",
    "ALLOWED_HOSTS": "ops.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://ops.example.com",
    "DATABASE_URL": "postgres://app:secret@db.example.com:5432/opsapp",
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
}


@pytest.mark.slow
def test_check_deploy_is_clean_with_production_environment():
    # The docs' command (docs/howto/configure.md): an empty ENV_FILE keeps a checkout's local .env out.
    proc = run_manage("check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION, "ENV_FILE": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


@pytest.mark.slow
def test_check_deploy_warns_when_it_reads_a_local_env_file(tmp_path):
    # What `make` writes into a checkout's .env for plain-HTTP serving fills the unset TLS variables.
    local = tmp_path / ".env"
    local.write_text("SECURE_SSL_REDIRECT=false\nSESSION_COOKIE_SECURE=false\n")
    proc = run_manage("check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION, "ENV_FILE": str(local)})
    assert proc.returncode != 0
    assert "security.W008" in proc.stderr and "security.W012" in proc.stderr


@pytest.mark.django_db
def test_healthz_answers_ok_when_the_database_answers():
    response = Client().get("/healthz", secure=True)
    assert response.status_code == 200
    assert response.json() == {"database": "ok"}


def healthz_with_database(**overrides: str):
    """GET /healthz with the default connection really opened with these settings, then restored.

    A second alias would not be used by the view, so the default connection itself is re-pointed.
    """
    original = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(overrides)
    try:
        return Client().get("/healthz", secure=True)
    finally:
        connection.close()
        connection.settings_dict.update(original)


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_without_details_when_no_server_listens(caplog):
    response = healthz_with_database(HOST="/nonexistent-socket-dir", PORT="")
    assert response.status_code == 503
    assert response.json() == {"database": "unavailable"}
    assert b"nonexistent-socket-dir" not in response.content
    assert "nonexistent-socket-dir" in caplog.text, "the log keeps the reason for operators"


@pytest.mark.django_db(transaction=True)
def test_healthz_does_not_name_the_socket_or_database_a_refusing_server_reports(caplog):
    # The real server answers "database … does not exist", naming its socket path too.
    response = healthz_with_database(NAME="no_such_database_for_healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "unavailable"}
    for detail in ("no_such_database_for_healthz", ".s.PGSQL", connection.settings_dict["HOST"] or "localhost"):
        assert detail.encode() not in response.content
    assert "no_such_database_for_healthz" in caplog.text


@pytest.mark.django_db
def test_migrations_applied_on_the_empty_test_database():
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
    tables = connection.introspection.table_names()
    assert "django_q_ormq" in tables
    assert "django_cache" in tables
