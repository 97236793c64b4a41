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
        assert {"jobs", "evaluations", "pareto_snapshots", "pareto_changes"} <= set(inspect(conn).get_table_names())
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


def test_front_snapshots_become_changes_and_come_back(database_url: str, engine: Engine) -> None:
    """0009 turns each snapshot's whole copy of the front into the evaluations entering and leaving it."""
    from alembic.script import ScriptDirectory

    from mergefront.service import repository as repo
    from mergefront.service.db import make_session_factory, session_scope

    cfg = alembic_config(database_url)
    below = str(ScriptDirectory.from_config(cfg).get_revision("0009").down_revision)
    command.upgrade(cfg, below)
    fronts = {1: [1], 2: [1, 2], 3: [2, 3], 4: [2, 3, 4]}  # after n completed: 1 leaves at 3
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, name, spec, state, optimizer, budget, objectives, maximize, "
                          "reference_point, created_at) VALUES (1, 'j', '{}', 'completed', 'nsga2', 4, '[\"a\"]', "
                          "'[true]', '[0.0]', '2026-01-01')"))
        for e in range(1, 5):
            conn.execute(text("INSERT INTO evaluations (id, job_id, number, state, x, params, attempts, created_at) "
                              "VALUES (:e, 1, :n, 'completed', '[]', '{}', 1, '2026-01-01')"), {"e": e, "n": e - 1})
        for n, members in fronts.items():
            conn.execute(text("INSERT INTO pareto_snapshots (id, job_id, n_completed, hypervolume, created_at) "
                              "VALUES (:n, 1, :n, :hv, '2026-01-01')"), {"n": n, "hv": n / 10})
            for e in members:
                conn.execute(text("INSERT INTO pareto_members VALUES (:s, :e)"), {"s": n, "e": e})
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        changes = conn.execute(text("SELECT snapshot_id, evaluation_id, entered FROM pareto_changes "
                                    "ORDER BY snapshot_id, entered DESC, evaluation_id")).all()
        assert [(s, e, bool(d)) for s, e, d in changes] == [(1, 1, True), (2, 2, True), (3, 3, True), (3, 1, False),
                                                           (4, 4, True)]
        assert conn.execute(text("SELECT front_size FROM pareto_snapshots ORDER BY id")).scalars().all() == [1, 2, 2, 3]
        assert "pareto_members" not in inspect(conn).get_table_names()
    with session_scope(make_session_factory(engine)) as s:
        assert repo.front_member_ids(session=s, job_id=1) == {2, 3, 4}  # on_front: the latest front
        for n, members in fronts.items():
            assert [m.id for m in repo.front_members(session=s, job_id=1, n_completed=n)] == members
            out = repo.pareto_out(session=s, job=repo.get_job(session=s, job_id=1), n_completed=n)
            assert out.hypervolume == n / 10
    command.downgrade(cfg, below)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT snapshot_id, evaluation_id FROM pareto_members")).all()
        assert sorted(rows) == sorted((n, e) for n, members in fronts.items() for e in members)
