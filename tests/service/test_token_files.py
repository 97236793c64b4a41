"""Tokens provided as files (MERGEFRONT_TOKEN_FILES, compose secrets): stored at start, hashed, idempotent."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mergefront.errors import InvalidSpecError
from mergefront.service import token_files
from mergefront.service.db import session_scope
from mergefront.service.models import ApiToken, TokenScope
from mergefront.service.settings import Settings
from mergefront.service.token_files import ensure_tokens, read_token_files
from mergefront.service.tokens import authenticate, digest, revoke_token


def _secret(tmp_path: Path, name: str, token: str | None = None) -> tuple[Path, str]:
    token = token if token is not None else "mf_" + secrets.token_urlsafe(32)
    path = tmp_path / name
    path.write_text(token + "\n")
    return path, token


def _rows(sessions) -> list[ApiToken]:  # type: ignore[no-untyped-def]
    with session_scope(sessions) as s:
        rows = list(s.scalars(select(ApiToken).order_by(ApiToken.id)))
        s.expunge_all()
    return rows


def test_reads_name_scope_and_token_and_never_shows_the_token(tmp_path: Path) -> None:
    path, token = _secret(tmp_path, "api_token")
    (item,) = read_token_files([f"ci:write:{path}"])
    assert (item.name, item.scope, item.path, item.token) == ("ci", TokenScope.write, path, token)
    assert token not in repr(item) and token not in str(item)


@pytest.mark.parametrize(("entry", "says"), [
    ("ci:write", "is not name:scope:path"),
    ("ci:owner:{path}", "'owner' is not a scope"),
    (":write:{path}", "a token's name has 1 to 100 characters"),
    ("ci:write:{missing}", "cannot be read"),
    ("ci:write:{short}", "32 to 512 characters"),
    ("ci:write:{spaced}", "32 to 512 characters"),
])
def test_refuses_bad_entries_and_bad_files_naming_the_entry(tmp_path: Path, entry: str, says: str) -> None:
    path, _ = _secret(tmp_path, "good")
    short, _ = _secret(tmp_path, "short", "mf_tooshort")
    spaced, _ = _secret(tmp_path, "spaced", "mf_" + "a" * 20 + " " + "b" * 20)
    entry = entry.format(path=path, missing=tmp_path / "nope", short=short, spaced=spaced)
    with pytest.raises(InvalidSpecError, match=says) as info:
        read_token_files([entry])
    assert info.value.loc == ("MERGEFRONT_TOKEN_FILES",)
    assert "mf_tooshort" not in info.value.message


def test_refuses_one_token_in_two_entries(tmp_path: Path) -> None:
    path, token = _secret(tmp_path, "a")
    other, _ = _secret(tmp_path, "b", token)
    with pytest.raises(InvalidSpecError, match="same token as another entry"):
        read_token_files([f"ci:write:{path}", f"ops:admin:{other}"])


def test_stores_each_token_hashed_once_across_restarts(tmp_path: Path, sessions) -> None:  # type: ignore[no-untyped-def]
    api_path, api_token = _secret(tmp_path, "api_token")
    admin_path, admin_token = _secret(tmp_path, "admin_token")
    entries = [f"ci:write:{api_path}", f"operator:admin:{admin_path}"]
    for _ in range(3):  # a start, a restart, a second replica
        ensure_tokens(sessions=sessions, files=read_token_files(entries))
    rows = _rows(sessions)
    assert [(r.name, r.scope, r.digest) for r in rows] == [("ci", "write", digest(api_token)),
                                                         ("operator", "admin", digest(admin_token))]
    assert [r.prefix for r in rows] == [api_token[:10], admin_token[:10]]  # the rest is kept nowhere
    with session_scope(sessions) as s:
        assert authenticate(session=s, token=api_token).scope == TokenScope.write
        assert authenticate(session=s, token=admin_token).scope == TokenScope.admin


def test_a_changed_scope_applies_and_a_revoked_token_stays_revoked(tmp_path: Path, sessions) -> None:  # type: ignore[no-untyped-def]
    path, token = _secret(tmp_path, "api_token")
    ensure_tokens(sessions=sessions, files=read_token_files([f"ci:write:{path}"]))
    ensure_tokens(sessions=sessions, files=read_token_files([f"reader:read:{path}"]))
    (row,) = _rows(sessions)
    assert (row.name, row.scope) == ("reader", "read")
    with session_scope(sessions) as s:
        revoke_token(session=s, token_id=row.id)
    ensure_tokens(sessions=sessions, files=read_token_files([f"ci:write:{path}"]))
    (row,) = _rows(sessions)
    assert row.revoked_at is not None and row.scope == "read"
    new_path, _ = _secret(tmp_path, "api_token")  # the operator puts a new token in the file
    ensure_tokens(sessions=sessions, files=read_token_files([f"ci:write:{new_path}"]))
    assert [(r.name, r.scope, r.revoked_at is None) for r in _rows(sessions)] == [
        ("reader", "read", False), ("ci", "write", True)]


def test_a_replica_that_stored_the_token_first_is_no_error(tmp_path: Path, sessions,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path, token = _secret(tmp_path, "api_token")
    files = read_token_files([f"ci:write:{path}"])
    real_find, calls = token_files._find, []

    def late_find(session, item):  # type: ignore[no-untyped-def]
        calls.append(item.name)
        if len(calls) == 1:  # another replica stores it between this one's look-up and its insert
            ensure_tokens(sessions=sessions, files=files)
            return None
        return real_find(session, item)

    monkeypatch.setattr(token_files, "_find", late_find)
    ensure_tokens(sessions=sessions, files=files)
    assert len(calls) >= 2
    with session_scope(sessions) as s:
        assert s.scalar(select(func.count()).select_from(ApiToken)) == 1


def test_the_app_answers_a_token_given_as_a_file(tmp_path: Path, settings: Settings, api) -> None:  # type: ignore[no-untyped-def]
    path, token = _secret(tmp_path, "api_token")
    with_file = settings.model_copy(update={"token_files": [f"ci:read:{path}"]})
    with api(with_file, run_jobs=False) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/jobs", headers=headers).status_code == 200
        refused = client.post("/v1/jobs", json={}, headers=headers)
        assert refused.status_code == 403, refused.text


def test_serve_stops_at_a_bad_token_file_saying_why(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MERGEFRONT_HOME": str(tmp_path),
           "MERGEFRONT_TOKEN_FILES": f"ci:write:{tmp_path / 'missing'}"}
    done = subprocess.run([sys.executable, "-m", "mergefront.cli", "serve", "--port", "9"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "token file of 'ci' cannot be read" in done.stderr and "Traceback" not in done.stderr
