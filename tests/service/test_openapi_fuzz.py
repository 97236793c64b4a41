"""Schemathesis over the whole OpenAPI schema, every check, against a real server with an admin token: no 5xx,
no answer the schema does not document, no schema-valid request refused, no invalid one accepted.

Bounded: a few examples per operation and phase (about a minute per database). Token revocation runs last, on
its own, as it may revoke the token the run uses.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from mergefront.service.app import create_app
from mergefront.service.settings import Settings

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
        runs = [_schemathesis(url, admin_token, tmp_path / "all.json", "--exclude-path-regex", "^/v1/tokens/"),
                _schemathesis(url, admin_token, tmp_path / "revoke.json", "--include-path-regex", "^/v1/tokens/")]
    total = sum(statuses.values())
    print(f"schemathesis: {total} requests, by status {dict(sorted(statuses.items()))}")
    for run in runs:
        assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
    assert not [code for code in statuses if code >= 500], statuses
    assert total > 500, statuses
