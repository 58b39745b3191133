"""Admin pages for the demo billing domain (plain, editable demo data)."""

from django.contrib import admin

from opsapp.billing.models import Customer, Event, Invoice, Product, Subscription


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "version", "updated_at"]
    list_filter = ["version"]
    search_fields = ["sku", "name"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "email"]
    search_fields = ["name", "email"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["id", "product", "customer", "created_at", "product_version", "status"]
    list_filter = ["status", "product_version"]
    search_fields = ["product__sku", "customer__email"]
    list_select_related = ["product", "customer"]
    # Millions of rows: no full COUNT(*) per page, no <select> of every product and customer.
    show_full_result_count = False
    raw_id_fields = ["product", "customer"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "send_count", "sent_at", "ack_id"]
    list_filter = ["status", "kind"]
    search_fields = ["kind", "ack_id"]
    show_full_result_count = False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["id", "customer", "period", "amount_cents", "mailed_at"]
    list_filter = ["period"]
    search_fields = ["customer__email", "period"]
    list_select_related = ["customer"]
    raw_id_fields = ["customer"]
