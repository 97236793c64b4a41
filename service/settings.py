"""The service's settings: one `Settings` object, read from MERGEFRONT_* environment variables.

List settings (roots, hosts, origins, plug-ins) are read from the environment as comma-separated text, e.g.
`MERGEFRONT_MODEL_ROOTS=/srv/models,/mnt/big/models`, or as a JSON list.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOOPBACK_HOSTS = ("localhost", "127.0.0.1")
#: default of `db_idle_seconds`: far more than a runner's or a request's work between two statements
DB_IDLE_SECONDS = 300.0


def _split(value: Any) -> Any:
    """`a,b` or `["a", "b"]` (an environment variable) -> ["a", "b"]; lists pass through."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


Paths = Annotated[list[Path], NoDecode, BeforeValidator(_split)]
Names = Annotated[list[str], NoDecode, BeforeValidator(_split)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MERGEFRONT_", extra="ignore")

    home: Path = Field(Path.home() / ".mergefront", description="where the embedded database and caches live")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in `home`")
    cache_dir: Path | None = Field(None, description="built-in suites are built here; default: home/cache")
    ray_address: str | None = Field(None, validation_alias="RAY_ADDRESS")
    lease_seconds: float = Field(60.0, gt=0, description="a runner that stops renewing loses its job after this")
    poll_seconds: float = Field(1.0, gt=0, description="how often the server's runner looks for new jobs")
    run_jobs: bool = Field(True, description="whether `serve` also runs jobs (False: API only)")
    placement_timeout: float = Field(600.0, gt=0, le=7 * 86400, description="seconds the Ray cluster has to place "
                                     "and start a job's workers; after it the job waits, holding nothing, and is "
                                     "tried again (a worker replaced mid-job: its evaluation is retried)")
    evaluation_timeout: float = Field(3600.0, gt=0, le=7 * 86400, description="seconds one evaluation may run; "
                                      "after it its worker is stopped and the evaluation retried as "
                                      "resources.max_retries allows")
    start_deadline: float = Field(3600.0, gt=0, le=30 * 86400, description="seconds a job may wait for a Ray "
                                  "cluster that cannot start its workers (unreachable, no room) before it fails "
                                  "saying why")
    failures_to_stop: int = Field(4, ge=1, le=10_000, description="a job whose first evaluations (this many, or its "
                                  "whole budget if smaller) all fail with the same error stops as failed with that "
                                  "error, the rest of its budget unspent")
    db_idle_seconds: float = Field(DB_IDLE_SECONDS, ge=1, le=86400, description="PostgreSQL ends a transaction "
                                   "whose client sent nothing for this long, freeing its locks: a runner or server "
                                   "paused or cut off mid-transaction holds a job's rows no longer than this (an "
                                   "ask's optimizer step, which holds its job's lock by design, is exempt)")
    cluster_retry_seconds: float = Field(30.0, gt=0, le=86400, description="how long a job that the Ray cluster "
                                         "could not run (unreachable, no room) waits before a runner tries again")

    # who may talk to the server (docs/security.md)
    auth_disabled: bool = Field(False, description="serve without tokens; allowed only on a loopback address, "
                                "and only requests from loopback clients are answered (`serve --no-auth`)")
    allowed_hosts: Names = Field(list(LOOPBACK_HOSTS), description="Host headers the server answers ('*': any)")
    cors_origins: Names = Field([], description="browser origins allowed to call the API from their pages")
    max_body_bytes: int = Field(1_000_000, ge=1024, le=1_000_000_000, description="largest request body")
    token_files: Names = Field([], description="tokens an operator provides as files (e.g. compose secrets), "
                               "`name:scope:path` each: `serve` stores each at start (its digest only), again "
                               "harmlessly on every start and replica (service/token_files.py)")

    # what a job submitted over the network may read and write (local `mergefront run` is not confined)
    export_root: Path | None = Field(None, description="checkpoint exports are written under it; default: "
                                     "home/exports")
    model_roots: Paths = Field([], description="local model paths of network jobs must lie under one of these; "
                               "default: home/models")
    data_roots: Paths = Field([], description="data files and task folders of network jobs must lie under one "
                              "of these; default: home/data")
    plugins: Names = Field([], description="evaluator functions callable over the network besides the "
                           "`mergefront.evaluators` entry points: `package.module:function` or a whole "
                           "`package.module`")

    # the most a network job may ask for
    max_budget: int = Field(10_000, ge=1, description="evaluations per job")
    max_batch_size: int = Field(256, ge=1, description="candidates per round")
    max_workers: int = Field(16, ge=1, description="Ray workers per job")
    max_gpus_per_worker: float = Field(8.0, ge=0, description="GPUs per worker")

    @field_validator("plugins")
    @classmethod
    def _plugins_are_allowed(cls, value: list[str]) -> list[str]:
        from mergefront.plugins import check_target

        return [check_target(target, "plugin") for target in value]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'mergefront.db'}"

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.home / "cache"

    @property
    def resolved_export_root(self) -> Path:
        return (self.export_root or self.home / "exports").expanduser().resolve()

    @property
    def resolved_model_roots(self) -> list[Path]:
        return [p.expanduser().resolve() for p in self.model_roots or [self.home / "models"]]

    @property
    def resolved_data_roots(self) -> list[Path]:
        return [p.expanduser().resolve() for p in self.data_roots or [self.home / "data"]]


@lru_cache
def get_settings() -> Settings:
    return Settings()
