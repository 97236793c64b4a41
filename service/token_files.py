"""Tokens an operator provides as files (compose secrets), made sure of by `mergefront serve` as it starts.

`MERGEFRONT_TOKEN_FILES` lists `name:scope:path` entries, e.g.
`ci:write:/run/secrets/api_token,operator:admin:/run/secrets/admin_token`. Each file holds one token (trailing
whitespace ignored): 32 to 512 characters of a bearer token (letters, digits, `-._~+/`, `=` at the end). At start
each becomes a token of that name and scope, stored as its digest only, like every token. Starting again, or
another replica starting on the same database, changes nothing: a token already stored (found by its digest) keeps
its row and takes the stated name and scope; a revoked one stays revoked (put a new token in the file to replace
it). A token removed from a file is not revoked by that: revoke it (`mergefront token revoke ID`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mergefront.errors import InvalidSpecError, StorageError
from mergefront.service.db import transaction
from mergefront.service.models import ApiToken, TokenScope, utcnow
from mergefront.service.tokens import digest

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{32,512}=*")  # RFC 6750's b64token, at least 32 characters
_NAME = re.compile(r"[^:,\s][^:,]{0,99}")
_LOC = ("MERGEFRONT_TOKEN_FILES",)


@dataclass(frozen=True)
class TokenFile:
    """One token an operator provides: its name, scope, the file it came from, and the token read from it."""

    name: str
    scope: TokenScope
    path: Path
    token: str

    def __repr__(self) -> str:  # never the token itself
        return f"TokenFile(name={self.name!r}, scope={self.scope.value!r}, path={str(self.path)!r})"


def read_token_files(entries: Sequence[str]) -> list[TokenFile]:
    """Parse `name:scope:path` entries and read each file; InvalidSpecError naming the entry, never the token."""
    found: list[TokenFile] = []
    for entry in entries:
        name, scope, path = _split(entry)
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise InvalidSpecError(f"token file of {name!r} cannot be read ({path}): {reason}", _LOC) from exc
        if not _TOKEN.fullmatch(text):
            raise InvalidSpecError(f"token file of {name!r} ({path}) must hold one token of 32 to 512 characters "
                                   "(letters, digits, -._~+/ and = at its end); make one with docker/secrets.sh",
                                   _LOC)
        if any(t.token == text for t in found):
            raise InvalidSpecError(f"token file of {name!r} ({path}) holds the same token as another entry", _LOC)
        found.append(TokenFile(name, scope, Path(path), text))
    return found


def _split(entry: str) -> tuple[str, TokenScope, str]:
    parts = entry.split(":", 2)
    if len(parts) != 3 or not parts[2].strip():
        raise InvalidSpecError(f"{entry!r} is not name:scope:path (e.g. ci:write:/run/secrets/api_token)", _LOC)
    name, scope, path = (p.strip() for p in parts)
    if not _NAME.fullmatch(name):
        raise InvalidSpecError(f"{name!r}: a token's name has 1 to 100 characters, no ':' or ','", _LOC)
    if scope not in TokenScope.__members__:
        raise InvalidSpecError(f"{scope!r} is not a scope; one of {list(TokenScope.__members__)}", _LOC)
    return name, TokenScope(scope), path


def ensure_tokens(*, sessions: sessionmaker[Session], files: Sequence[TokenFile]) -> None:
    """Make sure every token provided as a file is stored with its name and scope (idempotent; replicas starting
    together may race: one stores a token, the others find it)."""
    for item in files:
        for attempt in (1, 2):
            try:
                transaction(sessions, partial(_ensure, item=item),
                            doing=f"storing the token {item.name!r} of {item.path}")
                break
            except StorageError as exc:  # another replica stored it first: found on the next attempt
                if attempt == 2 or not isinstance(exc.__cause__, IntegrityError):
                    raise


def _find(session: Session, item: TokenFile) -> ApiToken | None:
    return session.scalar(select(ApiToken).where(ApiToken.digest == digest(item.token)))


def _ensure(session: Session, item: TokenFile) -> None:
    row = _find(session, item)
    if row is None:
        session.add(ApiToken(name=item.name, scope=item.scope.value, digest=digest(item.token),
                             prefix=item.token[:10], created_at=utcnow()))
        session.flush()
        log.info("token %r (%s) stored from %s", item.name, item.scope.value, item.path)
    elif row.revoked_at is not None:
        log.warning("token %r from %s was revoked (token %d); it stays revoked: put a new token in the file",
                    item.name, item.path, row.id)
    elif (row.name, row.scope) != (item.name, item.scope.value):
        row.name, row.scope = item.name, item.scope.value
        log.info("token %d now named %r with scope %s, as %s says", row.id, item.name, item.scope.value, item.path)
