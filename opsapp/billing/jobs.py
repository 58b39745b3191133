"""The three scenarios our users described, as job types (registered on import by the engine)."""

from __future__ import annotations

import logging
import random
import time

from django import forms
from django.conf import settings
from django.core.mail import EmailMessage, mailers, send_mail
from django.db import connection
from django.db.models import Avg, BigIntegerField, Count, Exists, Max, OuterRef, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from opsapp.billing import broker
from opsapp.billing.models import Customer, Event, Invoice, Product, Subscription
from partitions.api import SYSTEM, EventType, Items, ItemSpec, JobType, KeyRange, Modulo, SubJob, event, register

logger = logging.getLogger(__name__)

# 1. Migrate millions of rows ---------------------------------------------------------------


class MigrateParams(forms.Form):
    since = forms.DateTimeField(help_text="Products changed at or after this moment are migrated: a date or a "
                                          "date-time such as 2026-11-01 or 2026-11-01 08:00 (in the site's time "
                                          "zone unless it ends with an offset such as Z or +01:00).")
    rows_per_partition = forms.IntegerField(min_value=100, max_value=10_000_000, initial=10_000)


@register
class MigrateSubscriptions(JobType):
    """Set every subscription of each changed product to the product's new version, atomic per batch."""

    name = "billing.migrate_subscriptions"
    label = "Migrate subscriptions of changed products"
    Params = MigrateParams
    batch_size = 1000
    #: Its only effect is the UPDATE of subscriptions: a sample shows their before -> after.
    dry_run_safe = True
    changes_models = (Subscription,)

    def changed_products(self, params) -> list[tuple[int, int]]:
        return list(Product.objects.filter(updated_at__gte=params["since"]).order_by("pk").values_list("pk", "version"))

    def prepare(self, job, params):
        products = self.changed_products(params)
        event(job.pk, EventType.PREPARE_SUMMARIZED, SYSTEM, {"changed_products": len(products)})
        return {"changed_products": len(products)}

    def split(self, job, params):
        return [
            KeyRange(Subscription.objects.filter(product_id=pk), ("created_at", "id"),
                     rows_per_partition=params["rows_per_partition"], scope={"product": pk, "version": version})
            for pk, version in self.changed_products(params)
        ]

    def queryset(self, job, params, scope):
        # Only what the batch reads: the key (for the checkpoint) and the id.
        return Subscription.objects.filter(product_id=scope["product"]).only("id", "created_at")

    def process_batch(self, ctx, items):
        # Effects and checkpoint commit together (atomic = True): a crash repeats nothing. One array
        # parameter rather than IN (%s, …) with a thousand placeholders.
        with connection.cursor() as cursor:
            cursor.execute("UPDATE opsapp_subscription SET product_version = %s WHERE id = ANY(%s)",
                           [ctx.partition.scope["version"], [s.pk for s in items]])

    def verify(self, job, params):
        # The invariant: no subscription of a product this job migrated is still on an older version than the one
        # it migrated it to (its partitions' scopes). One query, stopping at the first stale row.
        migrated_to = job.partitions.annotate(product=Cast(KT("scope__product"), BigIntegerField()),
                                              version=Cast(KT("scope__version"), BigIntegerField()))
        stale = Subscription.objects.filter(Exists(migrated_to.filter(product=OuterRef("product_id"),
                                                                      version__gt=OuterRef("product_version"))))
        first = stale.order_by().values_list("pk", "product_id").first()
        return None if first is None else f"subscription {first[0]} of product {first[1]} is still on an old version"

    def finalize(self, job, stats):
        migrated = job.partitions.aggregate(n=Sum("done_items"))["n"] or 0
        return {"subscriptions_migrated": migrated, "products": job.partitions.values("scope__product").distinct()
                .count()}


# 2. Dispatch events that each wait for a broker confirmation -----------------------------


class DispatchParams(forms.Form):
    buckets = forms.IntegerField(min_value=1, max_value=1024, initial=4, help_text="Partitions: id % buckets.")
    confirm_ms = forms.IntegerField(min_value=0, max_value=10_000, initial=20, help_text="Broker ack latency.")
    concurrency = forms.IntegerField(min_value=1, max_value=64, initial=8, help_text="Events in flight per worker.")


# Mark acknowledged pending events sent: one UPDATE joined to the (id, ack) pairs; the status guard makes it
# a no-op for an event already marked.
SQL_EVENTS_MARK_SENT = f"""
    UPDATE {Event._meta.db_table} e
    SET status = '{Event.Status.SENT}', sent_at = statement_timestamp(), ack_id = a.ack,
        send_count = e.send_count + 1
    FROM unnest(%s::bigint[], %s::text[]) AS a(id, ack)
    WHERE e.id = a.id AND e.status = '{Event.Status.PENDING}'
"""


@register
class DispatchEvents(JobType):
    """Send each pending event to the broker and mark it sent only after its ack; never sent twice."""

    name = "billing.dispatch_events"
    label = "Dispatch pending events to the broker"
    Params = DispatchParams
    atomic = False
    item_concurrency = 8
    batch_size = 200
    #: A sample records "would publish" instead of publishing, and shows the events it would mark sent.
    records_effects = True
    changes_models = (Event,)

    def concurrency(self, params):
        return params["concurrency"]

    def split(self, job, params):
        # The events pending when the job was planned, and only those: events sent by an earlier run are not
        # this job's work (its progress counts what it did), and events added meanwhile are the next run's.
        upto = Event.objects.filter(status=Event.Status.PENDING).aggregate(m=Max("id"))["m"] or 0
        return Modulo(self.queryset(job, params, {"upto": upto}), "id", buckets=params["buckets"],
                      scope={"upto": upto})

    def queryset(self, job, params, scope):
        # Still pending: an event this job marked sent at a checkpoint is never fetched again.
        return Event.objects.filter(status=Event.Status.PENDING, id__lte=scope["upto"])

    def process_item(self, ctx, item):
        if (record := self.effect_recorder()) is not None:
            record(f"would publish {item.kind} event {item.pk} to the broker (key {ctx.idempotency_key(item)})")
            return f"sample-ack-{item.pk}"
        return broker.publish(ctx.idempotency_key(item), {"kind": item.kind, **item.payload},
                              confirm_ms=ctx.params["confirm_ms"])

    def on_checkpoint(self, ctx, items, results):
        # One statement marks the checkpoint's acknowledged events sent, in its transaction: a crash before
        # it commits re-publishes them, and the broker's idempotency key turns that into the original ack.
        acked = [(event.pk, ack) for event, ack in zip(items, results, strict=True) if ack is not None]
        if acked:
            with connection.cursor() as cursor:
                cursor.execute(SQL_EVENTS_MARK_SENT, [[pk for pk, _ in acked], [ack for _, ack in acked]])


# 3. A three-step business process with a deadline -----------------------------------------


class InvoiceParams(forms.Form):
    # \A…\Z and [0-9]: `$` matches before a trailing newline and `\d` matches any script's digits.
    period = forms.RegexField(regex=r"\A[0-9]{4}-(0[1-9]|1[0-2])\Z", help_text="Billing month, YYYY-MM.",
                              error_messages={"invalid": "Enter a month as YYYY-MM."})
    # At most 10 s an invoice: the type's max_item_seconds, which the drain budget and Q_CLUSTER timeout allow for.
    work_ms = forms.IntegerField(min_value=0, max_value=10_000, initial=50, help_text="Rendering time per invoice.")
    fail_rate = forms.FloatField(min_value=0, max_value=1, initial=0, required=False,
                                 help_text="Share of first attempts that fail (demos).")


@register
class SendInvoices(JobType):
    """Step 1 prepares the run, step 2 renders and mails one invoice per customer, step 3 reports."""

    name = "billing.send_invoices"
    label = "Send the month's invoices"
    Params = InvoiceParams
    atomic = False
    item_concurrency = 4
    batch_size = 20
    item_retries = 0
    max_item_failures = 10_000
    max_item_seconds = 15.0  # work_ms at its maximum, plus the invoice's own queries
    #: A sample records "would mail" instead of mailing, and shows the invoices it would record mailed.
    records_effects = True
    changes_models = (Invoice,)

    def prepare(self, job, params):
        customers = Customer.objects.count()
        event(job.pk, EventType.PREPARE_SUMMARIZED, SYSTEM, {"customers": customers})
        return {"customers": customers}

    def split(self, job, params):
        return Items((ItemSpec(key=f"customer-{pk}", payload={"customer": pk})
                      for pk in Customer.objects.order_by("pk").values_list("pk", flat=True).iterator()),
                     chunk_size=20)  # one batch a partition: a short tail

    def before_batch(self, ctx, items):
        # Two queries a batch, not four an item: the batch's customers and the invoices they already have.
        ids = [item.payload["customer"] for item in items]
        customers = Customer.objects.only("name", "email").in_bulk(ids)
        invoices = {invoice.customer_id: invoice for invoice in
                    Invoice.objects.filter(period=ctx.params["period"], customer_id__in=ids)
                    .only("customer_id", "amount_cents", "body", "mailed_at")}
        for item, customer_id in zip(items, ids, strict=True):
            item.customer, item.invoice = customers.get(customer_id), invoices.get(customer_id)

    def process_item(self, ctx, item):
        if item.invoice is not None and item.invoice.mailed_at is not None:
            return {"invoice": item.invoice.pk, "already_mailed": True}
        if item.customer is None:
            raise Customer.DoesNotExist(f"customer {item.payload['customer']} no longer exists")
        time.sleep(ctx.params["work_ms"] / 1000)  # rendering
        # Demo failures hit first attempts only, so a retry of the failed sub-jobs recovers.
        chance = random.Random(ctx.idempotency_key(item)).random()
        if item.attempts == 0 and chance < (ctx.params.get("fail_rate") or 0):
            raise ConnectionError("SMTP server temporarily unavailable")
        return {"customer": item.customer.pk, "amount_cents": self._invoice_of(ctx, item).amount_cents}

    def on_checkpoint(self, ctx, items, results):
        # The checkpoint's invoices go out over one mail connection, then are recorded mailed in one upsert, in
        # the checkpoint's transaction: a crash before it commits mails them again with the same idempotency
        # key (at least once), and a mailed invoice is never rendered or mailed by a later run.
        to_mail = [item for item, result in zip(items, results, strict=True) if not result.get("already_mailed")]
        if not to_mail:
            return
        invoices = [self._invoice_of(ctx, item) for item in to_mail]
        messages = [EmailMessage(f"Your invoice for {invoice.period}", invoice.body, settings.DEFAULT_FROM_EMAIL,
                                 [item.customer.email], headers={"X-Idempotency-Key": ctx.idempotency_key(item)})
                    for item, invoice in zip(to_mail, invoices, strict=True)]
        if (record := self.effect_recorder()) is not None:
            for message, invoice in zip(messages, invoices, strict=True):
                record(f"would mail invoice {invoice.period} ({invoice.amount_cents / 100:.2f} EUR) to "
                       f"{', '.join(message.to)}")
        else:
            with mailers.default as mailer:
                mailer.send_messages(messages)
        mailed_at = timezone.now()
        for invoice in invoices:
            invoice.mailed_at = mailed_at
        Invoice.objects.bulk_create(invoices, update_conflicts=True, unique_fields=["customer", "period"],
                                    update_fields=["mailed_at"])

    @staticmethod
    def _invoice_of(ctx, item) -> Invoice:
        """The item's invoice, unsaved: as an earlier run left it unmailed, or rendered from the customer."""
        period, customer, earlier = ctx.params["period"], item.customer, item.invoice
        amount = earlier.amount_cents if earlier else 1000 + customer.pk % 9000
        body = earlier.body if earlier else f"Invoice {period} for {customer.name}: {amount / 100:.2f} EUR"
        return Invoice(customer=customer, period=period, amount_cents=amount, body=body)

    def finalize(self, job, stats):
        subjobs = SubJob.objects.filter(job=job)
        summary = {
            "invoices_mailed": Invoice.objects.filter(period=job.params["period"], mailed_at__isnull=False).count(),
            "by_status": dict(subjobs.values_list("status").annotate(n=Count("id")).order_by()),
            **subjobs.filter(status="succeeded").aggregate(avg_ms=Avg("duration_ms"), max_ms=Max("duration_ms")),
        }
        send_mail(f"Invoice run {job.params['period']} finished", "\n".join(f"{k}: {v}" for k, v in summary.items()),
                  settings.DEFAULT_FROM_EMAIL, settings.OPS_NOTIFY_EMAILS)
        event(job.pk, EventType.NOTIFICATION_SENT, SYSTEM, {"to": settings.OPS_NOTIFY_EMAILS})
        # One line per run for the terminal (make run); the mails themselves go to the mail backend.
        logger.info("invoice run %s (job %s): %s invoices mailed, summary mailed to %s", job.params["period"],
                    job.pk, summary["invoices_mailed"], ", ".join(settings.OPS_NOTIFY_EMAILS))
        return summary
