"""Sending one delivery: an e-mail, or an HTTP POST of its JSON signed with the webhook's secret.

Webhook requests carry
- `X-Partitions-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the webhook's secret>`,
- `Idempotency-Key: <the delivery's key>` (the same on every retry: receivers drop repeats by it),
- `X-Partitions-Event: <kind>`.
Any 2xx is success; anything else, or no answer within `TIMEOUT_SECONDS`, is a failure to retry. A redirect is
never followed (it would carry the signed body to whatever host the receiver names): a 3xx is a failed delivery
that names its Location. A URL that is not https (or http with `allow_http`) is refused without a request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import EmailMessage

from partitions.core.exceptions import PartitionsError
from partitions.core.limits import ECHO, SHORT_TEXT, clip
from partitions.models import Delivery
from partitions.notify.config import Plan, webhook_url_error

TIMEOUT_SECONDS = 5.0


class DeliveryFailed(PartitionsError):
    """A channel refused or did not answer; the delivery is retried later."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirects)


def body_of(delivery: Delivery) -> bytes:
    return json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    """The value of X-Partitions-Signature for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _subject(delivery: Delivery) -> str:
    job = delivery.payload.get("job", {})
    what = f"{delivery.kind.replace('_', ' ')}{f' ({delivery.step})' if delivery.step else ''}"
    return f"Job #{job.get('id')} {job.get('type')}: {what}"


def send(delivery: Delivery, plan: Plan) -> None:
    """Deliver once; raise DeliveryFailed when the channel did not take it."""
    if delivery.channel == "email":
        if not plan.email:
            raise DeliveryFailed("no e-mail recipients configured any more")
        EmailMessage(_subject(delivery), json.dumps(delivery.payload, indent=2, sort_keys=True),
                     settings.DEFAULT_FROM_EMAIL, list(plan.email),
                     headers={"X-Idempotency-Key": delivery.idempotency_key}).send()
        return
    name = delivery.channel.removeprefix("webhook:")
    hook = plan.webhook(name)
    if hook is None:
        raise DeliveryFailed(f"no webhook named {name!r} configured any more")
    if problem := webhook_url_error(hook.url):
        raise DeliveryFailed(f"webhook {name!r} {problem}")
    body = body_of(delivery)
    request = urllib.request.Request(hook.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "partitions-notify/1",
        "X-Partitions-Signature": signature(hook.secret, body), "X-Partitions-Event": delivery.kind,
        "Idempotency-Key": delivery.idempotency_key,
    })
    try:
        with _OPENER.open(request, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            location = clip(str(exc.headers.get("Location", "?")), ECHO)
            raise DeliveryFailed(f"HTTP {exc.code} from {name}: redirect to {location} not followed") from exc
        raise DeliveryFailed(f"HTTP {exc.code} from {name}") from exc
    except (OSError, ValueError) as exc:
        raise DeliveryFailed(clip(f"{name}: {type(exc).__name__}: {exc}", SHORT_TEXT)) from exc
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status} from {name}")
