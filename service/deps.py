"""FastAPI dependencies as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from mergefront.service.db import session_scope


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.sessions) as session:
        yield session


#: One transaction per request, committed before the response is sent (`scope="function"`: the dependency's exit
#: runs when the route function returns, not after the response went out), so whatever a 2xx acknowledges is
#: stored, and a failed commit is a 503 instead of a success.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
