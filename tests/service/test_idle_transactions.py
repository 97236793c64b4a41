"""No connection waits idle in a transaction for ever (PostgreSQL): a transaction whose client goes quiet (paused,
cut off) is ended by the server after `db_idle_seconds`, its locks freed and its client's next statement a
transient error; routes whose slow part needs no database read first and end their transaction before it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from mergefront.service import repository as repo
from mergefront.service.db import is_transient, make_engine, make_session_factory, session_scope, transaction
from mergefront.service.export import ExportSource
from mergefront.service.settings import Settings
from mergefront.service.space import job_space
from mergefront.spec import parse_spec

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _job(sessions: Any, spec_data: dict) -> int:
    with session_scope(sessions) as s:
        return repo.create_job(session=s, spec=parse_spec(spec_data)).id


def test_a_quiet_transaction_is_ended_and_frees_the_rows_it_locked(settings: Settings, sessions: Any,
                                                                   spec_data: dict) -> None:
    job_id = _job(sessions, spec_data)
    quiet = make_engine(settings.resolved_database_url, idle_seconds=1)
    try:
        with quiet.connect() as paused:
            assert paused.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "1s"
            paused.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": job_id})
            # another runner's lease, as it would wait for a runner paused mid-transaction
            start = time.monotonic()
            with session_scope(sessions) as s:
                s.execute(text("SET LOCAL lock_timeout = '20s'"))
                assert repo.lease_job(session=s, owner="next", seconds=30, job_id=job_id) == job_id
            assert time.monotonic() - start < 10  # freed after ~1 s, not when the paused one wakes
            with pytest.raises(SQLAlchemyError) as woke:  # the paused one wakes: its session is gone
                paused.execute(text("SELECT 1"))
            assert is_transient(woke.value)
        # the work of a transaction ended this way runs again, and succeeds
        tries: list[int] = []

        def work(s: Any) -> int:
            tries.append(1)
            s.execute(text("SELECT 1"))
            if len(tries) == 1:
                time.sleep(1.5)  # quiet for longer than the server allows
            return len(tries)

        assert transaction(make_session_factory(quiet), work, retry_seconds=30) == 2
    finally:
        quiet.dispose()


def test_the_servers_connections_take_its_idle_setting(api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    with api(settings.model_copy(update={"db_idle_seconds": 7.5}), run_jobs=False) as client:
        with client.app.state.engine.connect() as conn:
            assert conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "7500ms"


def test_a_checkpoint_export_slower_than_the_idle_limit_is_stored_and_answered(
        api, settings: Settings, sessions: Any, spec_data: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = _job(sessions, spec_data)
    space = job_space(parse_spec(spec_data), settings)
    x = [0.5] * space.dim
    with session_scope(sessions) as s:
        row = repo.add_evaluations(session=s, job_id=job_id, points=[(x, space.decode(x))])[0]
        repo.start_evaluation(session=s, evaluation_id=row.id)
        repo.complete_evaluation(session=s, evaluation_id=row.id, metrics={k: 0.5 for k in ("rotated_accuracy",
                                 "inverted_accuracy", "parity_accuracy")}, worker="t", merge_seconds=0.0,
                                 eval_seconds=0.0)
    materialize = ExportSource.materialize

    def slow(self: ExportSource, out_dir: Path, progress: bool = False) -> Path:
        time.sleep(2.5)  # a large merge: longer than the server's transactions may sit idle
        return materialize(self, out_dir, progress)

    monkeypatch.setattr(ExportSource, "materialize", slow)
    with api(settings.model_copy(update={"db_idle_seconds": 1}), run_jobs=False) as client:
        response = client.post(f"/v1/evaluations/{row.id}/export/checkpoint", json={"out_dir": "slow"})
        assert response.status_code == 200, response.text
        assert response.json() == {"path": "slow", "files": ["model.safetensors"]}
        download = client.get(f"/v1/evaluations/{row.id}/export/checkpoint.zip")
        assert download.status_code == 200 and download.content[:2] == b"PK"


def test_an_ask_whose_optimizer_step_outlasts_the_idle_limit_is_answered(api, settings: Settings, spec_data: dict,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An ask holds its job's lock while the optimizer proposes (minutes for a GP on a long history): exempt."""
    import mergefront.service.asktell as asktell

    propose = asktell.ask_with_repeats

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(2.5)
        return propose(*args, **kwargs)

    monkeypatch.setattr(asktell, "ask_with_repeats", slow)
    spec = {**spec_data, "objectives": [{"name": "a", "evaluator": "external", "direction": "maximize"},
                                        {"name": "b", "evaluator": "external", "direction": "minimize"}]}
    with api(settings.model_copy(update={"db_idle_seconds": 1}), run_jobs=False) as client:
        job_id = client.post("/v1/jobs", json=spec).json()["id"]
        asked = client.post(f"/v1/jobs/{job_id}/ask", json={"n": 2})
        assert asked.status_code == 200, asked.text
        assert [c["number"] for c in asked.json()] == [0, 1]
        assert client.get(f"/v1/jobs/{job_id}/evaluations").json()["total"] == 2  # stored, not rolled back
