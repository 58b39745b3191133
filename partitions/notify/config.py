"""Which channels a job notifies, for which events: settings, overridden per job type, overridden per run.

    PARTITIONS_NOTIFY = {
        "email": ["ops@example.com"],
        "webhooks": {"ops": {"url": "https://hooks.example.com/jobs", "secret": "…"}},
        "events": ["step_started", "step_finished", "job_succeeded", …],   # default: all of EVENTS
        "partitions_failed_threshold": 1,
    }

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
from partitions.exceptions import InvalidParams
from partitions.validation import RUN_OPTIONS

EVENTS = ("step_started", "step_finished", "job_succeeded", "job_failed", "job_cancelled", "deadline_at_risk",
          "partitions_failed")
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
            try:
                validate_email(target)
                email.append(target)
            except ValidationError:
                problems.append(f"{value!r}: not an e-mail address")
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
