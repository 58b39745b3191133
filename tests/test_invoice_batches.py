"""send_invoices as a fast job type: a batch costs a constant number of queries, whatever its size, and a
mailed invoice is never rendered or mailed again."""

from __future__ import annotations

import pytest
from django.core import mail
from django.db import transaction

from opsapp.billing.jobs import SendInvoices
from opsapp.billing.models import Customer, Invoice
from opsapp.billing.seeding import seed_demo
from partitions.models import SubJob
from partitions.worker.context import Context
from tests.support import planned_job

pytestmark = pytest.mark.django_db

PERIOD = "2026-11"


def batch_of(size: int) -> tuple[Context, list[SubJob]]:
    seed_demo(products=1, subscriptions=0, customers=size, events=0)
    job = planned_job(SendInvoices.name, {"period": PERIOD, "work_ms": 0})
    items = list(SubJob.objects.filter(job=job).order_by("seq")[:size])
    assert len(items) == size
    ctx = Context(job=job, partition=items[0].partition, params=SendInvoices().load_params(job.params),
                  worker_id="test")
    return ctx, items


def run_batch(ctx: Context, items: list[SubJob]) -> list:
    job_type = SendInvoices()
    job_type.before_batch(ctx, items)
    results = [job_type.process_item(ctx, item) for item in items]
    job_type.on_checkpoint(ctx, items, results)
    return results


@pytest.mark.parametrize("size", [1, 20])
def test_a_batch_reads_in_two_queries_renders_in_none_and_records_in_one(size, django_assert_num_queries):
    ctx, items = batch_of(size)
    job_type = SendInvoices()
    with django_assert_num_queries(2):
        job_type.before_batch(ctx, items)
    with django_assert_num_queries(0):
        results = [job_type.process_item(ctx, item) for item in items]
    mail.outbox.clear()
    with django_assert_num_queries(1):
        job_type.on_checkpoint(ctx, items, results)
    assert len(mail.outbox) == size
    assert Invoice.objects.filter(period=PERIOD, mailed_at__isnull=False).count() == size
    customer = Customer.objects.get(pk=items[0].payload["customer"])
    assert mail.outbox[0].to == [customer.email]
    assert mail.outbox[0].extra_headers["X-Idempotency-Key"] == ctx.idempotency_key(items[0])


def test_a_second_run_of_a_mailed_period_renders_and_mails_nothing():
    ctx, items = batch_of(5)
    run_batch(ctx, items)
    mailed = dict(Invoice.objects.values_list("customer_id", "mailed_at"))
    mail.outbox.clear()
    results = run_batch(ctx, [SubJob.objects.get(pk=item.pk) for item in items])
    assert all(result["already_mailed"] for result in results)
    assert mail.outbox == []
    assert dict(Invoice.objects.values_list("customer_id", "mailed_at")) == mailed


def test_an_invoice_an_earlier_run_left_unmailed_is_mailed_as_it_was_rendered():
    ctx, items = batch_of(3)
    left = Invoice.objects.create(customer_id=items[0].payload["customer"], period=PERIOD, amount_cents=4242,
                                  body="rendered by an earlier run")
    mail.outbox.clear()
    run_batch(ctx, items)
    left.refresh_from_db()
    assert left.mailed_at is not None and left.amount_cents == 4242 and left.body == "rendered by an earlier run"
    assert [m.body for m in mail.outbox].count("rendered by an earlier run") == 1
    assert Invoice.objects.filter(period=PERIOD).count() == 3


def test_a_checkpoint_rolled_back_after_mailing_mails_again_with_the_same_idempotency_key():
    ctx, items = batch_of(2)
    mail.outbox.clear()
    with pytest.raises(RuntimeError), transaction.atomic():
        run_batch(ctx, items)
        raise RuntimeError("the checkpoint's commit failed")
    assert not Invoice.objects.exists()
    run_batch(ctx, [SubJob.objects.get(pk=item.pk) for item in items])
    keys = [m.extra_headers["X-Idempotency-Key"] for m in mail.outbox]
    assert len(keys) == 4 and len(set(keys)) == 2, "at least once, under the same key"
    assert Invoice.objects.filter(period=PERIOD, mailed_at__isnull=False).count() == 2


def test_a_customer_deleted_since_planning_fails_its_item_alone():
    ctx, items = batch_of(2)
    Customer.objects.filter(pk=items[0].payload["customer"]).delete()
    job_type = SendInvoices()
    job_type.before_batch(ctx, items)
    with pytest.raises(Customer.DoesNotExist):
        job_type.process_item(ctx, items[0])
    assert job_type.process_item(ctx, items[1])["customer"] == items[1].payload["customer"]
