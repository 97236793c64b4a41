"""Who is asking: the bearer token of a request and the scope a route needs.

Every route of the API depends on `authorize` (applied to whole routers in `app.py`): a GET needs a token of
scope read, anything else scope write; routes that reach the server's disk or the tokens add
`Depends(require(TokenScope.admin))`. With `auth_disabled` (only on a loopback address, see `check_auth_setting`)
requests from loopback clients are answered as admin, any other is refused.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mergefront.errors import AuthenticationError, MergefrontError, PermissionDeniedError
from mergefront.service import tokens
from mergefront.service.deps import read_apart
from mergefront.service.models import TokenScope
from mergefront.service.settings import Settings

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="a token from `mergefront token create`")
HINT = ("send `Authorization: Bearer TOKEN` (SDK and CLI: MERGEFRONT_TOKEN or --token); an operator makes tokens "
        "with `mergefront token create`")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address((host or "").strip("[]")).is_loopback
    except ValueError:
        return False


def check_auth_setting(settings: Settings, bind_host: str) -> None:
    """Refuse to serve without authentication anywhere but on a loopback address; log it when allowed."""
    if not settings.auth_disabled:
        return
    if not is_loopback(bind_host):
        raise MergefrontError(f"authentication can be turned off only on a loopback address, not on {bind_host}; "
                              "make a token with `mergefront token create` instead")
    log.warning("authentication is OFF (--no-auth / MERGEFRONT_AUTH_DISABLED): every process on this machine "
                "that can reach %s has admin rights", bind_host)


def current_token(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                  ) -> tokens.TokenInfo | None:
    """The request's token (None: authentication is off and the client is on this machine), checked in a
    transaction of its own: the token's row is not held while the route works (a merge may take minutes)."""
    settings: Settings = request.app.state.settings
    if settings.auth_disabled:
        if not is_loopback(request.client.host if request.client else None):
            raise PermissionDeniedError("this server answers only clients on its own machine")
        return None
    if credentials is None:
        raise AuthenticationError(f"this request needs a token: {HINT}")
    given = credentials.credentials
    return read_apart(request, lambda s: tokens.authenticate(session=s, token=given), "checking the request's token")


TokenDep = Annotated[tokens.TokenInfo | None, Depends(current_token)]


def _check(token: tokens.TokenInfo | None, needed: TokenScope) -> None:
    if token is not None and not token.scope.allows(needed):
        raise PermissionDeniedError(f"token {token.prefix}... has scope {token.scope.value}; this request needs "
                                    f"scope {needed.value}")


def authorize(request: Request, token: TokenDep) -> None:
    """Scope read for reading (GET), write for anything else."""
    _check(token, TokenScope.read if request.method in READ_METHODS else TokenScope.write)


def require(scope: TokenScope) -> Callable[[tokens.TokenInfo | None], None]:
    """A dependency that needs `scope` (on top of `authorize`)."""

    def dependency(token: TokenDep) -> None:
        _check(token, scope)

    return dependency


Authorized = Depends(authorize)
Admin = Depends(require(TokenScope.admin))
