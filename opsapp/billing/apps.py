from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "opsapp.billing"
    label = "billing"
    verbose_name = "Billing demo"
