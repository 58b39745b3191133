"""The demo billing domain (app `billing`): the tables the demo job types migrate, dispatch and invoice.

Products change version; subscriptions remember the version they were sold at
(stale ones need migrating); events wait to be handed to a broker; invoices are
rendered and mailed once per customer and period.
"""

from django.db import models
from django.db.models.functions import Now


class Product(models.Model):
    """Something customers subscribe to. `version` goes up when its terms change."""

    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    # Set by the database (only its clock is trusted); indexed to find "changed since".
    updated_at = models.DateTimeField(db_index=True, db_default=Now())

    class Meta:
        db_table = "opsapp_product"  # kept from before the app split; raw SQL names it
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} v{self.version}"


class Customer(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField()

    class Meta:
        db_table = "opsapp_customer"  # kept from before the app split; raw SQL names it
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class Subscription(models.Model):
    """A customer's subscription, stale while `product_version` < the product's version.

    `created_at` is not unique (bulk imports share timestamps), so every ordering
    and range bound uses `(created_at, id)`, which is.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CANCELLED = "cancelled", "Cancelled"

    # No separate index on product_id: subscription_product_created leads with it.
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="subscriptions", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT)
    created_at = models.DateTimeField()
    product_version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status, default=Status.ACTIVE)

    class Meta:
        db_table = "opsapp_subscription"  # kept from before the app split; raw SQL names it
        ordering = ["created_at", "id"]
        indexes = [
            # Keyset pagination and range splitting by (created_at, id) within one product.
            # (Django caps index names at 30 characters, hence no "_idx" suffix.)
            models.Index(fields=["product", "created_at", "id"], name="subscription_product_created"),
            # The same across all products.
            models.Index(fields=["created_at", "id"], name="subscription_created_idx"),
        ]

    def __str__(self) -> str:
        return f"Subscription {self.pk} ({self.product_id} v{self.product_version}, {self.status})"


class Event(models.Model):
    """An outgoing event, handed to a broker that confirms each one with an ack id."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"

    kind = models.CharField(max_length=64)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING)
    sent_at = models.DateTimeField(null=True, blank=True)
    ack_id = models.CharField(max_length=128, blank=True)
    # How many times it was handed to the broker: exactly once is the goal, tests check it.
    send_count = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "opsapp_event"  # kept from before the app split; raw SQL names it
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Event {self.pk} {self.kind} ({self.status})"


class Invoice(models.Model):
    """One invoice per customer and period; the constraint makes re-runs idempotent."""

    # No separate index on customer_id: invoice_unique_customer_period leads with it.
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, db_index=False)
    period = models.CharField(max_length=7, help_text='Billing month, e.g. "2026-11".')
    amount_cents = models.PositiveIntegerField()
    body = models.TextField()
    mailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "opsapp_invoice"  # kept from before the app split; raw SQL names it
        ordering = ["period", "customer_id"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "period"], name="invoice_unique_customer_period"),
        ]

    def __str__(self) -> str:
        return f"Invoice {self.period} for customer {self.customer_id}"
