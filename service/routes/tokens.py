"""API tokens, for admins: make, list, revoke (the CLI's `mergefront token` does the same on the database)."""

from __future__ import annotations

from fastapi import APIRouter

from mergefront.schemas import NewTokenOut, TokenCreate, TokenOut
from mergefront.service import tokens
from mergefront.service.auth import Admin
from mergefront.service.deps import SessionDep
from mergefront.service.http_errors import STORED
from mergefront.service.models import TokenScope
from mergefront.service.routes.params import TokenId

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], dependencies=[Admin], responses=STORED)


@router.post("", status_code=201)
def create_token(body: TokenCreate, session: SessionDep) -> NewTokenOut:
    """Make a token; the response holds the token itself, shown this once."""
    made = tokens.create_token(session=session, name=body.name, scope=TokenScope(body.scope),
                               expires_days=body.expires_days)
    return NewTokenOut.model_validate({**TokenOut.model_validate(made.info).model_dump(), "token": made.token})


@router.get("")
def list_tokens(session: SessionDep) -> list[TokenOut]:
    """Every token (never the token itself)."""
    return [TokenOut.model_validate(t) for t in tokens.list_tokens(session=session)]


@router.delete("/{token_id}")
def revoke_token(token_id: TokenId, session: SessionDep) -> TokenOut:
    """Revoke a token: the next request with it is refused."""
    return TokenOut.model_validate(tokens.revoke_token(session=session, token_id=token_id))
