"""Tokens: every endpoint but health and the dashboard's static files needs one, of the right scope; tokens are
stored hashed, revoked at once, expire; the no-auth switch exists only on loopback, and answers only loopback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from mergefront.cli import main as cli_main
from mergefront.errors import MergefrontError
from mergefront.service.app import create_app
from mergefront.service.auth import check_auth_setting
from mergefront.service.db import session_scope
from mergefront.service.models import ApiToken, utcnow
from mergefront.service.settings import Settings


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: these tests are about the HTTP surface, not the database."""
    return f"sqlite:///{tmp_path / 'mergefront.db'}"

@pytest.fixture
def anonymous(settings: Settings, admin_token: str):  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, run_jobs=False)) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_endpoint_but_health_and_static_files_needs_a_token(anonymous: TestClient) -> None:
    paths = anonymous.app.openapi()["paths"]  # every API route (the pages are not in it)
    routes = [(method.upper(), path) for path, methods in paths.items() for method in methods if path != "/healthz"]
    assert len(routes) >= 18
    for method, template in routes:
        path = template.replace("{job_id}", "1").replace("{evaluation_id}", "1").replace("{token_id}", "1")
        if True:
            response = anonymous.request(method, path, json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["detail"].startswith("this request needs a token: send `Authorization: Bearer")
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert anonymous.get("/").status_code == 200 and anonymous.get("/static/common.js").status_code == 200
    # the OpenAPI description too: it is not in itself, and /docs is a page that fetches it with the session's token
    response = anonymous.get("/openapi.json")
    assert response.status_code == 401 and response.json()["detail"].startswith("this request needs a token")
    assert anonymous.get("/docs").status_code == 200 and "/static/docs.js" in anonymous.get("/docs").text


def test_unknown_revoked_and_expired_tokens_are_401(anonymous: TestClient, sessions, make_token) -> None:
    assert anonymous.get("/v1/jobs", headers=_bearer("mf_made-up")).json() == {"detail": "unknown token"}
    token = make_token("read")
    assert anonymous.get("/v1/jobs", headers=_bearer(token)).status_code == 200
    assert cli_main(["token", "revoke", "2", "--db", str(anonymous.app.state.settings.resolved_database_url)]) == 0
    response = anonymous.get("/v1/jobs", headers=_bearer(token))
    assert response.status_code == 401 and response.json()["detail"] == f"token {token[:10]}... was revoked"
    token = make_token("read")
    with session_scope(sessions) as s:
        s.execute(update(ApiToken).where(ApiToken.prefix == token[:10]).values(expires_at=utcnow() - timedelta(1)))
    response = anonymous.get("/v1/jobs", headers=_bearer(token))
    assert response.status_code == 401 and response.json()["detail"] == f"token {token[:10]}... expired"


def test_scopes_read_write_admin(anonymous: TestClient, make_token: Callable[[str], str], spec_data: dict) -> None:
    read, write = _bearer(make_token("read")), _bearer(make_token("write"))
    response = anonymous.post("/v1/jobs", json=spec_data, headers=read)
    assert response.status_code == 403
    assert response.json()["detail"].endswith("has scope read; this request needs scope write")
    assert anonymous.post("/v1/jobs", json=spec_data, headers=write).status_code == 201
    assert anonymous.get("/v1/jobs", headers=write).json()["total"] == 1
    for method, path, body in (("POST", "/v1/evaluations/1/export/checkpoint", {"out_dir": "x"}),
                               ("GET", "/v1/tokens", None), ("POST", "/v1/tokens", {"name": "x"}),
                               ("DELETE", "/v1/tokens/1", None)):
        response = anonymous.request(method, path, json=body, headers=write)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["detail"].endswith("has scope write; this request needs scope admin")


def test_admin_endpoint_makes_lists_and_revokes_tokens_stored_only_as_hashes(anonymous: TestClient, sessions,
                                                                            admin_token: str) -> None:
    admin = _bearer(admin_token)
    made = anonymous.post("/v1/tokens", json={"name": "ci", "scope": "write", "expires_days": 30}, headers=admin)
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("mf_") and len(token) > 40 and made.json()["scope"] == "write"
    listed = anonymous.get("/v1/tokens", headers=admin).json()
    assert [t["name"] for t in listed] == ["tests-admin", "ci"] and all("token" not in t for t in listed)
    with session_scope(sessions) as s:
        stored = [(r.digest, r.prefix) for r in s.scalars(select(ApiToken))]
    assert all(token not in digest and len(prefix) == 10 for digest, prefix in stored)
    assert anonymous.get("/v1/jobs", headers=_bearer(token)).status_code == 200
    assert anonymous.delete(f"/v1/tokens/{made.json()['id']}", headers=admin).json()["revoked_at"] is not None
    assert anonymous.get("/v1/jobs", headers=_bearer(token)).status_code == 401
    bad = anonymous.post("/v1/tokens", json={"name": "x", "scope": "root"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "scope"]


def test_cli_token_create_list_revoke(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", settings.resolved_database_url]
    assert cli_main(["token", "create", "alice", "--scope", "write", *db]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("mf_")
    assert cli_main(["token", "list", *db]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "write" in listing and token[:10] in listing and token not in listing
    assert cli_main(["token", "revoke", "1", *db]) == 0 and "revoked" in capsys.readouterr().out
    assert cli_main(["token", "revoke", "7", *db]) == 2


def test_no_auth_only_on_loopback_logged_and_only_for_loopback_clients(settings: Settings,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    open_settings = settings.model_copy(update={"auth_disabled": True})
    with pytest.raises(MergefrontError, match="only on a loopback address, not on 0.0.0.0"):
        check_auth_setting(open_settings, "0.0.0.0")
    with caplog.at_level(logging.WARNING):
        check_auth_setting(open_settings, "127.0.0.1")
    assert "authentication is OFF" in caplog.text
    app = create_app(open_settings, run_jobs=False)
    with TestClient(app, client=("127.0.0.1", 50000)) as local:
        assert local.get("/v1/jobs").status_code == 200
    with TestClient(app, client=("192.0.2.7", 50000)) as remote:
        response = remote.get("/v1/jobs")
        assert response.status_code == 403
        assert response.json() == {"detail": "this server answers only clients on its own machine"}


def test_sdk_and_cli_send_the_token_of_mergefront_token_or_token(settings: Settings, serve, make_token,  # type: ignore[no-untyped-def]
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from mergefront import AuthenticationError, Client

    token = make_token("read")
    with serve(create_app(settings, run_jobs=False)) as url:
        monkeypatch.delenv("MERGEFRONT_TOKEN", raising=False)
        assert cli_main(["jobs", "--url", url]) == 2
        assert capsys.readouterr().err.startswith("error: this request needs a token: send `Authorization: Bearer")
        with Client(url) as anonymous, pytest.raises(AuthenticationError, match="this request needs a token"):
            anonymous.jobs()
        monkeypatch.setenv("MERGEFRONT_TOKEN", token)
        assert cli_main(["jobs", "--url", url]) == 0
        with Client(url) as client:
            assert client.jobs() == []
        monkeypatch.setenv("MERGEFRONT_TOKEN", "mf_made-up")
        assert cli_main(["jobs", "--url", url, "--token", token]) == 0  # --token over the environment
        with Client(url, token=token) as client:
            assert client.jobs() == []
