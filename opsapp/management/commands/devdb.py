"""`manage.py devdb start|stop|status|url [--failover]` and `devdb standby start [--sync]|stop|promote|status`: the
embedded development PostgreSQL and its streaming-replication standby."""

from django.core.management.base import BaseCommand, CommandError

from opsapp import devdb


class Command(BaseCommand):
    help = ("Start, stop or inspect the embedded PostgreSQL used when DATABASE_URL is unset, or its standby "
            "(`standby start [--sync]|stop|promote|status`) for trying a failover.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status", "url", "standby"])
        parser.add_argument("rest", nargs="*", help="standby: start|stop|promote|status")
        parser.add_argument("--sync", action="store_true", help="standby start: synchronous replication")
        parser.add_argument("--failover", action="store_true", help="url: both servers' sockets (libpq multi-host)")

    def handle(self, *args, action: str, rest: list[str], sync: bool, failover: bool, **options):
        argv = [action, *rest, *(["--sync"] if sync else []), *(["--failover"] if failover else [])]
        if devdb.main(argv) != 0:
            raise CommandError(f"devdb {' '.join(argv)} failed")
