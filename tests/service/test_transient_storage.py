"""Transient database errors are retried in one place (`db.transaction`); errors that persist end the work and say
which; other errors are not retried.

Real faults: a PostgreSQL backend terminated under the unit of work, a SQLite file locked by another writer.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mergefront.errors import StorageError
from mergefront.service.db import make_engine, make_session_factory, transaction, upgrade_database
from mergefront.service.models import ApiToken, TokenScope
from mergefront.service.tokens import create_token


def _tokens(factory) -> int:  # type: ignore[no-untyped-def]
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(ApiToken)) or 0)


def _terminate(url: str, pid: int) -> None:
    from tests.conftest import _pg_conninfo

    with psycopg.connect(_pg_conninfo(url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.fixture
def pg_sessions(pg_url: str):  # type: ignore[no-untyped-def]
    upgrade_database(pg_url)
    engine = make_engine(pg_url)
    yield make_session_factory(engine)
    engine.dispose()


def test_a_unit_of_work_whose_connection_is_killed_runs_again_and_is_stored_once(pg_url: str, pg_sessions) -> None:
    tries: list[int] = []

    def work(session: Session) -> str:
        tries.append(1)
        created = create_token(session=session, name=f"try-{len(tries)}", scope=TokenScope.read)
        if len(tries) < 3:  # the server drops this connection before the commit, twice
            _terminate(pg_url, session.execute(text("SELECT pg_backend_pid()")).scalar_one())
            session.execute(text("SELECT 1"))
        return created.info.name

    assert transaction(pg_sessions, work, retry_seconds=30, doing="storing a token") == "try-3"
    assert len(tries) == 3 and _tokens(pg_sessions) == 1


def test_a_connection_that_stays_dead_fails_after_the_retry_window_saying_what_and_why(pg_url: str,
                                                                                      pg_sessions) -> None:
    tries: list[float] = []

    def work(session: Session) -> None:
        tries.append(time.monotonic())
        create_token(session=session, name="never", scope=TokenScope.read)
        _terminate(pg_url, session.execute(text("SELECT pg_backend_pid()")).scalar_one())
        session.execute(text("SELECT 1"))

    started = time.monotonic()
    with pytest.raises(StorageError) as failed:
        transaction(pg_sessions, work, retry_seconds=1.5, doing="recording evaluation 7")
    elapsed = time.monotonic() - started
    message = str(failed.value)
    assert failed.value.transient and len(tries) >= 3 and 1.5 <= elapsed < 10, (len(tries), elapsed)
    assert message.startswith("the database stayed unavailable during recording evaluation 7: tried")
    assert message.endswith("last error: AdminShutdown: terminating connection due to administrator command")
    assert "INSERT" not in message and "never" not in message
    # the waits between tries grow (exponential backoff with jitter, from 0.1 s)
    waits = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    assert waits[0] < 0.5 and max(waits) > waits[0], waits
    assert _tokens(pg_sessions) == 0


def test_an_error_in_the_work_itself_is_not_retried(pg_sessions) -> None:
    tries: list[int] = []

    def work(session: Session) -> None:
        tries.append(1)
        create_token(session=session, name="twice", scope=TokenScope.read)
        session.flush()
        session.execute(text("INSERT INTO api_tokens (name, scope, digest, prefix, created_at) "
                             "SELECT name, scope, digest, prefix, created_at FROM api_tokens"))  # same digest

    with pytest.raises(StorageError) as failed:
        transaction(pg_sessions, work, retry_seconds=30, doing="storing a token")
    assert len(tries) == 1 and not failed.value.transient
    assert isinstance(failed.value.__cause__, IntegrityError)
    assert "INSERT" not in str(failed.value) and "storing a token" in str(failed.value)
    assert _tokens(pg_sessions) == 0


def test_a_sqlite_file_locked_by_another_writer_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    # the engine the service makes waits up to 30 s on a lock by itself; this one gives up after 50 ms, so the
    # "database is locked" errors reach the retry loop
    engine = create_engine(url, connect_args={"timeout": 0.05})
    event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA journal_mode=WAL"))
    sessions = make_session_factory(engine)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction
    release = threading.Timer(1.0, holder.execute, args=("COMMIT",))
    release.start()
    tries: list[int] = []

    def work(session: Session) -> None:
        tries.append(1)
        create_token(session=session, name="after-the-lock", scope=TokenScope.read)

    try:
        transaction(sessions, work, retry_seconds=10, doing="storing a token")
    finally:
        release.join()
        holder.close()
    assert len(tries) >= 2 and _tokens(sessions) == 1
    engine.dispose()
