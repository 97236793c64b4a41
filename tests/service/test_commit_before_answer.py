"""What the API acknowledges is stored: writes commit before the response is sent, and a failed commit is a 503.

Read-your-writes over real HTTP, with many clients at once, on SQLite and PostgreSQL: every `201` job, every asked
candidate and every told result is visible to the very next request.
"""

from __future__ import annotations

import copy
import threading

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mergefront.service.app import create_app
from mergefront.service.settings import Settings

EXTERNAL = {
    "name": "read-your-writes",
    "models": {"base": "bench://digits/base", "experts": ["bench://digits/rotated", "bench://digits/inverted"]},
    "merge": {"method": "task_arithmetic", "weight": {"low": 0.0, "high": 1.0}},
    "objectives": [{"evaluator": "external", "name": "a", "direction": "maximize"},
                   {"evaluator": "external", "name": "b", "direction": "minimize"}],
    "optimizer": {"name": "random", "budget": 4, "batch_size": 2, "seed": 1},
}


def _submit_ask_tell(url: str, token: str, rounds: int, failures: list[str]) -> None:
    """Each write, then at once the read that must see it."""
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(rounds):
            job = http.post("/v1/jobs", json=copy.deepcopy(EXTERNAL))
            assert job.status_code == 201, job.text
            job_id = job.json()["id"]
            if (got := http.get(f"/v1/jobs/{job_id}")).status_code != 200:
                failures.append(f"job {job_id} answered 201, then GET {got.status_code}")
                continue
            candidate = http.post(f"/v1/jobs/{job_id}/ask", json={"n": 1}).json()[0]
            if http.get(f"/v1/evaluations/{candidate['id']}").json().get("state") != "running":
                failures.append(f"asked candidate {candidate['id']} not read back running")
            told = http.post(f"/v1/evaluations/{candidate['id']}/tell", json={"metrics": {"a": 1.0, "b": 2.0}})
            assert told.status_code == 200, told.text
            if http.get(f"/v1/jobs/{job_id}").json()["n_completed"] != 1:
                failures.append(f"the tell of candidate {candidate['id']} not read back")


def test_every_acknowledged_write_is_read_back_at_once_by_concurrent_clients(settings: Settings, serve,
                                                                            admin_token: str) -> None:
    failures: list[str] = []
    with serve(create_app(settings, run_jobs=False)) as url:
        threads = [threading.Thread(target=_submit_ask_tell, args=(url, admin_token, 6, failures)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        total = httpx.get(f"{url}/v1/jobs", params={"limit": 1},
                          headers={"Authorization": f"Bearer {admin_token}"}).json()["total"]
    assert failures == [] and total == 36


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_commit_that_fails_is_a_503_with_no_sql_and_nothing_stored(api, settings: Settings,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def dropped(self: Session) -> None:
        raise OperationalError("INSERT INTO jobs (name) VALUES (?)", ("secret-name",),
                               ConnectionResetError("server closed the connection unexpectedly"))

    with api(run_jobs=False) as http:
        monkeypatch.setattr(Session, "commit", dropped)
        response = http.post("/v1/jobs", json={**EXTERNAL, "name": "secret-name"})
        monkeypatch.undo()
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        detail = response.json()["detail"]
        assert "may be tried again" in detail
        assert not any(word in detail for word in ("INSERT", "secret-name", "VALUES"))
        assert http.get("/v1/jobs").json()["total"] == 0
