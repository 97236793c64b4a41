"""Schemathesis over the whole OpenAPI schema, every check, against a real server with an admin token: no 5xx,
no answer the schema does not document, no schema-valid request refused, no invalid one accepted.

Bounded: a few examples per operation and phase (under a minute per database). A job with told results, an error
and a running candidate is stored first. Token revocation runs last, on
its own, as it may revoke the token the run uses.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

from mergefront.service.app import create_app
from mergefront.service.settings import Settings
from tests.service.test_commit_before_answer import EXTERNAL

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = 8
SEED = 12


def _counting(app, statuses: Counter[int]):  # type: ignore[no-untyped-def]
    """`app` counting the status of every HTTP answer it sends."""

    async def counted(scope, receive, send):  # type: ignore[no-untyped-def]
        async def send_counted(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                statuses[message["status"]] += 1
            await send(message)

        await app(scope, receive, send_counted)

    return counted


def _seed(url: str, token: str) -> None:
    """Job 1 with evaluations 1-4: two told results, a told error, one running, so that ids the schema's examples
    and boundaries pick (1, 2, ...) reach the code behind them (fronts, tables, exports), not only a 404."""
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
        job_id = http.post("/v1/jobs", json={**EXTERNAL, "optimizer": {**EXTERNAL["optimizer"], "budget": 8,
                                                                        "batch_size": 4}}).json()["id"]
        ids = [c["id"] for c in http.post(f"/v1/jobs/{job_id}/ask", json={"n": 4}).json()]
        assert job_id == 1 and ids == [1, 2, 3, 4]
        for i, told in zip(ids, ({"metrics": {"a": 0.9, "b": 0.4}}, {"metrics": {"a": 0.5, "b": 0.1}},
                                 {"error": "out of memory"}), strict=False):
            assert http.post(f"/v1/evaluations/{i}/tell", json=told).status_code == 200


def _schemathesis(url: str, token: str, report: Path, *selection: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(CONFIG), "run",
               f"{url}/openapi.json", "--checks", "all", "-H", f"Authorization: Bearer {token}",
               "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1", "--no-shrink",
               "--request-timeout", "60", "--report", "json", "--report-json-path", str(report), *selection]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=report.parent)  # its cache there


def test_schemathesis_finds_no_server_error_and_no_schema_violation(settings: Settings, serve, admin_token: str,
                                                                     tmp_path: Path) -> None:
    statuses: Counter[int] = Counter()
    app = create_app(settings, run_jobs=False)
    with serve(_counting(app, statuses)) as url:
        _seed(url, admin_token)
        runs = [_schemathesis(url, admin_token, tmp_path / "all.json", "--exclude-path-regex", "^/v1/tokens/"),
                _schemathesis(url, admin_token, tmp_path / "revoke.json", "--include-path-regex", "^/v1/tokens/")]
    total = sum(statuses.values())
    print(f"schemathesis: {total} requests, by status {dict(sorted(statuses.items()))}")
    for run in runs:
        assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
    assert not [code for code in statuses if code >= 500], statuses
    assert total > 500, statuses
