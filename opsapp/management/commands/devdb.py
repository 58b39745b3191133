"""`manage.py devdb start|stop|status|url`: the embedded development PostgreSQL."""

from django.core.management.base import BaseCommand, CommandError

from opsapp import devdb


class Command(BaseCommand):
    help = "Start, stop or inspect the embedded PostgreSQL used when DATABASE_URL is unset."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status", "url"])

    def handle(self, *args, action: str, **options):
        if devdb.main([action]) != 0:
            raise CommandError(f"devdb {action} failed")
