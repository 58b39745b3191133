from django.apps import AppConfig


class OpsappConfig(AppConfig):
    name = "opsapp"
    verbose_name = "Ops project"
