"""The FastAPI application, its error mapping, and the background job runner it hosts."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from mergefront.errors import MergefrontError
from mergefront.plugins import Registry
from mergefront.service.auth import Authorized
from mergefront.service.db import make_engine, make_session_factory, upgrade_database
from mergefront.service.guards import install_guards
from mergefront.service.http_errors import GUARDED, install_error_handlers
from mergefront.service.routes import dashboard, dashboard_api, decide, evaluations, evaluators, jobs, tokens
from mergefront.service.settings import Settings, get_settings
from mergefront.service.token_files import ensure_tokens, read_token_files

log = logging.getLogger(__name__)


class BackgroundRunner:
    """A thread that leases and runs jobs one after another until stopped."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        from mergefront.service.runner import JobRunner

        self.runner = JobRunner(session_factory=app.state.sessions, settings=settings)
        self.poll = settings.poll_seconds
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="mergefront-runner", daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                job_id = self.runner.run_next(stop=self.stop)
            except MergefrontError:
                log.exception("runner error")
                job_id = None
            if job_id is None:
                self.stop.wait(self.poll)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def warm_imports() -> None:
    """Import what asks, tells and job views need (the optimizers and surrogates: numpy, SciPy, pymoo, torch,
    BoTorch) once, as the server starts, so that no request pays for it. Importing the app module stays light."""
    import importlib

    for module in ("mergefront.service.asktell", "mergefront.service.runner",
                   "mergefront.optimizers.nehvi_acquisition", "mergefront.surrogates.gp"):
        importlib.import_module(module)


def create_app(settings: Settings | None = None, *, run_jobs: bool | None = None) -> FastAPI:
    """The API; with `run_jobs` (default: settings.run_jobs) it also runs queued jobs in a thread."""
    settings = settings or get_settings()
    url = settings.resolved_database_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upgrade_database(url)
        ensure_tokens(sessions=app.state.sessions, files=read_token_files(settings.token_files))
        warm_imports()
        runner = BackgroundRunner(app, settings) if (settings.run_jobs if run_jobs is None else run_jobs) else None
        if runner is not None:
            runner.start()
        try:
            yield
        finally:
            if runner is not None:
                runner.close()
            app.state.engine.dispose()

    # The OpenAPI description is served by our own routes below, behind a read token like the API it describes.
    app = FastAPI(title="mergefront", version="0.1.0", lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description="Multi-objective search of model-merge configurations.")
    app.state.engine = make_engine(url, idle_seconds=settings.db_idle_seconds)
    app.state.sessions = make_session_factory(app.state.engine)
    app.state.settings = settings
    app.state.registry = Registry.discover(settings.plugins)
    if settings.auth_disabled:
        log.warning("authentication is OFF: only clients on this machine are answered, each as admin")
    install_error_handlers(app)
    install_guards(app, settings)
    for router in (jobs.router, evaluations.router, dashboard_api.router, decide.router, evaluators.router,
                   tokens.router):
        app.include_router(router, dependencies=[Authorized], responses=GUARDED)  # tokens: admin on top
    app.include_router(dashboard.router)  # the pages and plotly.js: static files, no token
    app.mount("/static", dashboard.static_files, name="static")

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Authorized])
    def openapi_description() -> JSONResponse:
        """The OpenAPI description of every route (read scope)."""
        return JSONResponse(app.openapi())

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        """Liveness probe."""
        return {"status": "ok"}

    return app
