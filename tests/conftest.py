"""Tests run on a real PostgreSQL: DATABASE_URL, or the embedded server started here."""

import os
import subprocess

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

#: Fuzz profiles, both derandomized with no example database so a run is reproducible: `full` (the default,
#: `make test`) and `fast` (`make test-fast` passes --hypothesis-profile=fast), the same properties on fewer
#: examples.
FUZZ_EXAMPLES = {"full": 300, "fast": 40}
for _name, _examples in FUZZ_EXAMPLES.items():
    hypothesis_settings.register_profile(
        _name, derandomize=True, database=None, deadline=None, max_examples=_examples,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
hypothesis_settings.load_profile("full")


def pytest_sessionstart(session):
    if not os.environ.get("DATABASE_URL"):
        from opsapp import devdb

        devdb.start()


@pytest.fixture(autouse=True)
def no_clusters_reported(request):
    """Each database test starts with an empty stats cache: django-q2's clusters report to the database cache,
    which no test flush empties, so a cluster an earlier test ran in this process would still be seen (in the
    fleet's size, the workers page and their query counts) until its entry expires."""
    if "_django_db_helper" in request.fixturenames:  # what every database test (marker or fixture) requests
        from tests.support import forget_clusters

        request.getfixturevalue("_django_db_helper")  # the database is open for this test first
        forget_clusters()


@pytest.fixture(autouse=True)
def processes_only_in_slow_tests(request, monkeypatch):
    """The fast lane (`-m "not slow"`) starts no process: a qcluster, a browser, a fork or any subprocess
    fails a test that is not marked slow, so the mark cannot be forgotten."""
    if request.node.get_closest_marker("slow"):
        return

    def refuse(*args, **kwargs):
        pytest.fail(f"{request.node.nodeid} starts a process: mark it @pytest.mark.slow", pytrace=False)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    monkeypatch.setattr(os, "fork", refuse)


@pytest.fixture
def db_url(django_db_setup) -> str:
    """A DATABASE_URL for the test database, for subprocesses (workers, qclusters)."""
    from django.db import connection

    from opsapp.databases import database_url

    return database_url(connection.settings_dict)


# Admin pages -------------------------------------------------------------------------------------------------------

VIEW_PERMS = ["view_job", "view_partition", "view_subjob", "view_jobevent"]


@pytest.fixture
def admin_env(settings):
    """Admin pages under the test client: plain static storage (no collectstatic manifest) and plain HTTP."""
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    settings.SECURE_SSL_REDIRECT = False


def make_staff(username: str, *codenames: str):
    """An active staff user holding exactly these `partitions` permissions."""
    from django.contrib.auth.models import Permission, User

    # No password (tests use force_login): hashing one costs ~0.3 s per user.
    user = User.objects.create_user(username, f"{username}@example.com", None, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="partitions", codename__in=codenames))
    return user


@pytest.fixture
def superuser(db):
    from django.contrib.auth.models import User

    return User.objects.create_superuser("root", "root@example.com", None)


@pytest.fixture
def operator(db):
    """Staff who may view, operate and start jobs."""
    return make_staff("operator", *VIEW_PERMS, "operate_job", "start_job")


@pytest.fixture
def viewer(db):
    """Staff who may only look."""
    return make_staff("viewer", *VIEW_PERMS)


@pytest.fixture
def clusters(db_url, tmp_path):
    """Start real qclusters on the test database: `clusters(n, **env)`; each still running is killed at
    teardown (the test has checked what it proves; a graceful stop would wait out their drains' budgets)."""
    from django.db import connections

    from tests.support import Cluster

    started: list[Cluster] = []

    def start(n: int = 1, **env) -> list[Cluster]:
        connections.close_all()
        new = [Cluster(db_url, tmp_path / f"qcluster-{len(started) + i}.log", **env) for i in range(n)]
        started.extend(new)
        return new

    yield start
    for cluster in started:
        if cluster.proc.poll() is None:
            cluster.kill()


@pytest.fixture
def children(transactional_db, tmp_path):
    """Forked children racing on the test database; whatever is still alive is killed at teardown."""
    # Requesting transactional_db first makes this teardown run before the flush, which a
    # stopped child holding row locks would block.
    from tests.support import Children

    kids = Children(tmp_path)
    yield kids
    kids.kill_all()


@pytest.fixture
def recorder():
    """What the test job types (tests/jobtypes.py) record in this process, empty at the start of the test."""
    from tests.jobtypes import RECORDER

    RECORDER.reset()
    yield RECORDER
    RECORDER.reset()


@pytest.fixture
def no_dispatcher():
    """Drive workers directly: the engine enqueues no django-q2 tasks while this fixture is active."""
    from tests.support import dispatcher_off

    with dispatcher_off():
        yield


def pytest_terminal_summary(terminalreporter):
    """Say where the browser test left its screenshots."""
    from pathlib import Path

    shots = sorted((Path(__file__).resolve().parent.parent / "test-artifacts").glob("*.png"))
    if shots:
        terminalreporter.write_line("screenshots: " + " ".join(str(s) for s in shots))


def pytest_collection_modifyitems(items):
    """Browser tests last: the live server's thread lives for the rest of the session, and tests that
    fork worker processes must fork a single-threaded process."""
    items.sort(key=lambda item: item.path.name == "test_browser.py")
