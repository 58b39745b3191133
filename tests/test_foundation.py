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


def test_missing_secret_key_with_debug_off_is_a_clear_startup_error():
    proc = run_manage("check", env={})
    assert proc.returncode != 0
    assert "SECRET_KEY is not set" in proc.stderr


def test_debug_on_runs_without_a_secret_key():
    proc = run_manage("check", env={"DEBUG": "true"})
    assert proc.returncode == 0, proc.stderr


def test_check_deploy_is_clean_with_production_environment():
    prod = {
        "SECRET_KEY": "k" * 20 + "-production-like-secret-key-with-enough-entropy-123456",
        "ALLOWED_HOSTS": "ops.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://ops.example.com",
        "DATABASE_URL": "postgres://app:secret@db.example.com:5432/opsapp",
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    }
    proc = run_manage("check", "--deploy", "--fail-level", "WARNING", env=prod)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


@pytest.mark.django_db
def test_healthz_answers_ok_when_the_database_answers():
    response = Client().get("/healthz", secure=True)
    assert response.status_code == 200
    assert response.json() == {"database": "ok"}


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_when_the_database_is_unreachable():
    # A second alias would not be used by the view; point the default connection
    # at a socket folder where no server listens, then restore it.
    original = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["HOST"] = "/nonexistent-socket-dir"
    connection.settings_dict["PORT"] = ""
    try:
        response = Client().get("/healthz", secure=True)
    finally:
        connection.close()
        connection.settings_dict.update(original)
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "unavailable"
    assert body["error"]


@pytest.mark.django_db
def test_migrations_applied_on_the_empty_test_database():
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
    tables = connection.introspection.table_names()
    assert "django_q_ormq" in tables
    assert "django_cache" in tables
