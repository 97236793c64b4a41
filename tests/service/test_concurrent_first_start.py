"""Processes that start together on a fresh database take turns migrating it, and all of them come up.

Real processes, started at the same moment: `mergefront serve` on a fresh PostgreSQL database (advisory lock) and
`mergefront migrate` (the start of `mergefront run`) on a fresh SQLite file (a lock file beside it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from mergefront.local_server import free_port, wait_until_serving
from mergefront.service.db import alembic_config, make_engine, make_session_factory, session_scope
from mergefront.service.models import TokenScope
from mergefront.service.tokens import create_token

CLI = [sys.executable, "-m", "mergefront.cli"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MERGEFRONT_", "RAY_"))}
    return {**env, "MERGEFRONT_HOME": str(home), "MERGEFRONT_POLL_SECONDS": "0.5"}


def _schema_at_head(url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
    finally:
        engine.dispose()


def test_two_servers_started_at_once_on_a_fresh_postgresql_database_both_come_up(pg_url: str,
                                                                                 tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    servers = [subprocess.Popen([*CLI, "serve", "--db", pg_url, "--port", str(port)], env=_env(tmp_path / f"h{i}"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i, port in enumerate(ports)]
    try:
        deadline = time.monotonic() + 120
        for port, server in zip(ports, servers, strict=True):
            wait_until_serving(f"http://127.0.0.1:{port}", timeout=max(deadline - time.monotonic(), 1), process=server)
        _schema_at_head(pg_url)
        engine = make_engine(pg_url)
        try:
            with session_scope(make_session_factory(engine)) as s:
                token = create_token(session=s, name="first-start", scope=TokenScope.admin).token
        finally:
            engine.dispose()
        for port in ports:  # each one reads and writes the database it migrated (or found migrated)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              headers={"Authorization": f"Bearer {token}"}) as http:
                assert http.get("/v1/jobs").status_code == 200
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def test_runs_started_at_once_on_a_fresh_sqlite_file_all_migrate_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'mergefront.db'}"
    starts = [subprocess.Popen([*CLI, "migrate", "--db", url], env=_env(tmp_path / f"h{i}"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(3)]
    outputs = [p.communicate(timeout=300)[0] for p in starts]
    assert [p.returncode for p in starts] == [0, 0, 0], outputs
    assert all("database schema up to date" in out for out in outputs), outputs
    _schema_at_head(url)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_second_migration_finds_the_schema_current(database_url: str) -> None:
    from mergefront.service.db import upgrade_database

    upgrade_database(database_url)
    upgrade_database(database_url)
    _schema_at_head(database_url)
