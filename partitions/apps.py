from importlib import import_module

from django.apps import AppConfig


class PartitionsConfig(AppConfig):
    name = "partitions"
    verbose_name = "Partitioned jobs"

    def ready(self) -> None:
        from partitions import checks, conf, registry  # noqa: F401 - registers system checks

        registry.autodiscover()
        for module in conf.get("JOB_MODULES"):
            import_module(module)
        if conf.get("DISPATCHER") == "django_q":
            from partitions import tasks

            tasks.install()
