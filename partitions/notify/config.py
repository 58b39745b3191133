"""Which channels a job notifies, for which events: settings, overridden per job type, overridden per run.

    PARTITIONS_NOTIFY = {
        "email": ["ops@example.com"],                      # the operators' addresses
        "email_allowed": ["ops@example.com", "@example.com"],  # what a run may name (default: "email")
        "webhooks": {"ops": {"url": "https://hooks.example.com/jobs", "secret": "…"}},
        "allow_http": False,                               # True: plain-http webhook URLs are accepted too
        "events": ["step_started", "step_finished", "job_succeeded", …],   # default: all of EVENTS
        "partitions_failed_threshold": 1,
    }

A run that names its own addresses (`email:ADDRESS`) may only name allowed ones: an exact address, or any
address of an `@domain` entry; so the start permission does not let anyone mail a job's details anywhere.
A webhook URL must be https (http only with `allow_http`); the system check `partitions.E003` refuses any
other scheme at start-up, and a delivery never follows a redirect.

A job type may set `notify = {"email": [...], "webhooks": ["ops"], "events": [...]}` and a run may carry
the same shape (start form, `jobs start --notify`); each key given replaces the one below it. Webhooks are
named: their URLs and secrets live in the settings only, never in a job row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from partitions import conf
from partitions.core.events import NotificationKind
from partitions.core.exceptions import InvalidParams
from partitions.core.validation import RUN_OPTIONS

#: What a job notifies by default: every kind of notification.
EVENTS = tuple(NotificationKind.values)
#: Most channels one run may name.
MAX_CHANNELS = 20


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    secret: str


@dataclass(frozen=True)
class Plan:
    """Where one job's notifications go."""

    email: tuple[str, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    events: frozenset[str] = frozenset(EVENTS)
    partitions_failed_threshold: int = 1

    def channels(self) -> list[str]:
        return (["email"] if self.email else []) + [f"webhook:{hook.name}" for hook in self.webhooks]

    def webhook(self, name: str) -> Webhook | None:
        return next((hook for hook in self.webhooks if hook.name == name), None)


def _global() -> dict[str, Any]:
    return conf.get("NOTIFY") or {}


def operator_addresses() -> tuple[str, ...]:
    """The operators' e-mail addresses (PARTITIONS_NOTIFY["email"])."""
    return tuple(str(a) for a in _global().get("email") or ())


def email_allowed(address: str) -> bool:
    """Whether a run may send notifications to `address`: listed in PARTITIONS_NOTIFY["email_allowed"] (an exact
    address or an `@domain`), by default the operators' own addresses."""
    allowed = _global().get("email_allowed")
    entries = [str(e).lower() for e in (operator_addresses() if allowed is None else allowed)]
    address = address.lower()
    return address in entries or any(e.startswith("@") and address.endswith(e) for e in entries)


def webhook_url_error(url: str) -> str | None:
    """Why a webhook URL is refused (not https, or http without allow_http; any other scheme), or None."""
    scheme = url.partition(":")[0].lower() if ":" in url else ""
    if scheme == "https" or (scheme == "http" and _global().get("allow_http")):
        return None
    if scheme == "http":
        return "uses http: use https, or set PARTITIONS_NOTIFY['allow_http'] = True"
    return f"has scheme {scheme or 'none'!r}: only https (or http with allow_http) is sent to"


def _defined_webhooks() -> dict[str, Webhook]:
    return {name: Webhook(name, str(spec["url"]), str(spec.get("secret", "")))
            for name, spec in (_global().get("webhooks") or {}).items()}


def plan_for(job, job_type=None) -> Plan:
    """The channels of `job`: its run's choice, else its type's, else the settings' (key by key)."""
    merged: dict[str, Any] = dict(_global())
    merged["webhooks"] = list(_defined_webhooks())
    for layer in (getattr(job_type, "notify", None), job.notify):
        if layer is not None:
            merged.update({k: v for k, v in layer.items() if k in ("email", "webhooks", "events")})
    defined = _defined_webhooks()
    return Plan(
        email=tuple(merged.get("email") or ()),
        webhooks=tuple(defined[name] for name in merged.get("webhooks") or () if name in defined),
        events=frozenset(merged.get("events") or EVENTS),
        partitions_failed_threshold=int(merged.get("partitions_failed_threshold", 1)),
    )


def notify_choice(values: list[str]) -> dict[str, list[str]] | None:
    """A run's `--notify` / start-form choice: `email:ADDRESS`, `webhook:NAME` or `none`, each at most once.

    [] means "the defaults" (None); `none` alone means "no notifications". Raises InvalidParams, one line.
    """
    values = [v.strip() for v in values if v.strip()]
    if not values:
        return None
    if values == ["none"]:
        return {"email": [], "webhooks": []}
    problems, email, hooks = [], [], []
    defined = _defined_webhooks()
    for value in values[: MAX_CHANNELS + 1]:
        kind, _, target = value.partition(":")
        if kind == "email":
            if problem := _email_problem(value, target):
                problems.append(problem)
            else:
                email.append(target)
        elif kind == "webhook" and target in defined:
            hooks.append(target)
        elif kind == "webhook":
            problems.append(f"{value!r}: no webhook named {target!r} in PARTITIONS_NOTIFY")
        else:
            problems.append(f"{value!r}: use email:ADDRESS, webhook:NAME or none")
    if len(values) > MAX_CHANNELS:
        problems.append(f"at most {MAX_CHANNELS} channels")
    if problems:
        raise InvalidParams(RUN_OPTIONS, {"notify": problems[:1]})
    return {"email": sorted(set(email)), "webhooks": sorted(set(hooks))}


def _email_problem(value: str, address: str) -> str | None:
    try:
        validate_email(address)
    except ValidationError:
        return f"{value!r}: not an e-mail address"
    if not email_allowed(address):
        return f"{value!r}: not an allowed address (PARTITIONS_NOTIFY['email_allowed'])"
    return None
