"""Step notifications: a real HTTP server on 127.0.0.1 receives signed webhooks in order, a failing receiver
is retried without holding the job back, e-mail goes through the locmem backend, and the outbox is at least once
through real qclusters."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.urls import reverse

from partitions import tasks
from partitions.core.exceptions import InvalidParams
from partitions.models import Delivery, Job, OutboxCursor
from partitions.notify import channels, config, outbox, relay
from tests.support import cli, finished, planned_job, run_to_end, started_job

SECRET = "s3cret-for-tests"
STEPS = [("step_started", "prepare"), ("step_finished", "prepare"), ("step_started", "process"),
         ("step_finished", "process"), ("step_started", "finalize"), ("step_finished", "finalize"),
         ("job_succeeded", None)]


class Receiver:
    """A webhook receiver on 127.0.0.1: records every request; answers `failures` times with 500 first."""

    def __init__(self, failures: int = 0):
        self.requests: list[dict] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = 500 if receiver.failures > 0 else 204
                receiver.failures -= 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def accepted(self) -> list[dict]:
        """Bodies of the requests answered 2xx, in arrival order (the failed ones were retried)."""
        return [json.loads(r["body"]) for r in self.requests[self.initial_failures:]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(failures: int = 0) -> Receiver:
        r = Receiver(failures)
        r.initial_failures = failures
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def configure(settings, url: str, **extra) -> None:
    # The receiver is a plain-http server on loopback: allowed explicitly (the default wants https).
    settings.PARTITIONS_NOTIFY = {"email": ["ops@example.com"], "allow_http": True,
                                  "webhooks": {"ops": {"url": url, "secret": SECRET}}, **extra}
    settings.PARTITIONS_NOTIFY_BACKOFF = 0.01


def deliver_all(rounds: int = 50) -> None:
    """What the notify task does, until nothing is due (waiting out the tests' tiny backoff)."""
    import time

    for _ in range(rounds):
        relay.notifications_relay()
        outbox.deliveries_send(budget_seconds=5)
        if not Delivery.objects.filter(status="pending").exists():
            return
        time.sleep(0.05)


def verify(request: dict) -> bool:
    """The receiver's side of the signature check (the snippet in docs/howto/notifications.md)."""
    expected = "sha256=" + hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["headers"]["X-Partitions-Signature"])


@pytest.mark.django_db(transaction=True)
def test_each_step_is_notified_in_order_with_a_signed_webhook_and_an_email(no_dispatcher, receiver, settings):
    hook = receiver()
    configure(settings, hook.url)
    job = run_to_end(planned_job("tests.items_serial", {"count": 12, "chunk_size": 5}))
    assert job.status == "succeeded"
    deliver_all()

    bodies = hook.accepted()
    assert [(b["event"], b["step"]) for b in bodies] == STEPS
    assert all(verify(r) for r in hook.requests)
    assert {b["job"]["id"] for b in bodies} == {job.pk}
    keys = [r["headers"]["Idempotency-Key"] for r in hook.requests]
    assert len(set(keys)) == len(keys) and keys == [b["idempotency_key"] for b in bodies]
    assert mail.outbox[0].subject == f"Job #{job.pk} tests.items_serial: step started (prepare)"
    assert len(mail.outbox) == len(STEPS) and mail.outbox[0].to == ["ops@example.com"]
    assert Delivery.objects.filter(job=job, status="sent").count() == 2 * len(STEPS)


@pytest.mark.django_db(transaction=True)
def test_a_receiver_answering_500_is_retried_in_order_and_the_job_still_succeeds(no_dispatcher, receiver, settings):
    hook = receiver(failures=3)
    configure(settings, hook.url)
    job = run_to_end(planned_job("tests.items_serial", {"count": 6, "chunk_size": 3}))
    assert job.status == "succeeded", "a failing receiver never holds a job back"
    deliver_all()
    assert [r["headers"]["Idempotency-Key"] for r in hook.requests[:4]] == [hook.requests[0]["headers"][
        "Idempotency-Key"]] * 4, "the head of the queue is retried with the same key; the rest wait behind it"
    assert [(b["event"], b["step"]) for b in hook.accepted()] == STEPS
    first = Delivery.objects.filter(job=job, channel="webhook:ops").order_by("id").first()
    assert first.status == "sent" and first.attempts == 4


@pytest.mark.django_db(transaction=True)
def test_a_dead_receiver_is_given_up_after_the_attempts_limit_and_blocks_nothing(no_dispatcher, settings):
    configure(settings, "http://127.0.0.1:9/never-listening", events=["job_succeeded"])
    settings.PARTITIONS_NOTIFY_MAX_ATTEMPTS = 2
    job = run_to_end(planned_job("tests.items_serial", {"count": 3, "chunk_size": 3}))
    deliver_all()
    assert job.status == "succeeded"
    hook_row = Delivery.objects.get(job=job, channel="webhook:ops")
    assert (hook_row.status, hook_row.attempts) == ("failed", 2) and hook_row.last_error
    assert Delivery.objects.get(job=job, channel="email").status == "sent"


@pytest.mark.django_db(transaction=True)
def test_the_relay_makes_each_delivery_once_however_often_it_runs(no_dispatcher, receiver, settings):
    configure(settings, receiver().url)
    job = run_to_end(planned_job("tests.items_serial", {"count": 3, "chunk_size": 3}))
    for _ in range(3):
        relay.notifications_relay()
    OutboxCursor.objects.update(last_event_id=0)  # a relay that lost its cursor reads everything again
    relay.notifications_relay()
    assert Delivery.objects.filter(job=job).count() == 2 * len(STEPS)


@pytest.mark.django_db
def test_a_run_chooses_its_own_channels_and_bad_ones_are_one_error_that_writes_nothing(settings):
    settings.PARTITIONS_NOTIFY = {"email": ["ops@example.com"], "email_allowed": ["@example.com"],
                                  "webhooks": {"ops": {"url": "https://x", "secret": ""}}}
    job = started_job("tests.items_serial", {"count": 1, "chunk_size": 1}, notify=["email:lead@example.com"])
    assert config.plan_for(job).channels() == ["email"] and config.plan_for(job).email == ("lead@example.com",)
    silent = started_job("tests.items_serial", {"count": 1, "chunk_size": 1}, notify=["none"])
    assert config.plan_for(silent).channels() == []
    default = started_job("tests.items_serial", {"count": 1, "chunk_size": 1})
    assert config.plan_for(default).channels() == ["email", "webhook:ops"]
    before = Job.objects.count()
    for bad in (["email:not-an-address"], ["webhook:unknown"], ["sms:123"]):
        with pytest.raises(InvalidParams):
            started_job("tests.items_serial", {"count": 1, "chunk_size": 1}, notify=bad)
        code, out, err = cli("start", "tests.items_serial", "--param", "count=1", "--param", "chunk_size=1",
                             "--notify", bad[0])
        assert code != 0 and out == "" and err.strip().startswith("CommandError:") and "notify" in err
    assert Job.objects.count() == before


def test_the_signature_is_hmac_sha256_of_the_raw_body():
    body = b'{"event":"job_succeeded"}'
    assert channels.signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


@pytest.mark.django_db
def test_the_job_page_lists_its_deliveries_and_their_status(viewer, settings, admin_env):
    from django.test import Client

    job = started_job("tests.items_serial", {"count": 1, "chunk_size": 1})
    Delivery.objects.create(job=job, kind="step_started", step="prepare", channel="webhook:ops",
                            idempotency_key="k1", status="pending", attempts=2, last_error="HTTP 500 from ops")
    client = Client()
    client.force_login(viewer)
    html = client.get(reverse("admin:partitions_job_change", args=[job.pk])).content.decode()
    assert "webhook:ops" in html and "HTTP 500 from ops" in html and "step_started" in html
    live = client.get(reverse("admin:partitions_job_live", args=[job.pk])).json()
    assert "HTTP 500 from ops" in live["sections"]["notifications"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_cluster_delivers_every_step_at_least_once_through_django_q(clusters, receiver, settings):
    hook = receiver(failures=1)
    notify = json.dumps({"allow_http": True, "webhooks": {"ops": {"url": hook.url, "secret": SECRET}}})
    [cluster] = clusters(1, PARTITIONS_NOTIFY=notify, PARTITIONS_NOTIFY_BACKOFF="0.2")
    settings.PARTITIONS_NOTIFY = json.loads(notify)
    job = started_job("tests.items_serial", {"count": 20, "chunk_size": 5})
    job = finished(job, [cluster])
    assert job.status == "succeeded"

    from partitions.worker import maintenance
    from tests.support import wait_for

    def every_step_accepted() -> bool:
        # The failed delivery is due again 0.2 s later but sent by the next tick, a minute apart: run that
        # tick's duty here, which queues a sender for the cluster when a delivery is due.
        maintenance.relay_notifications()
        return len(hook.accepted()) >= len(STEPS)

    wait_for(every_step_accepted, timeout=90, what="every step's webhook", clusters=[cluster])
    assert [(b["event"], b["step"]) for b in hook.accepted()] == STEPS
    assert all(verify(r) for r in hook.requests)
    assert tasks.notify is not None
