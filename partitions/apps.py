from django.apps import AppConfig


class PartitionsConfig(AppConfig):
    name = "partitions"
    verbose_name = "Partitioned jobs"

    def ready(self) -> None:
        from partitions import checks, registry  # noqa: F401 - registers system checks

        registry.autodiscover()
