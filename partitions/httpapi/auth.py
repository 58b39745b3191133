"""Who calls: a bearer token (`Authorization: Bearer <token>`, for automation) or the admin's session (for the
browser). A request that carries an Authorization header is judged by it alone: it is never cookie-authenticated,
so it needs no CSRF token, and a bad token is a 401 even with a session cookie beside it. A session request
must pass Django's CSRF check on unsafe methods (ninja's SessionAuth with csrf=True)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer, SessionAuth

from partitions.core.exceptions import NotPermitted
from partitions.httpapi.tokens import token_user


class TokenAuth(HttpBearer):
    """An API token: the active user it belongs to, or a 401."""

    def __call__(self, request: HttpRequest) -> Any | None:
        header = request.headers.get("Authorization")
        if header is None:
            return None  # no token: the session may authenticate
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError()
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Any | None:
        user = token_user(token)
        if user is None:
            raise AuthenticationError()
        return user


class BrowserSession(SessionAuth):
    """The admin's session, with Django's CSRF check on unsafe methods; never for a request with a token."""

    def __call__(self, request: HttpRequest) -> Any | None:
        if "Authorization" in request.headers or settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return None  # a token request, or no session at all (a 401 then, not a CSRF refusal)
        return super().__call__(request)


AUTH = [TokenAuth(), BrowserSession(csrf=True)]


def user_of(request: HttpRequest) -> Any:
    """The authenticated user of an API request (set by AUTH)."""
    return request.auth


def require_perm(request: HttpRequest, perm: str, what: str) -> Any:
    """The request's user when it holds `perm` (a read's permission, as the admin's view permissions); else
    NotPermitted."""
    user = user_of(request)
    if not (user.is_active and user.has_perm(perm)):
        raise NotPermitted(perm, what)
    return user
