"""What an export needs about one stored evaluation, gathered once for the REST routes and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from mergefront.errors import ConflictError
from mergefront.optimizers import SearchSpace
from mergefront.service import repository as repo
from mergefront.service.confine import public_ref
from mergefront.service.mergekit import mergekit_yaml
from mergefront.service.models import EvaluationState
from mergefront.service.settings import Settings
from mergefront.service.space import ModelFiles, candidate_seed, job_files, job_space, materialize
from mergefront.spec import JobSpec


@dataclass(frozen=True)
class ExportSource:
    spec: JobSpec
    space: SearchSpace
    params: dict[str, float]
    seed: int
    files: ModelFiles

    def mergekit_yaml(self, settings: Settings | None = None) -> str:
        """The YAML; with the server's `settings`, models are named as the spec names them (not by server paths)."""
        refs = None if settings is None else [public_ref(r, settings) for r in (self.spec.models.base,
                                                                                 *self.spec.models.experts)]
        return mergekit_yaml(self.spec, self.space, self.params, self.files, refs)

    def materialize(self, out_dir: Path, progress: bool = False) -> Path:
        return materialize(self.spec, self.space, self.params, self.seed, self.files, out_dir, progress)


def export_source(*, session: Session, evaluation_id: int, settings: Settings) -> ExportSource:
    """The spec, space, values and model files of a completed evaluation."""
    row = repo.get_evaluation(session=session, evaluation_id=evaluation_id)
    if row.state != EvaluationState.completed:
        raise ConflictError(f"evaluation {evaluation_id} is {row.state}; only completed evaluations are exported")
    spec = JobSpec.model_validate(repo.get_job(session=session, job_id=row.job_id).spec)
    files = job_files(spec, settings)
    return ExportSource(spec, job_space(spec, settings, files), dict(row.params), candidate_seed(spec, row.number),
                        files)
