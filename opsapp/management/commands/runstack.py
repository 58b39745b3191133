"""`manage.py runstack`: what `make run` runs: database, migrations, admin user, gunicorn and one qcluster.

Children run in their own sessions so a terminal Ctrl-C reaches only us; we
then SIGTERM each child's main pid (a qcluster stops cleanly only that way,
django-q2 issue #346) and SIGKILL whatever is still alive after a grace period.
"""

import os
import secrets
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from opsapp import devdb
from opsapp.processes import stop_groups
from partitions.jobtypes import registry

GRACE_SECONDS = 15


class Command(BaseCommand):
    help = "Serve the admin with gunicorn and run one qcluster until Ctrl-C or SIGTERM."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--bind", default="127.0.0.1")

    def handle(self, *args, port: int, bind: str, **options):
        started_db = False
        if os.environ.get("DATABASE_URL"):
            self.stdout.write("Using DATABASE_URL.")
        else:
            started_db = devdb.start()
            self.stdout.write(f"Embedded PostgreSQL {'started' if started_db else 'already running'}.")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        username, password = self._ensure_admin()
        children = self._spawn(bind, port)
        self.stdout.write(self.style.SUCCESS(f"\nAdmin: http://{bind}:{port}/admin/"))
        self.stdout.write(f"User: {username}  Password: {password}")
        self.stdout.write("Job types: " + ", ".join(registry.all_types()))
        self.stdout.write("Ctrl-C to stop.\n")
        try:
            self._wait(children)
        finally:
            self._stop(children)
            if started_db:
                devdb.stop()
                self.stdout.write("Embedded PostgreSQL stopped.")

    def _ensure_admin(self) -> tuple[str, str]:
        """Create the admin user once; its generated password is printed only then."""
        username = os.environ.get("ADMIN_USERNAME", "admin")
        password = os.environ.get("ADMIN_PASSWORD", "")
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = password or secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username=username, email="", password=password)
            return username, password
        if password:
            user.set_password(password)
            user.save(update_fields=["password"])
            return username, password
        return username, "(unchanged; it was printed when the user was created, or set ADMIN_PASSWORD)"

    def _spawn(self, bind: str, port: int) -> dict[str, subprocess.Popen]:
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        gunicorn = [sys.executable, "-m", "gunicorn", "opsapp.wsgi", "--bind", f"{bind}:{port}",
                    "--workers", os.environ.get("WEB_CONCURRENCY", "2"), "--access-logfile", "-", "--no-control-socket"]
        return {
            "gunicorn": subprocess.Popen(gunicorn, cwd=settings.BASE_DIR, start_new_session=True),
            "qcluster": subprocess.Popen([*manage, "qcluster"], cwd=settings.BASE_DIR, start_new_session=True),
        }

    def _wait(self, children: dict[str, subprocess.Popen]) -> None:
        stop = False

        def request_stop(signum, frame):
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stop:
            for name, proc in children.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with {proc.returncode}; stopping.")
                    return
            time.sleep(0.5)

    def _stop(self, children: dict[str, subprocess.Popen]) -> None:
        names = {proc.pid: name for name, proc in children.items()}
        stop_groups(children.values(), grace=GRACE_SECONDS, on_kill=lambda proc: self.stderr.write(
            f"{names[proc.pid]} did not stop in {GRACE_SECONDS}s; killing it."))
        self.stdout.write("Stopped gunicorn and qcluster.")
