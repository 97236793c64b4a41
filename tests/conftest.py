"""Shared fixtures: real databases (SQLite and PostgreSQL), the digits suite, settings in a temp home."""

from __future__ import annotations

import copy
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from mergefront.local_server import free_port
from mergefront.service.db import make_engine, make_session_factory, upgrade_database
from mergefront.service.settings import Settings

PG_ADMIN_URL = os.environ.get("MERGEFRONT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

SPEC = {
    "name": "test-digits",
    "models": {"base": "bench://digits/base",
               "experts": ["bench://digits/rotated", "bench://digits/inverted", "bench://digits/parity"]},
    "merge": {"method": "ties", "weight": {"low": 0.0, "high": 1.0}, "density": {"low": 0.2, "high": 1.0}},
    "objectives": [{"task": "rotated"}, {"task": "inverted"}, {"task": "parity"}],
    "optimizer": {"name": "nsga2", "budget": 12, "batch_size": 4, "seed": 3, "population_size": 8},
    "resources": {"workers": 2, "device": "cpu"},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="run the long differential test against mergekit: thousands of generated cases, largest "
                          "differences written to benchmarks/results/mergekit_differential.json")
    parser.addoption("--long-range", default=None, metavar="FIRST:STOP",
                     help="with --long, run only the long draw's cases FIRST to STOP - 1 (a long run in slices; "
                          "every slice's cases are recorded and counted in the result)")


def _pg_conninfo(url: str) -> str:
    parsed = make_url(url)
    return (f"host={parsed.host} port={parsed.port or 5432} user={parsed.username} "
            f"dbname={parsed.database}" + (f" password={parsed.password}" if parsed.password else ""))


@pytest.fixture
def spec_data() -> dict:
    """A small valid job spec (a fresh copy per test)."""
    return copy.deepcopy(SPEC)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards. In CI an unreachable server fails, never skips."""
    name = f"mergefront_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(_pg_conninfo(PG_ADMIN_URL), autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mergefront.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One built digits suite for the whole test session."""
    from mergefront.evaluators.suites import ensure_suite

    root = tmp_path_factory.mktemp("cache")
    ensure_suite("digits", root, verbose=False)
    return root


@pytest.fixture(scope="session")
def own_models(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """"Your own models": tinylm's base and its copy and reverse experts as plain local Hugging Face folders, and
    each task's held-out examples as a JSONL file (prompt, answer), as `mergefront.evaluators.suites.tinylm_export`
    writes."""
    from mergefront.evaluators.suites.tinylm_export import export_models

    return export_models(tmp_path_factory.mktemp("own-models"), ["copy", "reverse"], cache_dir, n_examples=64)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, cache_dir: Path) -> Settings:
    # "testserver": the Host header of Starlette's TestClient
    return Settings(home=tmp_path / "home", database_url=database_url, cache_dir=cache_dir, lease_seconds=30,
                    poll_seconds=0.2, allowed_hosts=["testserver", "127.0.0.1", "localhost"])


@pytest.fixture
def make_token(settings: Settings) -> Callable[[str], str]:
    """`make_token(scope)`: a token of that scope in the test database, made as `mergefront token create` does."""
    from mergefront.service.db import session_scope
    from mergefront.service.models import TokenScope
    from mergefront.service.tokens import create_token

    def make(scope: str = "admin") -> str:
        upgrade_database(settings.resolved_database_url)
        engine = make_engine(settings.resolved_database_url)
        try:
            with session_scope(make_session_factory(engine)) as s:
                return create_token(session=s, name=f"tests-{scope}", scope=TokenScope(scope)).token
        finally:
            engine.dispose()

    return make


@pytest.fixture
def admin_token(make_token: Callable[[str], str]) -> str:
    return make_token("admin")


@pytest.fixture
def api(settings: Settings, admin_token: str):  # type: ignore[no-untyped-def]
    """`api(**create_app_kwargs)`: a TestClient of the app (with `settings`) that sends an admin token."""
    from fastapi.testclient import TestClient

    from mergefront.service.app import create_app

    def make(app_settings: Settings | None = None, **kwargs):  # type: ignore[no-untyped-def]
        return TestClient(create_app(app_settings or settings, **kwargs),
                          headers={"Authorization": f"Bearer {admin_token}"})

    return make


@pytest.fixture
def sessions(settings: Settings):  # type: ignore[no-untyped-def]
    upgrade_database(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def _ray_shutdown() -> Iterator[None]:
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def wait_for_job() -> Callable[..., dict]:
    """`wait(client, job_id, timeout)`: poll the REST API until the job completes or fails; its last JSON."""

    def wait(client, job_id: int, timeout: float = 600) -> dict:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict = client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in ("completed", "failed"):
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s")

    return wait


@pytest.fixture
def stored_evaluations() -> Callable[..., list[tuple]]:
    """`rows(sessions, job_id)`: (number, state, x, metrics) of each stored evaluation, in order."""
    from mergefront.service import repository as repo
    from mergefront.service.db import session_scope

    def rows(sessions, job_id: int) -> list[tuple]:  # type: ignore[no-untyped-def]
        with session_scope(sessions) as s:
            _, found = repo.list_evaluations(session=s, job_id=job_id)
            return [(r.number, r.state, tuple(r.x), r.metrics) for r in found]

    return rows


@contextmanager
def live_server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Serve `app` with uvicorn on a free local port in a thread; yield its URL; stop it afterwards."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def serve() -> Callable[..., Any]:
    """`with serve(app) as url:` the app on a real HTTP server (uvicorn in a thread) for the block."""
    return live_server
