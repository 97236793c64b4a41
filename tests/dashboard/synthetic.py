"""Jobs with many evaluations, written straight through the repository (no Ray): for scale tests and benchmarks."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from mergefront.optimizers import hypervolume
from mergefront.service import repository as repo
from mergefront.service.db import session_scope
from mergefront.service.front import FrontState
from mergefront.service.models import JobState
from mergefront.spec import parse_spec

TASKS = ["rotated", "inverted", "parity", "mod3"]


def synthetic_spec(n_objectives: int, budget: int) -> dict[str, Any]:
    tasks = TASKS[:n_objectives]
    return copy.deepcopy({
        "name": f"synthetic-{n_objectives}obj-{budget}",
        "models": {"base": "bench://digits/base", "experts": [f"bench://digits/{t}" for t in tasks]},
        "merge": {"method": "ties", "weight": {"low": 0.0, "high": 1.0}, "density": {"low": 0.1, "high": 1.0}},
        "objectives": [{"task": t} for t in tasks],
        "optimizer": {"name": "random", "budget": budget, "batch_size": 8, "seed": 0},
        "resources": {"workers": 1, "device": "cpu"},
    })


def _metrics(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """`n x m` accuracies in [0, 1] that trade off against each other (a curved front with noise behind it)."""
    w = rng.dirichlet(np.ones(m), size=n)  # n x m
    return np.clip(0.95 * np.sqrt(w) - rng.exponential(0.08, size=(n, m)), 0.0, 1.0)


def build_job(sessions: sessionmaker[Session], *, n: int, n_objectives: int, seed: int = 0,
              history_points: int = 200) -> int:
    """A completed job with `n` completed evaluations and a front step per evaluation with the front's changes (as
    the runner stores them), whose hypervolume is computed at `history_points` steps."""
    rng = np.random.default_rng(seed)
    spec = parse_spec(synthetic_spec(n_objectives, n))
    with session_scope(sessions) as s:
        job = repo.create_job(session=s, spec=spec)
        job_id, objectives, ref = job.id, list(job.objectives), list(job.reference_point)
        x = rng.random((n, 2 * n_objectives))  # n x d
        names = [f"weight.{t}" for t in TASKS[:n_objectives]] + [f"density.{t}" for t in TASKS[:n_objectives]]
        rows = repo.add_evaluations(session=s, job_id=job_id,
                                    points=[(list(p), dict(zip(names, map(float, p), strict=True))) for p in x])
        values = _metrics(rng, n, n_objectives)
        for row, v in zip(rows, values, strict=True):
            repo.start_evaluation(session=s, evaluation_id=row.id)
            repo.complete_evaluation(session=s, evaluation_id=row.id, metrics=dict(zip(objectives, map(float, v),
                                     strict=True)), worker="synthetic", merge_seconds=0.01, eval_seconds=0.02)
        _snapshots(s, job_id, [r.id for r in rows], values, ref, history_points)
        repo.finish_job(session=s, job_id=job_id, state=JobState.completed)
    return job_id


def _snapshots(s: Session, job_id: int, ids: list[int], values: np.ndarray, ref: list[float],
               history_points: int) -> None:
    """The steps the runner stores: the front's changes after each evaluation (kept in memory as it does), the
    hypervolume computed at `history_points` steps and carried between them."""
    n = len(ids)
    maximize = [True] * values.shape[1]
    front = FrontState(maximize=tuple(maximize), reference=tuple(ref))
    step = max(1, n // history_points)
    hv = 0.0
    for k in range(1, n + 1):
        entered, left = front.add(ids[k - 1], tuple(float(v) for v in values[k - 1]))
        if k % step == 0 or k == n:
            hv = hypervolume(list(front.members.values()), ref, maximize)
        repo.add_front_step(session=s, job_id=job_id, n_completed=k, hypervolume=hv, front_size=len(front.members),
                            entered=entered, left=left)
