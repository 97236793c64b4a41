"""The web dashboard: its two pages, the API docs page, its static files and the plotly.js that the `plotly`
package ships."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from mergefront.errors import NotFoundError

STATIC_DIR = Path(__file__).resolve().parent.parent / "dashboard" / "static"

router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=STATIC_DIR)
_CACHE = {"Cache-Control": "public, max-age=86400"}


@lru_cache(maxsize=1)
def plotly_js_path() -> Path:
    """plotly.min.js from the installed `plotly` package's data (served locally: no CDN)."""
    path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():
        raise NotFoundError(f"plotly.min.js not found at {path}; is the `plotly` package installed?")
    return path


@router.get("/")
def jobs_page() -> FileResponse:
    """The jobs page."""
    return FileResponse(STATIC_DIR / "jobs.html", headers={"Cache-Control": "no-cache"})


@router.get("/jobs/{job_id}")
def job_page(job_id: int) -> FileResponse:
    """One job's page (the page reads the job id from its URL)."""
    return FileResponse(STATIC_DIR / "job.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
def docs_page() -> FileResponse:
    """The interactive API docs (Swagger UI); the description they show is fetched with the session's token."""
    return FileResponse(STATIC_DIR / "docs.html", headers={"Cache-Control": "no-cache"})


@router.get("/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    """The plotting library, from the local `plotly` package."""
    return FileResponse(plotly_js_path(), media_type="text/javascript", headers=_CACHE)
