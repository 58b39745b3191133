from importlib import import_module

from django.apps import AppConfig


class PartitionsConfig(AppConfig):
    name = "partitions"
    verbose_name = "Partitioned jobs"

    def ready(self) -> None:
        from partitions import checks, conf  # noqa: F401 - registers system checks
        from partitions.engine import dispatch
        from partitions.jobtypes import registry

        registry.autodiscover()
        for module in conf.get("JOB_MODULES"):
            import_module(module)
        dispatch.set_dispatcher(dispatch.dispatcher_load(conf.get("DISPATCHER")))
