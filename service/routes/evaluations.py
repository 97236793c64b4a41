"""Single evaluations and their exports (mergekit YAML, checkpoint directory, checkpoint download)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from mergefront.schemas import EvaluationOut
from service import repository as repo
from service.deps import SessionDep

if TYPE_CHECKING:
    from service.export import ExportSource

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])


class CheckpointRequest(BaseModel):
    out_dir: str = Field(min_length=1, description="a directory on the server's filesystem (created)")


class CheckpointOut(BaseModel):
    path: str
    files: list[str]


@router.get("/{evaluation_id}")
def get_evaluation(evaluation_id: int, session: SessionDep) -> EvaluationOut:
    """One evaluation."""
    return EvaluationOut.model_validate(repo.get_evaluation(session=session, evaluation_id=evaluation_id))


@router.get("/{evaluation_id}/export/mergekit", response_class=PlainTextResponse)
def export_mergekit(evaluation_id: int, session: SessionDep, request: Request) -> PlainTextResponse:
    """The evaluation's merge as a mergekit YAML."""
    source = _source(evaluation_id, session, request)
    return PlainTextResponse(source.mergekit_yaml(), media_type="application/yaml")


@router.post("/{evaluation_id}/export/checkpoint")
def export_checkpoint(evaluation_id: int, body: CheckpointRequest, session: SessionDep,
                      request: Request) -> CheckpointOut:
    """Materialise the evaluation's merge as a Hugging Face directory on the server."""
    path = _source(evaluation_id, session, request).materialize(Path(body.out_dir))
    return CheckpointOut(path=str(path), files=sorted(p.name for p in path.iterdir()))


@router.get("/{evaluation_id}/export/checkpoint.zip", response_class=FileResponse)
def download_checkpoint(evaluation_id: int, session: SessionDep, request: Request) -> FileResponse:
    """Materialise the evaluation's merge and download it as a zip of its Hugging Face directory."""
    source = _source(evaluation_id, session, request)
    work = Path(tempfile.mkdtemp(prefix="mergefront-export-"))
    archive = shutil.make_archive(str(work / f"evaluation-{evaluation_id}"), "zip",
                                  source.materialize(work / "checkpoint"))
    return FileResponse(archive, media_type="application/zip", filename=f"mergefront-evaluation-{evaluation_id}.zip",
                        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True))


def _source(evaluation_id: int, session: SessionDep, request: Request) -> ExportSource:
    from service.export import export_source  # the optimizers' space code stays out of the API's start-up

    return export_source(session=session, evaluation_id=evaluation_id, settings=request.app.state.settings)
