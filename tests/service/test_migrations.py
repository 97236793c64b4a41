from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from mergefront.service.db import alembic_config, make_engine
from mergefront.service.models import Base


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test database (connections are made lazily, so migrations may run before first use)."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def test_upgrade_matches_models_and_downgrade_removes_everything(database_url: str, engine: Engine) -> None:
    cfg = alembic_config(database_url)
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        assert {"jobs", "evaluations", "pareto_snapshots", "pareto_members"} <= set(inspect(conn).get_table_names())
    command.downgrade(cfg, "base")
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    command.upgrade(cfg, "head")  # and back up again


def test_ask_tell_columns_come_and_go_keeping_stored_rows(database_url: str, engine: Engine) -> None:
    cfg = alembic_config(database_url)
    command.upgrade(cfg, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, name, spec, state, optimizer, budget, objectives, maximize, "
                          "reference_point, created_at) VALUES (1, 'j', '{}', 'pending', 'nsga2', 4, '[]', '[]', "
                          "'[]', '2026-01-01')"))
        conn.execute(text("INSERT INTO evaluations (job_id, number, state, x, params, attempts, created_at) "
                          "VALUES (1, 0, 'pending', '[]', '{}', 0, '2026-01-01')"))
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT external FROM jobs")).scalar_one() in (False, 0)
        assert conn.execute(text("SELECT count(*), max(expires_at) FROM evaluations")).one() == (1, None)
    command.downgrade(cfg, "0001")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM evaluations")).scalar_one() == 1
        assert "external" not in {c["name"] for c in inspect(conn).get_columns("jobs")}


def test_job_notes_come_and_go_and_a_cancelled_job_reads_failed_below_0007(database_url: str, engine: Engine) -> None:
    from alembic.script import ScriptDirectory

    cfg = alembic_config(database_url)
    command.upgrade(cfg, "head")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, name, spec, state, optimizer, budget, objectives, maximize, "
                          "reference_point, created_at, notes) VALUES (1, 'j', '{}', 'cancelled', 'nsga2', 4, '[]', "
                          "'[]', '[]', '2026-01-01', 'mine')"))
    below = ScriptDirectory.from_config(cfg).get_revision("0007").down_revision
    command.downgrade(cfg, str(below))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT state, error FROM jobs")).one() == ("failed", "cancelled")
        assert "notes" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
