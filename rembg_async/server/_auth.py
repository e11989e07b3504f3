"""Who is calling: an account, or nobody (anonymous)."""

from __future__ import annotations

from aiohttp import web

from .._contract import (
    API_KEY_HEADER,
    MSG_EMAIL_NOT_VERIFIED,
    MSG_INVALID_API_KEY,
    MSG_KEY_AND_TOKEN,
)
from ._accounts import AccountState
from ._state import APIError, ServerState


def authenticate(
    request: web.Request, state: ServerState, *, required: bool
) -> AccountState | None:
    """The caller's account, or None for an anonymous call where that is allowed.

    **[decision]** a user token is an ``Authorization: Bearer …`` header. The local server has
    no web sessions, so a token alone is anonymous; with an API key it is the API's 400.
    An empty ``x-api-key`` counts as none.
    """
    api_key = request.headers.get(API_KEY_HEADER, "")
    if api_key and _has_user_token(request):
        raise APIError(400, MSG_KEY_AND_TOKEN)
    if not api_key:
        if required:
            raise APIError(401, MSG_INVALID_API_KEY)
        return None
    account = state.accounts.get(api_key)
    if account is None:
        raise APIError(401, MSG_INVALID_API_KEY)
    if not account.account.email_verified:
        raise APIError(403, MSG_EMAIL_NOT_VERIFIED)
    return account


def _has_user_token(request: web.Request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def client_address(request: web.Request) -> str:
    """The caller's address, which anonymous limits are counted by."""
    return request.remote or "unknown"
