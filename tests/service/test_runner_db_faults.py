"""A job runs to its exact budget while its runner's database connections are killed again and again: transient
storage errors are retried (in `db.transaction`), they never fail the job."""

from __future__ import annotations

import threading

import pytest

from mergefront.service import repository as repo
from mergefront.service.db import session_scope
from mergefront.service.runner import JobRunner
from mergefront.spec import parse_spec
from tests.service.test_killed_connections import _kill_backends

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_job_spends_its_exact_budget_while_its_database_connections_are_killed(sessions, settings,
                                                                               spec_data: dict,
                                                                               stored_evaluations) -> None:
    spec_data["optimizer"].update(budget=8, batch_size=4)
    with session_scope(sessions) as s:
        job_id = repo.create_job(session=s, spec=parse_spec(spec_data)).id
    stop, kills = threading.Event(), []  # type: ignore[var-annotated]
    killer = threading.Thread(target=_kill_backends, args=(settings.resolved_database_url, stop, kills, 0.05))
    killer.start()
    try:
        state = JobRunner(session_factory=sessions, settings=settings).run(job_id)
    finally:
        stop.set()
        killer.join(timeout=30)
    with session_scope(sessions) as s:
        error = repo.get_job(session=s, job_id=job_id).error
    assert state == "completed", error
    rows = stored_evaluations(sessions, job_id)
    assert [number for number, *_ in rows] == list(range(8))
    assert {row_state for _, row_state, _, _ in rows} == {"completed"}
    assert sum(kills) >= 1, kills  # connections were killed while it ran (how many depends on the machine's pace)
