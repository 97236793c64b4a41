"""The service's settings: one `Settings` object, read from MERGEFRONT_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MERGEFRONT_", extra="ignore")

    home: Path = Field(Path.home() / ".mergefront", description="where the embedded database and caches live")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in `home`")
    cache_dir: Path | None = Field(None, description="built-in suites are built here; default: home/cache")
    ray_address: str | None = Field(None, validation_alias="RAY_ADDRESS")
    lease_seconds: float = Field(60.0, gt=0, description="a runner that stops renewing loses its job after this")
    poll_seconds: float = Field(1.0, gt=0, description="how often the server's runner looks for new jobs")
    run_jobs: bool = Field(True, description="whether `serve` also runs jobs (False: API only)")

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'mergefront.db'}"

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.home / "cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()
