"""What every engine admin shares: read-only rows, a `has_<action>_permission` hook for every operator action, and
small links."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

from partitions.admin.actions import ActionResult
from partitions.core.validation import parse_id
from partitions.models import Job
from partitions.permissions import Action, may

#: Most per-object messages one bulk action reports individually.
MAX_MESSAGES = 10


def _permission_hook(action: Action) -> Callable[[admin.ModelAdmin, HttpRequest], bool]:
    def has_permission(self: admin.ModelAdmin, request: HttpRequest) -> bool:
        return may(request.user, action)

    has_permission.__name__ = f"has_{action}_permission"
    has_permission.__doc__ = f"Whether the user may {action.replace('_', ' ')} (`permissions.may`)."
    return has_permission


def _with_permission_hooks[T: type[admin.ModelAdmin]](cls: T) -> T:
    """`has_<action>_permission` on `cls` for every `permissions.Action` (what `@admin.action` asks)."""
    for action in Action:
        setattr(cls, f"has_{action}_permission", _permission_hook(action))
    return cls


@_with_permission_hooks
class EngineAdmin(admin.ModelAdmin):
    """Rows the engine owns: viewable, never added, edited or deleted through a form (superusers included).

    Operators change them only through actions, which call the services. `@admin.action(permissions=[name])`
    asks `has_<name>_permission`: there is one for every `permissions.Action`, each asking `may`.
    """

    #: Fields with tracebacks (server paths, code): shown only to users who may read them (the operators).
    operator_only_fields: tuple[str, ...] = ()

    def get_exclude(self, request, obj=None):
        hidden = () if may(request.user, Action.VIEW_TRACEBACKS) else self.operator_only_fields
        return [*(super().get_exclude(request, obj) or ()), *hidden]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    class Media:
        css = {"all": ["partitions/admin.css"]}


class JobFilter(admin.SimpleListFilter):
    """Filter by job without a <select> of every job ever run: the newest ones, plus the chosen one."""

    title = "job"
    parameter_name = "job"

    def lookups(self, request, model_admin):
        recent = list(Job.objects.order_by("-id").values_list("id", "type_name")[:15])
        chosen = parse_id(self.value())
        if chosen is not None and all(pk != chosen for pk, _ in recent):
            recent.insert(0, (chosen, "selected"))
        return [(str(pk), f"#{pk} {name}") for pk, name in recent]

    def queryset(self, request, queryset):
        value = parse_id(self.value())
        return queryset if value is None else queryset.filter(job_id=value)


class KnownCountPaginator(Paginator):
    """A paginator whose total is already known (from the progress aggregate): no COUNT(*) query."""

    def __init__(self, object_list, per_page, *, count: int):
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count


def job_url(job_id: int) -> str:
    return reverse("admin:partitions_job_change", args=[job_id])


def job_link(job_id: int) -> SafeString:
    return format_html('<a href="{}">#{}</a>', job_url(job_id), job_id)


def changelist_url(model_name: str, **params) -> str:
    return reverse(f"admin:partitions_{model_name}_changelist") + ("?" + urlencode(params) if params else "")


def report(model_admin: admin.ModelAdmin, request, outcomes: list[ActionResult]) -> None:
    """message_user for each outcome (the first few; then one summary line)."""
    for outcome in outcomes[:MAX_MESSAGES]:
        model_admin.message_user(request, outcome.message, outcome.level)
    rest = outcomes[MAX_MESSAGES:]
    if rest:
        refused = sum(1 for o in rest if o.level == messages.ERROR)
        model_admin.message_user(request, f"\u2026 and {len(rest)} more, {refused} of them refused.",
                                 messages.ERROR if refused else messages.SUCCESS)
    if not outcomes:
        model_admin.message_user(request, "Nothing to do for the selection.", messages.WARNING)


def confirm_response(model_admin: admin.ModelAdmin, request, *, label: str, question: str,
                     items: list[tuple[str, str]], hidden: list[tuple[str, object]], form_url: str, back_url: str,
                     asks_reason: bool = False, asks_note: bool = False, danger: bool = False,
                     confirm_label: str | None = None) -> TemplateResponse:
    """The intermediate "are you sure?" page (like delete confirmation); its form POSTs `hidden` back.
    `confirm_label`: the button's words when they can say more than "Yes, <label>" ("Yes, retry 526 …");
    `asks_note`: a required note (a skip's)."""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": f"{label}: are you sure?",
        "label": label,
        "confirm_label": confirm_label or f"Yes, {label[0].lower()}{label[1:]}",
        "question": question,
        "items": items,
        "hidden": hidden,
        "form_url": form_url,
        "back_url": back_url,
        "asks_reason": asks_reason,
        "asks_note": asks_note,
        "danger": danger,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/partitions/action_confirmation.html", context)


def selection_hidden(request, action_name: str, pks: list) -> list[tuple[str, object]]:
    """Hidden fields that replay a changelist action with `post=yes` (Django's delete_selected shape).

    With "select all N" (select_across) the confirm POST carries the flag instead of every id, and
    goes back to the same filtered changelist URL, so the action sees the same queryset again.
    """
    fields: list[tuple[str, object]] = [("action", action_name), ("post", "yes")]
    if request.POST.get("select_across") == "1":
        # Django still wants at least one checked id next to the flag: replay the ones that were checked.
        fields.append(("select_across", "1"))
        pks = request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)
    return fields + [(admin.helpers.ACTION_CHECKBOX_NAME, pk) for pk in pks]


def selection_items(queryset, *, shown: int = 50, label=str, url=None) -> list[tuple[str, str]]:
    """What the confirm page lists: the first `shown` rows, then how many more."""
    rows = list(queryset[: shown + 1])
    items = [(label(obj), url(obj) if url else "") for obj in rows[:shown]]
    if len(rows) > shown:
        items.append((f"\u2026 and {queryset.count() - shown:,} more", ""))
    return items


def action_target(model_admin: admin.ModelAdmin, request, object_id: str, actions: dict, action_name: str):
    """The (action, object) a per-object action URL names, after its checks: an unknown action is a 404, a
    method other than GET/POST a 405, a missing object a redirect (returned as the second value with action
    None), and a user without the view or the action's permission a 403."""
    action = actions.get(action_name)
    if action is None:
        raise Http404(f"no action {action_name!r}")
    if request.method not in ("GET", "HEAD", "POST"):
        return None, HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None:
        return None, model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    if not (model_admin.has_view_permission(request, obj) and may(request.user, action.action)):
        raise PermissionDenied
    return action, obj
