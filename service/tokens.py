"""API tokens: made, listed, revoked, and checked against their SHA-256 digest.

A token is `mf_` and 43 URL-safe characters (256 random bits). Only its digest is stored, so a copy of the
database lets nobody in; the token itself is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mergefront.errors import AuthenticationError, InvalidSpecError, NotFoundError
from mergefront.service.models import ApiToken, TokenScope, utcnow

PREFIX = "mf_"
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per token


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    scope: TokenScope
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewToken:
    info: TokenInfo
    token: str  # shown once


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(row.id, row.name, TokenScope(row.scope), row.prefix, row.created_at, row.expires_at,
                     row.last_used_at, row.revoked_at)


def create_token(*, session: Session, name: str, scope: TokenScope, expires_days: float | None = None) -> NewToken:
    """Make a token; the returned `token` is the only copy of it."""
    if not name.strip() or len(name) > 100:
        raise InvalidSpecError("a token's name has 1 to 100 characters", ("name",))
    token = PREFIX + secrets.token_urlsafe(32)
    expires = None if expires_days is None else utcnow() + timedelta(days=expires_days)
    row = ApiToken(name=name.strip(), scope=scope.value, digest=digest(token), prefix=token[:10], created_at=utcnow(),
                   expires_at=expires)
    session.add(row)
    session.flush()
    return NewToken(_info(row), token)


def list_tokens(*, session: Session) -> list[TokenInfo]:
    return [_info(r) for r in session.scalars(select(ApiToken).order_by(ApiToken.id))]


def revoke_token(*, session: Session, token_id: int) -> TokenInfo:
    """Revoke a token (at once: the next request with it is refused); revoking twice is harmless."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFoundError(f"token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return _info(row)


def authenticate(*, session: Session, token: str) -> TokenInfo:
    """The token's record, if it is known, unrevoked and unexpired; else AuthenticationError (saying which)."""
    row = session.scalar(select(ApiToken).where(ApiToken.digest == digest(token)))
    if row is None:
        raise AuthenticationError("unknown token")
    now = utcnow()
    if row.revoked_at is not None:
        raise AuthenticationError(f"token {row.prefix}... was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthenticationError(f"token {row.prefix}... expired")
    if row.last_used_at is None or now - row.last_used_at >= _TOUCH_EVERY:
        row.last_used_at = now
        session.flush()
    return _info(row)
