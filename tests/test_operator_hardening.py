"""Operator surfaces under a careless or hostile operator (issue 23): a throttle change that changes nothing writes
nothing (D10); webhooks never follow a redirect and need https (O2, a real HTTP server on 127.0.0.1); per-run
e-mail addresses come from an allow-list (O3); ten concurrent POSTs of one start form make one job (O4, forked
processes); prune keeps a one-day floor unless forced (O6); /metrics wants `Bearer` (O9)."""

from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.checks import run_checks
from django.test import Client
from django.urls import reverse

from partitions.core.exceptions import InvalidParams
from partitions.models import Delivery, Job, JobEvent
from partitions.notify import channels, config
from partitions.operations import services
from partitions.operations.retention import history_prune
from tests.conftest import VIEW_PERMS, make_staff
from tests.factories import make_job
from tests.support import cli, started_job
from tests.test_retention import history, job_with_history

pytestmark = [pytest.mark.usefixtures("no_dispatcher")]


# D10 ----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_throttle_change_that_changes_nothing_writes_no_audit_event():
    job = make_job(status="running", rate_limit=5.0, pause_ms=20)
    events = JobEvent.objects.filter(job=job, type="job_throttle_changed")
    services.job_throttle(job.pk, actor="cli", rate_limit=5, pause_ms=20, ignore_health=False)
    code, _, err = cli("throttle", str(job.pk), "--rate", "5", "--pause-ms", "20")
    assert code == 0, err
    assert events.count() == 0
    services.job_throttle(job.pk, actor="cli", rate_limit=6)
    assert events.count() == 1 and events.get().data["after"]["rate_limit"] == 6.0


# O2: webhooks --------------------------------------------------------------------------------------------------


class Server:
    """An HTTP server on 127.0.0.1 that answers every POST with `status` (and `location`), recording paths."""

    def __init__(self, status: int, location: str = ""):
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                server.paths.append(self.path)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made: list[Server] = []

    def make(status: int, location: str = "") -> Server:
        made.append(Server(status, location))
        return made[-1]

    yield make
    for server in made:
        server.close()


def _delivery(settings, url: str, **notify) -> tuple[Delivery, config.Plan]:
    settings.PARTITIONS_NOTIFY = {"webhooks": {"ops": {"url": url, "secret": "k"}}, **notify}
    job = make_job(status="running")
    delivery = Delivery.objects.create(job=job, kind="job_succeeded", channel="webhook:ops",
                                       idempotency_key=f"job-{job.pk}", payload={"event": "job_succeeded"})
    return delivery, config.plan_for(job)


@pytest.mark.django_db
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_webhook_redirect_is_a_failed_delivery_naming_its_location_and_is_not_followed(settings, servers, status):
    elsewhere = servers(204)
    hook = servers(status, location=elsewhere.url + "/stolen")
    delivery, plan = _delivery(settings, hook.url, allow_http=True)
    with pytest.raises(channels.DeliveryFailed, match=f"HTTP {status} from ops: redirect to {elsewhere.url}"):
        channels.send(delivery, plan)
    assert hook.paths == ["/hook"] and elsewhere.paths == []  # the signed body went nowhere else


@pytest.mark.django_db
def test_a_plain_http_webhook_is_refused_without_a_request_unless_allowed(settings, servers):
    hook = servers(204)
    delivery, plan = _delivery(settings, hook.url)
    with pytest.raises(channels.DeliveryFailed, match="uses http"):
        channels.send(delivery, plan)
    assert hook.paths == []
    delivery, plan = _delivery(settings, hook.url, allow_http=True)
    channels.send(delivery, plan)
    assert hook.paths == ["/hook"]


@pytest.mark.parametrize(("url", "refused"), [
    ("file:///etc/passwd", True), ("ftp://example.com/x", True), ("gopher://x", True), ("", True),
    ("example.com/hook", True), ("http://example.com/hook", True), ("https://example.com/hook", False),
    ("HTTPS://example.com/hook", False),
])
def test_the_system_check_refuses_a_webhook_scheme_other_than_https(settings, url, refused):
    settings.PARTITIONS_NOTIFY = {"webhooks": {"ops": {"url": url, "secret": "k"}}}
    errors = [m for m in run_checks() if m.id == "partitions.E003"]
    assert bool(errors) == refused
    settings.PARTITIONS_NOTIFY = {"webhooks": {"ops": {"url": url, "secret": "k"}}, "allow_http": True}
    errors = [m for m in run_checks() if m.id == "partitions.E003"]
    assert bool(errors) == (refused and not url.startswith("http://"))


# O3: e-mail allow-list -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_may_only_name_allowed_addresses(settings):
    settings.PARTITIONS_NOTIFY = {"email": ["ops@example.com"]}
    before = Job.objects.count()
    for outsider in ("attacker@evil.test", "ops@example.com.evil.test", "someone@example.com"):
        with pytest.raises(InvalidParams, match="not an allowed address"):
            started_job("tests.items_serial", {"count": 1, "chunk_size": 1}, notify=[f"email:{outsider}"])
        code, out, err = cli("start", "tests.items_serial", "--param", "count=1", "--param", "chunk_size=1",
                             "--notify", f"email:{outsider}")
        assert code == 1 and out == "" and "not an allowed address" in err
    assert Job.objects.count() == before
    assert config.plan_for(started_job("tests.items_serial", {"count": 1, "chunk_size": 1},
                                       notify=["email:OPS@example.com"])).email == ("OPS@example.com",)
    settings.PARTITIONS_NOTIFY = {"email": ["ops@example.com"], "email_allowed": ["@example.com"]}
    job = started_job("tests.items_serial", {"count": 1, "chunk_size": 1}, notify=["email:someone@example.com"])
    assert config.plan_for(job).email == ("someone@example.com",)
    with pytest.raises(InvalidParams):
        started_job("tests.items_serial", {"count": 1, "chunk_size": 1}, notify=["email:x@sub.notexample.com"])


# O4: one-time start token ------------------------------------------------------------------------------------------


def _post_start(barrier, user_id: int, token: str):
    from django.contrib.auth.models import User

    client = Client(raise_request_exception=False)
    client.force_login(User.objects.get(pk=user_id))
    barrier.wait()
    response = client.post(reverse("admin:partitions_job_start") + "?type=tests.bump_range", {
        "job_type": "tests.bump_range", "_start": "Run now", "params-partitions": "1", "max_parallel": "0",
        "start_token": token})
    return {"status": response.status_code, "location": response.get("Location", "")}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_posts_of_one_start_form_make_one_job(children, admin_env):
    user = make_staff("starter", *VIEW_PERMS, "start_job")
    page = Client()
    page.force_login(user)
    html = page.get(reverse("admin:partitions_job_start") + "?type=tests.bump_range").content.decode()
    token = html.split('name="start_token" value="')[1].split('"')[0]
    results = children.race(_post_start, lambda i: (user.pk, token), 10, "post")
    assert [r["status"] for r in results] == [302] * 10, results
    [job] = Job.objects.all()
    assert {r["location"] for r in results} == {reverse("admin:partitions_job_change", args=[job.pk])}
    # Long after, the same form posted again lands on the same job, even once it has ended.
    Job.objects.filter(pk=job.pk).update(status="cancelled", finished_at=job.created_at)
    again = _post_start(threading.Barrier(1), user.pk, token)
    assert again["location"] == reverse("admin:partitions_job_change", args=[job.pk]) and Job.objects.count() == 1
    fresh = page.get(reverse("admin:partitions_job_start") + "?type=tests.bump_range").content.decode()
    assert token not in fresh  # every page shown gets its own token


# O6: the prune floor ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_prune_refuses_an_age_under_the_floor_unless_forced():
    just_finished = job_with_history(finished_days_ago=0.01)
    for age in ("0m", "90m", "23h"):
        code, out, err = cli("prune", "--older-than", age)
        assert code == 1 and out == "" and "floor" in err and "--force" in err
    with pytest.raises(InvalidParams, match="floor"):
        history_prune(older_than=timedelta(0))
    assert history(just_finished) == (6, 2, 3, 3)
    code, out, _ = cli("prune", "--older-than", "0m", "--force")
    assert code == 0 and out.startswith("pruned 1 job:") and history(just_finished) == (0, 2, 0, 0)


# O9: /metrics ------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("header", "status"), [
    ("s3cret", 403), ("Token s3cret", 403), ("Basic s3cret", 403), ("Bearer s3cret", 200), ("bearer s3cret", 200),
    ("Bearer  s3cret", 403), ("Bearers3cret", 403), ("", 403),
])
def test_metrics_wants_the_bearer_scheme(settings, header, status):
    settings.METRICS_TOKEN = "s3cret"
    assert Client().get("/metrics", secure=True, HTTP_AUTHORIZATION=header).status_code == status
