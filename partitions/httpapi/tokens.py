"""API tokens: made with `secrets`, kept as their SHA-256 (the plaintext is shown once), found by their prefix.

A token reads `pt_<prefix>_<secret>`: the prefix is stored as is (unique, for the look-up), the whole token only
hashed, and compared in constant time. A revoked token, or one whose user is inactive, authenticates nobody.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.db.models.functions import Now

from partitions.models import ApiToken

#: Every token starts with it (secret scanners and people can tell one at a glance).
SCHEME = "pt"
PREFIX_BYTES = 6
SECRET_BYTES = 32
#: Seconds between two writes of a token's `last_used_at` (not one write per request).
LAST_USED_EVERY = timedelta(seconds=60)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_create(user: Any, name: str) -> tuple[ApiToken, str]:
    """A new token of `user`: the row, and the plaintext to show once (it is not stored)."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    plaintext = f"{SCHEME}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    token = ApiToken.objects.create(user=user, name=name, prefix=prefix, secret_hash=_digest(plaintext))
    return token, plaintext


def token_revoke(token: ApiToken) -> bool:
    """Refuse the token from now on; False when it was revoked already."""
    return bool(ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=Now()))


def token_user(plaintext: str) -> Any | None:
    """The active user a live token belongs to, or None (unknown, malformed, revoked, inactive user)."""
    scheme, _, rest = plaintext.partition("_")
    prefix = rest.partition("_")[0]
    if scheme != SCHEME or len(prefix) != 2 * PREFIX_BYTES or not prefix.isalnum() or not prefix.isascii():
        return None
    token = (ApiToken.objects.select_related("user")
             .filter(prefix=prefix, revoked_at__isnull=True).first())
    if token is None or not hmac.compare_digest(token.secret_hash, _digest(plaintext)):
        return None
    if not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).exclude(last_used_at__gt=Now() - LAST_USED_EVERY).update(last_used_at=Now())
    return token.user

