"""Faults while a job runs, on real processes: a runner paused past its lease (SIGSTOP), a server killed with
`kill -9` and replaced, a Ray worker killed mid-evaluation. Each job ends with its exact budget: every candidate
number once, none left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from mergefront.local_server import free_port, wait_until_serving
from mergefront.schemas import EvaluationOut
from mergefront.service import repository as repo
from mergefront.service.db import make_engine, session_scope
from mergefront.service.models import Job, utcnow
from mergefront.service.runner import JobRunner, Progress
from mergefront.service.settings import Settings
from mergefront.spec import parse_spec

pytestmark = pytest.mark.slow

LEASE = 3.0  # seconds: short, so that a paused or killed runner's job passes on quickly
IDLE = 2  # seconds PostgreSQL lets a paused runner's transaction hold the job's rows (MERGEFRONT_DB_IDLE_SECONDS)


def _job(sessions: Any, job_id: int) -> Job:
    with session_scope(sessions) as s:
        return repo.get_job(session=s, job_id=job_id)


def _n_completed(sessions: Any, job_id: int) -> int:
    with session_scope(sessions) as s:
        return repo.evaluation_counts(session=s, job_id=job_id).get("completed", 0)


def _stored_job(sessions: Any, spec_data: dict, budget: int, batch_size: int, workers: int | None = None) -> int:
    """A pending job of the test spec with this budget and batch size (and workers), as `mergefront run` stores it."""
    spec_data["optimizer"].update(budget=budget, batch_size=batch_size)
    if workers is not None:
        spec_data["resources"]["workers"] = workers
    with session_scope(sessions) as s:
        return repo.create_job(session=s, spec=parse_spec(spec_data)).id


def _ray_processes(pid: int) -> list[psutil.Process]:
    """The processes `pid` started, among them its local Ray's (raylet, agents, workers)."""
    processes = psutil.Process(pid).children(recursive=True)
    assert any("raylet" in " ".join(p.cmdline()) for p in processes)
    return processes


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def _env(settings: Settings, home: Path) -> dict[str, str]:
    """A child process's environment: the test's database and suite cache, a short lease, its own home."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MERGEFRONT_"))},
            "MERGEFRONT_DATABASE_URL": settings.resolved_database_url, "MERGEFRONT_HOME": str(home),
            "MERGEFRONT_CACHE_DIR": str(settings.resolved_cache_dir), "MERGEFRONT_LEASE_SECONDS": str(LEASE),
            "MERGEFRONT_POLL_SECONDS": "0.2", "MERGEFRONT_DB_IDLE_SECONDS": str(IDLE)}


@contextmanager
def _process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`python -m mergefront.cli ARGS` in its own process group; whatever is left of it is killed afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "mergefront.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)  # the group we made for it: the process and what it started
            except ProcessLookupError:
                pass
        proc.communicate(timeout=60)


def _assert_exact_budget(sessions: Any, job_id: int, budget: int, stored_evaluations: Callable[..., list]) -> None:
    rows = stored_evaluations(sessions, job_id)
    assert [number for number, *_ in rows] == list(range(budget))  # each candidate number once, none past it
    assert {state for _, state, _, _ in rows} == {"completed"}  # none left running or pending
    job = _job(sessions, job_id)
    assert job.state == "completed" and job.lease_owner is None, job.error
    with session_scope(sessions) as s:
        assert repo.latest_snapshot(session=s, job_id=job_id).n_completed == budget  # type: ignore[union-attr]


def _pause(proc: subprocess.Popen[str], url: str, job_id: int, *, holding_a_lock: bool) -> None:
    """SIGSTOP `proc` at a moment it holds a lock on the job's rows (inside a write transaction), or holds none
    (between its transactions, as a slow moment mostly finds it). On PostgreSQL the server ends a transaction left
    idle for MERGEFRONT_DB_IDLE_SECONDS, freeing its rows; a process paused inside a write transaction on SQLite
    blocks every writer of the file until it runs again, so that is not tried there."""
    for _ in range(600):
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.02)  # a statement already sent finishes on the server
        if _can_write(url, job_id) != holding_a_lock:
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.01 if holding_a_lock else 0.05)
    raise AssertionError(f"the runner {'never' if holding_a_lock else 'always'} held a lock in 600 pauses")


def _can_write(url: str, job_id: int) -> bool:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA busy_timeout = 200")
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the file's write lock
            else:
                conn.exec_driver_sql("SET lock_timeout = '200ms'")
                conn.execute(text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": job_id})
                conn.execute(text("SELECT 1 FROM evaluations WHERE job_id = :id FOR UPDATE"), {"id": job_id})
            conn.rollback()
        return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


@pytest.mark.parametrize(("database_url", "mid_transaction"),
                         [("sqlite", False), ("postgresql", False), ("postgresql", True)], indirect=["database_url"],
                         ids=["sqlite", "postgresql", "postgresql-paused-mid-transaction"])
def test_a_runner_paused_past_its_lease_gives_the_job_up_quietly_to_the_one_that_finishes_it(
        settings: Settings, sessions: Any, spec_data: dict, stored_evaluations: Callable[..., list],
        tmp_path: Path, mid_transaction: bool) -> None:
    # enough evaluations that the first runner cannot finish the job while it is being paused (16 could: CI saw the
    # job completed, its lease cleared, before a pause landed between two transactions)
    job_id = _stored_job(sessions, spec_data, budget=48, batch_size=2, workers=1)
    with _process(["run", "--resume", str(job_id)], _env(settings, tmp_path / "a")) as paused:
        _wait(lambda: _n_completed(sessions, job_id) >= 2, 300, "the first runner's first results")
        _pause(paused, settings.resolved_database_url, job_id, holding_a_lock=mid_transaction)
        # its lease runs out while it sleeps; a second runner takes the job over
        assert _job(sessions, job_id).state == "running", "the first runner finished before it could be paused"
        _wait(lambda: _job(sessions, job_id).lease_expires_at < utcnow(), 30, "the paused runner's lease to expire")
        second = JobRunner(session_factory=sessions, settings=settings.model_copy(update={"lease_seconds": LEASE}))
        ended: list[str] = []
        thread = threading.Thread(target=lambda: ended.append(second.run(job_id)))
        thread.start()
        _wait(lambda: _job(sessions, job_id).lease_owner == second.owner, 60, "the second runner's lease")
        paused.send_signal(signal.SIGCONT)  # it wakes up while the second runner works on the job
        out, _ = paused.communicate(timeout=120)
        thread.join(timeout=300)
    assert ended == ["completed"]
    assert paused.returncode == 2 and "continues on another runner" in out, out
    _assert_exact_budget(sessions, job_id, 48, stored_evaluations)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_server_killed_mid_job_leaves_the_job_to_the_next_server_which_finishes_it(
        settings: Settings, sessions: Any, spec_data: dict, stored_evaluations: Callable[..., list],
        tmp_path: Path) -> None:
    spec_data["optimizer"].update(budget=16, batch_size=2)
    spec_data["resources"]["workers"] = 1
    env = _env(settings, tmp_path / "server")
    port = free_port()
    with _process(["serve", "--port", str(port), "--no-auth"], env) as first:
        wait_until_serving(f"http://127.0.0.1:{port}", process=first)
        job_id = httpx.post(f"http://127.0.0.1:{port}/v1/jobs", json=spec_data, timeout=30).json()["id"]
        _wait(lambda: _n_completed(sessions, job_id) >= 2, 300, "the first server's first results")
        first.kill()  # kill -9, mid-job: its lease stays behind, its evaluations in flight stay `running`
        first.wait(timeout=30)
    assert _job(sessions, job_id).state == "running"
    with _process(["serve", "--port", str(port), "--no-auth"], env) as second:
        wait_until_serving(f"http://127.0.0.1:{port}", process=second)
        _wait(lambda: _job(sessions, job_id).state != "running", 300, "the second server to finish the job")
        ray_processes = _ray_processes(second.pid)
        second.terminate()  # SIGTERM: the server stops, and every process it started with it
        out, _ = second.communicate(timeout=120)
        _, alive = psutil.wait_procs(ray_processes, timeout=15)
        assert alive == [], [" ".join(p.cmdline())[:120] for p in alive]
        assert "Finished server process" in out, out
    _assert_exact_budget(sessions, job_id, 16, stored_evaluations)


def test_a_worker_killed_mid_evaluation_is_replaced_and_its_evaluation_retried(
        settings: Settings, sessions: Any, spec_data: dict, stored_evaluations: Callable[..., list]) -> None:
    job_id = _stored_job(sessions, spec_data, budget=8, batch_size=4)
    killed: list[int] = []

    def kill_a_busy_worker(p: Progress) -> None:
        if killed or p.n_finished < 1:
            return
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            for proc in psutil.Process().children(recursive=True):
                try:
                    if "_Evaluator.evaluate" in " ".join(proc.cmdline()):  # Ray's title for a busy worker
                        proc.kill()  # kill -9
                        killed.append(proc.pid)
                        break
                except psutil.Error:
                    continue
            time.sleep(0.01)

    assert JobRunner(session_factory=sessions, settings=settings).run(job_id, progress=kill_a_busy_worker) == \
        "completed"
    assert killed
    _assert_exact_budget(sessions, job_id, 8, stored_evaluations)
    with session_scope(sessions) as s:
        _, rows = repo.list_evaluations(session=s, job_id=job_id)
        retried = [r for r in rows if r.errors]
    assert len(retried) == 1 and retried[0].attempts == 2
    assert "Actor" in retried[0].errors[0]["error"] and retried[0].error is None  # its error kept after the retry
    shown = EvaluationOut.model_validate(retried[0]).errors  # as the API shows it
    assert [(e.attempt, e.at.tzinfo is not None) for e in shown] == [(1, True)] and "Actor" in (shown[0].error or "")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # Ray's fault, not the database's
def test_a_killed_raylet_releases_the_job_and_a_fresh_ray_finishes_it(
        settings: Settings, sessions: Any, spec_data: dict, stored_evaluations: Callable[..., list]) -> None:
    job_id = _stored_job(sessions, spec_data, budget=8, batch_size=4)
    killed: list[int] = []

    def kill_the_raylet(p: Progress) -> None:
        if killed or p.n_finished < 1:
            return
        for proc in psutil.Process().children(recursive=True):
            if "raylet/raylet" in " ".join(proc.cmdline()):
                proc.kill()  # kill -9 of this process's Ray node manager
                killed.append(proc.pid)

    runner = JobRunner(session_factory=sessions, settings=settings)
    assert runner.run(job_id, progress=kill_the_raylet) == "pending"  # released, not left running
    job = _job(sessions, job_id)
    assert killed and job.state == "pending" and job.lease_owner is None
    assert "raylet" in (job.error or "")
    assert runner.run(job_id) == "completed"  # on a fresh local Ray
    _assert_exact_budget(sessions, job_id, 8, stored_evaluations)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the command's shutdown, not the database's
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_run_stopped_gives_its_job_back_at_once_and_leaves_no_process_behind(
        settings: Settings, sessions: Any, spec_data: dict, tmp_path: Path, sig: signal.Signals) -> None:
    job_id = _stored_job(sessions, spec_data, budget=48, batch_size=2, workers=1)
    with _process(["run", "--resume", str(job_id)], _env(settings, tmp_path / "a")) as run:
        _wait(lambda: _n_completed(sessions, job_id) >= 2, 300, "the run's first results")
        ray_processes = _ray_processes(run.pid)
        run.send_signal(sig)
        out, _ = run.communicate(timeout=120)
        _, alive = psutil.wait_procs(ray_processes, timeout=15)
    assert alive == [], [" ".join(p.cmdline())[:120] for p in alive]  # Ray's agents and workers too
    assert run.returncode == 130 and "interrupted; a stored job resumes with" in out, out[-2000:]
    job = _job(sessions, job_id)
    assert job.state == "running" and job.lease_owner is None  # given back: the next runner needs no lease to run out
