"""Single evaluations and their exports (mergekit YAML, checkpoint directory, checkpoint download)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.background import BackgroundTask

from mergefront.bounds import CleanModel, Metric
from mergefront.errors import ConflictError
from mergefront.schemas import EvaluationOut
from mergefront.service import repository as repo
from mergefront.service.auth import Admin
from mergefront.service.confine import NAMES_PATTERN, confine, display_path
from mergefront.service.deps import SessionDep, read_apart
from mergefront.service.http_errors import STORED
from mergefront.service.models import EvaluationState, utcnow
from mergefront.service.routes.params import EvaluationId

if TYPE_CHECKING:
    from mergefront.service.export import ExportSource

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"], responses=STORED)


class CheckpointRequest(CleanModel):
    out_dir: str = Field(min_length=1, max_length=1000, description="a directory under the server's export root "
                         "(relative to it; created); each folder name at most 255 bytes",
                         json_schema_extra={"pattern": NAMES_PATTERN})
    overwrite: bool = Field(False, description="replace the files of an existing, non-empty directory")


class CheckpointOut(BaseModel):
    path: str = Field(description="where it was written, relative to the server's export root")
    files: list[str]


class TellRequest(CleanModel):
    """Either `metrics` or `error`, not both."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["metrics"], "properties": {"metrics": {"type": "object"}, "error": {"type": "null"}}},
        {"required": ["error"], "properties": {"error": {"type": "string"}, "metrics": {"type": "null"}}}]})

    metrics: dict[str, Metric] | None = Field(None, max_length=16, description="a value for every objective of "
                                              "the job")
    error: str | None = Field(None, min_length=1, max_length=4000, description="why the candidate could not be "
                              "evaluated (recorded as a failed evaluation)")

    @model_validator(mode="after")
    def _one_of(self) -> TellRequest:
        if (self.metrics is None) == (self.error is None):
            raise ValueError("give either metrics or error")
        return self


@router.get("/{evaluation_id}")
def get_evaluation(evaluation_id: EvaluationId, session: SessionDep) -> EvaluationOut:
    """One evaluation."""
    row = repo.get_evaluation(session=session, evaluation_id=evaluation_id)
    if row.state == EvaluationState.running and row.expires_at is not None and row.expires_at <= utcnow():
        repo.expire_overdue(session=session, job_id=row.job_id)
    return EvaluationOut.model_validate(row)


@router.post("/{evaluation_id}/tell")
def tell(evaluation_id: EvaluationId, body: TellRequest, session: SessionDep) -> EvaluationOut:
    """Record the metrics measured for a candidate of an external job (or the error that stopped them)."""
    from mergefront.service.asktell import tell  # the optimizers stay out of the API's start-up

    return EvaluationOut.model_validate(tell(session=session, evaluation_id=evaluation_id, metrics=body.metrics,
                                             error=body.error))


class YamlResponse(PlainTextResponse):
    media_type = "application/yaml"


@router.get("/{evaluation_id}/export/mergekit", response_class=YamlResponse, responses={200: {"content": {
    "application/yaml": {"schema": {"type": "object", "description": "a mergekit configuration (mergekit-yaml)"}}}}})
def export_mergekit(evaluation_id: EvaluationId, request: Request) -> YamlResponse:
    """The evaluation's merge as a mergekit YAML."""
    source = _source(evaluation_id, request)
    return YamlResponse(source.mergekit_yaml(request.app.state.settings))


@router.post("/{evaluation_id}/export/checkpoint", dependencies=[Admin])
def export_checkpoint(evaluation_id: EvaluationId, body: CheckpointRequest, request: Request) -> CheckpointOut:
    """Materialise the evaluation's merge as a Hugging Face directory under the server's export root (admin)."""
    root = request.app.state.settings.resolved_export_root
    root.mkdir(parents=True, exist_ok=True)
    out = confine(body.out_dir, [root], what="export", setting="export_root", loc=("out_dir",))
    if out.exists() and not out.is_dir():
        raise ConflictError(f"out_dir {body.out_dir!r} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not body.overwrite:
        raise ConflictError(f"out_dir {body.out_dir!r} already holds files; send overwrite: true to replace them")
    path = _source(evaluation_id, request).materialize(out)
    return CheckpointOut(path=display_path(str(path), [root]), files=sorted(p.name for p in path.iterdir()))


@router.get("/{evaluation_id}/export/checkpoint.zip", response_class=FileResponse)
def download_checkpoint(evaluation_id: EvaluationId, request: Request) -> FileResponse:
    """Materialise the evaluation's merge and download it as a zip of its Hugging Face directory."""
    source = _source(evaluation_id, request)
    work = Path(tempfile.mkdtemp(prefix="mergefront-export-"))
    archive = shutil.make_archive(str(work / f"evaluation-{evaluation_id}"), "zip",
                                  source.materialize(work / "checkpoint"))
    return FileResponse(archive, media_type="application/zip", filename=f"mergefront-evaluation-{evaluation_id}.zip",
                        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True))


def _source(evaluation_id: EvaluationId, request: Request) -> ExportSource:
    """What the export needs, read in a transaction that ends before the merge (seconds to minutes) starts."""
    from mergefront.service.export import export_source  # the optimizers' space code stays out of the API's start-up

    settings = request.app.state.settings
    return read_apart(request, lambda s: export_source(session=s, evaluation_id=evaluation_id, settings=settings),
                      f"reading evaluation {evaluation_id}")
