"""The console's admin site: the engine's block first, the demo's next, Django's own after them, and django-q2's
tables (the broker's queue, its task log and its own scheduler, which only drives `tick`) last, marked as
internals so nobody schedules a job there instead of under *Job schedules*."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

#: App labels in the order the index shows them; apps not named here follow, in Django's order.
FIRST = ("partitions", "billing")
#: Apps shown last, their name marked as internals.
INTERNALS = ("django_q",)


class ConsoleAdminSite(admin.AdminSite):
    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)

        def place(app: dict) -> tuple[int, int]:
            label = app["app_label"]
            if label in FIRST:
                return (0, FIRST.index(label))
            return (2, 0) if label in INTERNALS else (1, 0)

        apps.sort(key=place)  # stable: the middle group keeps Django's alphabetical order
        for app in apps:
            if app["app_label"] in INTERNALS:
                app["name"] = f"{app['name']} (internals)"
        return apps


class ConsoleAdminConfig(AdminConfig):
    """django.contrib.admin with the console's site as `admin.site`."""

    default_site = "opsapp.admin_site.ConsoleAdminSite"
