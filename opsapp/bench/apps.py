from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "opsapp.bench"
    label = "bench"
    verbose_name = "Benchmarks"
