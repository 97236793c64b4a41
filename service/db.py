"""Engine, sessions, retried transactions and schema migration.

Every database error leaves this module as a `StorageError` whose message names the kind of failure in words
(the SQL and its bound parameters go to the server's log only). `transaction` runs a unit of work again when the
error was transient (a dropped connection, a serialization failure, a busy SQLite file): callers see only errors
that persist. `upgrade_database` lets one process at a time migrate a database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from mergefront.errors import StorageError
from mergefront.interrupts import held
from mergefront.service.settings import DB_IDLE_SECONDS

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
T = TypeVar("T")

#: SQLSTATEs worth a second try: connection exceptions (class 08), serialization failure, deadlock, the server
#: shutting down or refusing connections, too many connections
_TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "57P01", "57P02", "57P03", "53300")
#: one number for PostgreSQL's advisory lock that serialises migrations ("mergefro" in ASCII)
_MIGRATION_LOCK = 0x6D65726765667266 & 0x7FFFFFFFFFFFFFFF


def make_engine(url: str, *, idle_seconds: float = DB_IDLE_SECONDS) -> Engine:
    """An engine for `url`; for SQLite, the file's folder is created and the file shared across threads.

    On PostgreSQL every connection has `idle_in_transaction_session_timeout` set to `idle_seconds`: a transaction
    whose client sends nothing for that long (a runner paused with SIGSTOP, a server whose network dropped) is
    ended by the server, its locks freed, so it cannot hold a job's rows from the runner that takes the job over.
    Its client's next statement then fails as a dropped connection (transient: `transaction` runs the work again).
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"options": f"-c idle_in_transaction_session_timeout={round(idle_seconds * 1000)}"}
    return create_engine(url, **kwargs)


def allow_idle(session: Session) -> None:
    """Exempt this transaction from PostgreSQL's idle limit (`make_engine`): for work between its statements that
    takes as long as it takes by design, an ask's optimizer step (it holds the job's lock, so that concurrent asks
    number their candidates in turn; a GP's step can take minutes on a long history)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def is_transient(exc: SQLAlchemyError) -> bool:
    """Whether the same work may succeed when tried again (the database, not the work, was the problem)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated or isinstance(exc, PoolTimeoutError):
        return True
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        return str(sqlstate).startswith(_TRANSIENT_SQLSTATES)
    if isinstance(exc, OperationalError | InterfaceError):
        if type(orig).__module__ == "sqlite3":
            return any(word in str(orig).lower() for word in ("locked", "busy"))
        return True  # errors of the connection itself (closed, reset) carry no SQLSTATE
    return False


def storage_error(exc: SQLAlchemyError, doing: str = "the request") -> StorageError:
    """A StorageError for `exc` that says what happened in words; the SQL and its parameters are logged only."""
    transient = is_transient(exc)
    kind = type(getattr(exc, "orig", None) or exc).__name__
    log.warning("database error during %s: %s", doing, exc)
    if transient:
        return StorageError(f"the database was unavailable during {doing} ({kind}); it was rolled back and may be "
                            "tried again", transient=True)
    return StorageError(f"the database refused {doing} ({kind}); it was rolled back")


@contextmanager
def session_scope(factory: sessionmaker[Session], doing: str = "the request") -> Iterator[Session]:
    """A session that commits on success, rolls back on error, and reports database errors as StorageError (whose
    message says it happened during `doing`). A Ctrl-C meanwhile is raised after it (`mergefront.interrupts`)."""
    with held():  # Ctrl-C waits for the transaction's end (mergefront.interrupts)
        session = factory()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            _rollback(session)
            raise storage_error(exc, doing) from exc
        except BaseException:
            _rollback(session)
            raise
        finally:
            session.close()


def _rollback(session: Session) -> None:
    try:
        session.rollback()
    except SQLAlchemyError:  # the connection is gone: there is nothing left to roll back
        log.debug("rollback failed", exc_info=True)


def transaction(factory: sessionmaker[Session], work: Callable[[Session], T], *, retry_seconds: float = 60.0,
                doing: str = "a transaction") -> T:
    """`work(session)` in one transaction; on a transient database error it is rolled back and run again.

    This is the one place where database errors are retried. Waits double from 0.1 s up to 5 s (plus up to
    0.1 s of jitter) for at most `retry_seconds`; then the error is raised as a StorageError that says what was
    being done (`doing`), for how long and how often it was tried, and the last error. Any other error is raised
    at once (StorageError for database errors). `work` may run more than once: it must read what it needs in its
    own session.
    """
    from tenacity import RetryError, Retrying, retry_if_exception, stop_after_delay, wait_exponential, wait_random

    def once() -> T:
        with session_scope(factory, doing) as session:
            return work(session)

    retrying = Retrying(retry=retry_if_exception(lambda e: isinstance(e, StorageError) and e.transient),
                        wait=wait_exponential(multiplier=0.1, max=5.0) + wait_random(0, 0.1),
                        stop=stop_after_delay(retry_seconds),
                        before_sleep=_log_retry)
    started = time.monotonic()
    try:
        return retrying(once)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        cause = last.__cause__ if last is not None and last.__cause__ is not None else last
        raise StorageError(f"the database stayed unavailable during {doing}: tried "
                           f"{exc.last_attempt.attempt_number} times over {time.monotonic() - started:.0f} s; "
                           f"last error: {_describe_error(cause)}", transient=True) from last


def _describe_error(exc: BaseException | None) -> str:
    """`Kind: first line of the driver's message` (never the SQL or its parameters, which SQLAlchemy appends)."""
    if exc is None:
        return "unknown"
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0][:200]
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__


def _log_retry(state: Any) -> None:
    log.warning("retrying a transaction (attempt %s): %s", state.attempt_number, state.outcome.exception())


def alembic_config(url: str, connection: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade_database(url: str) -> None:
    """Bring the schema at `url` to the newest migration (the only way tables are made).

    Processes starting together on a fresh database take turns: PostgreSQL through an advisory lock, SQLite
    through a lock file beside the database; whoever comes second finds the schema current.
    """
    from alembic import command

    try:
        with _migration_lock(url) as connection:
            command.upgrade(alembic_config(url, connection), "head")
    except SQLAlchemyError as exc:
        where = make_url(url).render_as_string(hide_password=True)
        raise StorageError(f"could not migrate {where}: {exc}", transient=is_transient(exc)) from exc


@contextmanager
def _migration_lock(url: str) -> Iterator[Connection]:
    """A connection on which this process alone may migrate the database."""
    parsed = make_url(url)
    engine = make_engine(url)
    try:
        if parsed.get_backend_name() == "postgresql":
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
                connection.commit()
                try:
                    yield connection
                finally:
                    connection.rollback()
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
                    connection.commit()
        elif parsed.database and parsed.database != ":memory:":
            from filelock import FileLock

            with FileLock(f"{Path(parsed.database).expanduser()}.migrate.lock"), engine.connect() as connection:
                yield connection
        else:
            with engine.connect() as connection:
                yield connection
    finally:
        engine.dispose()
