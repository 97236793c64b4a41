"""Ctrl-C (or SIGTERM) at any moment of a database transaction leaves the database free for what runs next.

Real signals, sent to this process at random moments while its main thread runs write transactions; after each
interrupt another connection must be able to write at once (SQLite's file lock, PostgreSQL's row lock). Without
`mergefront.interrupts` about 3 % of the interrupts left a connection holding its transaction on SQLite.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from mergefront.interrupts import held, interrupt
from mergefront.service.db import make_engine, make_session_factory, session_scope


@pytest.fixture
def handled() -> Iterator[None]:
    """`interrupt` handles SIGINT in this process, as `mergefront` installs it."""
    before = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _free(other: Engine) -> bool:
    """Whether another connection can write the row at once."""
    try:
        with other.begin() as c:
            if other.dialect.name == "postgresql":
                c.execute(text("SET LOCAL lock_timeout = '200ms'"))
            c.execute(text("UPDATE probe SET n = n + 1 WHERE id = 1"))
        return True
    except Exception:  # locked: SQLite's "database is locked", PostgreSQL's lock timeout
        return False


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_ctrl_c_at_any_moment_of_a_transaction_leaves_the_database_free(database_url: str, handled: None) -> None:
    engine = make_engine(database_url)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE probe (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        c.execute(text("INSERT INTO probe VALUES (1, 0)"))
    sessions = make_session_factory(engine)
    other = create_engine(database_url, connect_args={"timeout": 0.2} if engine.dialect.name == "sqlite" else {})
    rng = random.Random(20261129)
    blocked, interrupted = [], 0
    try:
        for attempt in range(300):
            timer = threading.Timer(rng.uniform(0, 0.004), os.kill, (os.getpid(), signal.SIGINT))
            try:
                timer.start()  # in the try: the signal may come before the next line
                for _ in range(100_000):
                    with session_scope(sessions) as s:
                        s.execute(text("UPDATE probe SET n = n + 1 WHERE id = 1"))
                        s.execute(text("SELECT n FROM probe")).all()
            except KeyboardInterrupt:
                interrupted += 1
                if not _free(other):  # as the runner does: it gives its job back while handling the interrupt
                    blocked.append(attempt)
            timer.join()
    finally:
        other.dispose()
        engine.dispose()
    assert interrupted == 300  # every signal arrived as KeyboardInterrupt, none lost
    assert blocked == [], f"{len(blocked)} of 300 interrupts left the database locked"


def test_a_signal_during_a_transaction_is_raised_when_it_ends_and_a_second_one_at_once(handled: None) -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with held():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the signal")  # the block goes on to its end
    assert steps == ["after the signal"]
    with pytest.raises(KeyboardInterrupt):
        with held():
            with held():
                os.kill(os.getpid(), signal.SIGINT)
            steps.append("the outer block too")  # held until the outermost block ends
    assert steps[-1] == "the outer block too"
    with pytest.raises(KeyboardInterrupt):
        with held():
            os.kill(os.getpid(), signal.SIGINT)
            try:
                os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C: the user does not wait any longer
            except KeyboardInterrupt:
                steps.append("the second one at once")
                raise
    assert steps[-1] == "the second one at once"
    with held():  # nothing left over from the last one
        pass
