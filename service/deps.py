"""FastAPI dependencies as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from mergefront.service.db import session_scope

T = TypeVar("T")


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.sessions) as session:
        yield session


#: One transaction per request, committed before the response is sent (`scope="function"`: the dependency's exit
#: runs when the route function returns, not after the response went out), so whatever a 2xx acknowledges is
#: stored, and a failed commit is a 503 instead of a success.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def read_apart(request: Request, work: Callable[[Session], T], doing: str) -> T:
    """`work` in a transaction of its own, ended before the route goes on: for routes whose slow part (a merge,
    a surrogate fit) needs no database, so that no connection waits idle in a transaction while it runs (PostgreSQL
    ends one idle for `db_idle_seconds`). What `work` returns must not need the session afterwards."""
    with session_scope(request.app.state.sessions, doing) as session:
        return work(session)
