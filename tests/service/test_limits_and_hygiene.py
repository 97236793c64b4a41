"""Limits and surface hygiene: request body limit (stated and chunked), operator caps, 422s that echo only an
excerpt, trusted Host headers, no CORS unless configured, error bodies free of SQL, stack traces, process ids,
colour codes and server paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from mergefront.errors import public_message
from mergefront.schemas import EvaluationOut
from mergefront.service.settings import Settings


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: these tests are about the HTTP surface, not the database."""
    return f"sqlite:///{tmp_path / 'mergefront.db'}"


@pytest.fixture
def client(api) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with api(run_jobs=False) as c:
        yield c


def test_a_body_over_the_limit_is_413_whether_stated_or_chunked(client: TestClient, spec_data: dict) -> None:
    big = json.dumps({**spec_data, "name": "x" * 10_000_000}).encode()
    expected = {"detail": "the request body is larger than this server accepts (1000000 bytes)"}
    stated = client.post("/v1/jobs", content=big, headers={"content-type": "application/json"})
    assert stated.status_code == 413 and stated.json() == expected

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    chunked = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and chunked.json() == expected
    assert client.get("/v1/jobs").json()["total"] == 0


def test_a_422_echoes_only_a_short_excerpt(client: TestClient, spec_data: dict) -> None:
    response = client.post("/v1/jobs", json={**spec_data, "name": "y" * 500_000})
    assert response.status_code == 422 and len(response.content) < 1000
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "name"] and detail["input"] == "y" * 80 + "..."


def test_a_long_value_in_a_message_is_cut(client: TestClient, spec_data: dict) -> None:
    spec_data["models"]["experts"][1] = "bench://digits/" + "z" * 4000
    detail = client.post("/v1/jobs", json=spec_data).json()["detail"][0]
    assert detail["loc"] == ["body", "models", "experts", 1] and len(detail["msg"]) < 300, detail


@pytest.mark.parametrize(("field", "value", "message"), [
    (("resources", "workers"), 256, "256 is more than this server allows: at most 16 (the operator's "
                                    "MERGEFRONT_MAX_WORKERS)"),
    (("optimizer", "budget"), 100_000, "100000 is more than this server allows: at most 10000 (the operator's "
                                       "MERGEFRONT_MAX_BUDGET)"),
    (("resources", "gpus_per_worker"), 1000, "1000.0 is more than this server allows: at most 8 (the operator's "
                                             "MERGEFRONT_MAX_GPUS_PER_WORKER)"),
])
def test_resources_over_the_operators_caps_are_422(client: TestClient, spec_data: dict, field: tuple, value: float,
                                                   message: str) -> None:
    spec_data[field[0]] = {**spec_data[field[0]], field[1]: value}
    response = client.post("/v1/jobs", json=spec_data)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0] == {"loc": ["body", *field], "msg": message, "type": "value_error"}


def test_an_unknown_host_header_is_refused(client: TestClient, spec_data: dict) -> None:
    response = client.post("/v1/jobs", json=spec_data, headers={"Host": "evil.example"})
    assert response.status_code == 400 and response.text == "Invalid host header"
    assert client.get("/v1/jobs").json()["total"] == 0


def test_no_cors_unless_configured(api, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    with api(run_jobs=False) as client:
        response = client.options("/v1/jobs", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    with api(settings.model_copy(update={"cors_origins": ["https://team.example"]}), run_jobs=False) as client:
        ok = client.options("/v1/jobs", headers={**preflight, "Origin": "https://team.example"})
        assert ok.headers["access-control-allow-origin"] == "https://team.example"
        assert "access-control-allow-origin" not in client.options("/v1/jobs", headers=preflight).headers


def test_a_database_error_is_503_without_sql(client: TestClient, sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        s.execute(text("ALTER TABLE jobs RENAME TO jobs_away"))
        s.commit()
    response = client.get("/v1/jobs")
    assert response.status_code == 503
    assert response.json() == {"detail": "the database refused the request (OperationalError); it was rolled back"}


def test_errors_shown_carry_no_colour_codes_process_ids_stack_traces_or_paths() -> None:
    raw = ("RayTaskError(ValueError): \x1b[36mray::EvaluationActor.evaluate()\x1b[39m (pid=41327, ip=10.0.3.7, "
           "actor_id=8f2c)\nTraceback (most recent call last):\n  File \"/srv/app/.venv/lib/python3.11/site-packages/"
           "x.py\", line 12, in evaluate\n    raise ValueError(path)\nValueError: cannot read "
           "/home/alice/.mergefront/cache/digits/base/model.safetensors")
    shown = public_message(raw)
    assert shown == ("RayTaskError(ValueError): ray::EvaluationActor.evaluate(): ValueError: cannot read "
                     ".../model.safetensors")
    row = {"id": 1, "job_id": 1, "number": 0, "state": "failed", "params": {}, "attempts": 2, "error": raw,
           "created_at": "2026-01-01T00:00:00"}
    assert EvaluationOut.model_validate(row).error == shown
