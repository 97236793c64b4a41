"""The server's database connections are killed while clients submit jobs: every `201` is stored, and every other
answer is a `503` with `Retry-After` that names no SQL.

A real server (uvicorn) on PostgreSQL; a thread terminates every backend of the server's database
(`pg_terminate_backend`) every 100 ms while several clients submit jobs.
"""

from __future__ import annotations

import copy
import threading
import time

import httpx
import psycopg
import pytest

from mergefront.service.app import create_app
from mergefront.service.settings import Settings
from tests.conftest import _pg_conninfo
from tests.service.test_commit_before_answer import EXTERNAL

KILL_EVERY = 0.1
CLIENTS, JOBS_PER_CLIENT = 4, 40
SQL_WORDS = ("INSERT", "SELECT", "UPDATE", "[SQL", "parameters", "psycopg", "sqlalche")


def _kill_backends(url: str, stop: threading.Event, kills: list[int], every: float = KILL_EVERY) -> None:
    """Terminate every other connection to the database at `url`, every `every` seconds until `stop`."""
    with psycopg.connect(_pg_conninfo(url), autocommit=True) as admin:
        while not stop.wait(every):
            killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
            kills.append(int(killed[0]) if killed else 0)


def _submit(url: str, token: str, client: int, answers: list[tuple[str, httpx.Response]]) -> None:
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
        for i in range(JOBS_PER_CLIENT):
            name = f"killed-{client}-{i}"
            answers.append((name, http.post("/v1/jobs", json={**copy.deepcopy(EXTERNAL), "name": name})))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_every_acknowledged_job_is_stored_while_the_servers_connections_are_killed(settings: Settings, serve,
                                                                                 admin_token: str) -> None:
    url = settings.resolved_database_url
    answers: list[tuple[str, httpx.Response]] = []
    kills: list[int] = []
    stop = threading.Event()
    with serve(create_app(settings, run_jobs=False)) as server:
        killer = threading.Thread(target=_kill_backends, args=(url, stop, kills))
        killer.start()
        try:
            time.sleep(0.1)
            clients = [threading.Thread(target=_submit, args=(server, admin_token, c, answers))
                       for c in range(CLIENTS)]
            for t in clients:
                t.start()
            for t in clients:
                t.join(timeout=300)
        finally:
            stop.set()
            killer.join(timeout=30)
        with httpx.Client(base_url=server, timeout=60, headers={"Authorization": f"Bearer {admin_token}"}) as http:
            acknowledged = {name: r.json()["id"] for name, r in answers if r.status_code == 201}
            for name, job_id in acknowledged.items():  # read back, after the faults: every 201 is there
                got = http.get(f"/v1/jobs/{job_id}")
                assert got.status_code == 200 and got.json()["name"] == name, (name, got.status_code, got.text)
            stored = http.get("/v1/jobs", params={"limit": 1000}).json()["items"]
    refused = [r for _, r in answers if r.status_code != 201]
    for r in refused:
        assert r.status_code == 503 and r.headers.get("retry-after") == "1", (r.status_code, r.text)
        assert not any(word.lower() in r.text.lower() for word in SQL_WORDS), r.text
    names = [j["name"] for j in stored]
    assert len(names) == len(set(names)), "a job was stored twice"
    assert set(acknowledged) <= set(names)
    assert len(answers) == CLIENTS * JOBS_PER_CLIENT
    # the fault was real: connections were killed, and some requests met it
    assert sum(kills) > 10 and refused, (sum(kills), len(refused))
    print(f"{len(answers)} submissions: {len(acknowledged)} acknowledged (all stored), {len(refused)} answered 503; "
          f"{sum(kills)} connections killed in {len(kills)} rounds")
