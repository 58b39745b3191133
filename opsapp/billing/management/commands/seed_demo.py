"""`manage.py seed_demo`: fill the demo billing tables fast (see opsapp/billing/seeding.py)."""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from opsapp.billing.seeding import reset_demo, seed_demo


class Command(BaseCommand):
    help = "Insert demo products, customers, subscriptions and events (server-side, in one transaction)."

    def add_arguments(self, parser):
        parser.add_argument("--products", type=int, default=20)
        parser.add_argument("--subscriptions", type=int, default=100_000)
        parser.add_argument("--events", type=int, default=10_000)
        parser.add_argument("--customers", type=int, default=1_000)
        parser.add_argument(
            "--stale-fraction", type=float, default=0.5, help="share of products that changed recently (0..1)"
        )
        parser.add_argument("--reset", action="store_true", help="delete all demo rows first")

    def handle(
        self,
        *args,
        products: int,
        subscriptions: int,
        events: int,
        customers: int,
        stale_fraction: float,
        reset: bool,
        **options,
    ):
        started = time.monotonic()
        try:
            # One transaction: invalid numbers leave the tables as they were, even with --reset.
            with transaction.atomic():
                if reset:
                    reset_demo()
                counts = seed_demo(
                    products=products,
                    subscriptions=subscriptions,
                    customers=customers,
                    events=events,
                    stale_fraction=stale_fraction,
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        elapsed = time.monotonic() - started
        if reset:
            self.stdout.write("Deleted all demo rows.")
        for table, count in counts.items():
            self.stdout.write(f"{table}: {count}")
        self.stdout.write(self.style.SUCCESS(f"Seeded in {elapsed:.2f} s."))
