"""API tokens in the admin: create one (its plaintext is shown once, in the message after saving; only its hash
is kept) and revoke them. A user sees and makes their own tokens; a superuser anyone's. Django's model
permissions apply: `add_apitoken` to create, `change_apitoken` to revoke."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from partitions.httpapi.tokens import token_create, token_revoke
from partitions.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        """A superuser's: every token; anyone else's: their own."""
        rows = super().get_queryset(request).select_related("user")
        return rows if request.user.is_superuser else rows.filter(user=request.user)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        """A new token: its name (and, for a superuser, its user); a saved one: everything, read-only."""
        if obj is not None:
            return ["name", "user", *self.readonly_fields]
        return ["name", "user"] if request.user.is_superuser else ["name"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        """A saved token is never edited (revoke it instead)."""
        return [*self.readonly_fields, "name", "user"] if obj is not None else []

    def get_form(self, request: HttpRequest, obj: ApiToken | None = None, change: bool = False, **kwargs: Any) -> type:
        """The add form, its user the requesting one by default."""
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None and "user" in form.base_fields:
            form.base_fields["user"].initial = request.user.pk
        return form

    def save_model(self, request: HttpRequest, obj: ApiToken, form, change: bool) -> None:
        """A new token is made by `token_create` (a token is never edited): its plaintext is shown once."""
        if change:
            return
        token, plaintext = token_create(obj.user if obj.user_id else request.user, obj.name)
        obj.pk, obj.prefix, obj.created_at = token.pk, token.prefix, token.created_at
        messages.warning(request, f"API token {token.name!r} created. Copy it now, it is not shown again: "
                                  f"{plaintext}")

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        """Revoke the selected tokens."""
        revoked = sum(token_revoke(token) for token in queryset)
        messages.success(request, f"{revoked} token(s) revoked.")
