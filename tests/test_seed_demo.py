"""The demo seeding: exact counts, shared timestamps, stale products, the command and reset."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count, F

from opsapp.billing.models import Customer, Event, Invoice, Product, Subscription
from opsapp.billing.seeding import reset_demo, seed_demo

pytestmark = pytest.mark.django_db

SMALL = {"products": 10, "subscriptions": 700, "customers": 30, "events": 50}


def table_counts() -> dict[str, int]:
    return {
        "products": Product.objects.count(),
        "subscriptions": Subscription.objects.count(),
        "customers": Customer.objects.count(),
        "events": Event.objects.count(),
    }


def test_seeding_small_numbers_creates_exactly_the_requested_rows():
    result = seed_demo(**SMALL)

    assert result == SMALL
    assert table_counts() == SMALL


def test_seeded_rows_are_consistent_and_ready_for_the_demo_jobs():
    seed_demo(**SMALL)

    assert set(Subscription.objects.values_list("product_version", flat=True)) == {1}
    assert set(Subscription.objects.values_list("status", flat=True)) == {"active"}
    assert set(Event.objects.values_list("status", "send_count", "ack_id").distinct()) == {("pending", 0, "")}
    assert not Event.objects.filter(sent_at__isnull=False).exists()
    assert all(c.email == f"customer{c.pk}@example.com" for c in Customer.objects.all())
    assert all(p.sku == f"SKU-{p.pk:06d}" for p in Product.objects.all())
    # Spread across every product, customers round-robin.
    per_product = Subscription.objects.values("product").annotate(n=Count("id"))
    assert {row["n"] for row in per_product} == {70}
    assert Subscription.objects.values("customer").distinct().count() == 30


def test_many_subscriptions_share_a_created_at_even_within_one_product():
    seed_demo(**SMALL)

    timestamps = Subscription.objects.values("created_at").annotate(n=Count("id"))
    assert timestamps.filter(n__gt=1).count() == 100
    within_product = Subscription.objects.values("product", "created_at").annotate(n=Count("id"))
    assert within_product.filter(n__gt=1).exists()


@pytest.mark.parametrize(("fraction", "changed"), [(0.5, 10), (0.25, 5), (0.0, 0), (1.0, 20)])
def test_about_stale_fraction_of_products_changed_recently_and_their_subscriptions_are_stale(fraction, changed):
    seed_demo(products=20, subscriptions=140, customers=3, events=0, stale_fraction=fraction)

    recent = Product.objects.filter(version=2)
    assert recent.count() == changed
    assert Product.objects.filter(version=1).count() == 20 - changed
    newest_old = Product.objects.filter(version=1).order_by("-updated_at").first()
    oldest_recent = recent.order_by("updated_at").first()
    if newest_old and oldest_recent:
        assert (oldest_recent.updated_at - newest_old.updated_at).days == 30
    stale = Subscription.objects.filter(product_version__lt=F("product__version"))
    assert stale.count() == changed * 7


def test_seeding_again_without_reset_adds_rows_with_unique_skus():
    seed_demo(**SMALL)
    seed_demo(**SMALL)

    assert table_counts() == {key: 2 * value for key, value in SMALL.items()}
    assert Customer.objects.values("email").distinct().count() == 60


def test_the_command_prints_the_counts_and_the_elapsed_time():
    out = StringIO()
    call_command("seed_demo", products=3, subscriptions=21, customers=4, events=5, stdout=out)

    text = out.getvalue()
    for line in ["products: 3", "customers: 4", "subscriptions: 21", "events: 5"]:
        assert line in text
    assert "Seeded in" in text
    assert table_counts() == {"products": 3, "subscriptions": 21, "customers": 4, "events": 5}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"subscriptions": -1}, "subscriptions must not be negative"),
        ({"events": -5}, "events must not be negative"),
        ({"products": 0}, "at least one product"),
        ({"customers": 0}, "at least one customer"),
        ({"stale_fraction": 1.5}, "stale_fraction must be between 0 and 1"),
    ],
)
def test_invalid_input_is_a_command_error_and_writes_nothing(options, message):
    seed_demo(**SMALL)
    before = table_counts()

    with pytest.raises(CommandError, match=message):
        call_command("seed_demo", **{**SMALL, **options, "reset": True}, stdout=StringIO())

    assert table_counts() == before


def test_the_seed_function_refuses_subscriptions_without_products():
    with pytest.raises(ValueError, match="at least one product"):
        seed_demo(products=0, subscriptions=1, customers=1, events=0)
    assert table_counts() == {"products": 0, "subscriptions": 0, "customers": 0, "events": 0}


def test_reset_empties_every_demo_table_and_restarts_ids():
    seed_demo(**SMALL)
    Invoice.objects.create(customer=Customer.objects.first(), period="2026-11", amount_cents=100, body="x")

    reset_demo()

    assert table_counts() == {"products": 0, "subscriptions": 0, "customers": 0, "events": 0}
    assert not Invoice.objects.exists()
    seed_demo(products=1, subscriptions=0, customers=1, events=0)
    assert Product.objects.get().sku == "SKU-000001"
    assert Customer.objects.get().email == "customer1@example.com"


def test_the_command_with_reset_replaces_the_demo_rows():
    seed_demo(**SMALL)

    call_command("seed_demo", products=2, subscriptions=14, customers=2, events=0, reset=True, stdout=StringIO())

    assert table_counts() == {"products": 2, "subscriptions": 14, "customers": 2, "events": 0}
