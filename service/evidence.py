"""A point's evidence: the mean, spread and number of its completed evaluations.

A job with `optimizer.reevaluate` evaluates front members again with new mask seeds; each repeat is its own
evaluation naming the point's first evaluation (`repeat_of`). Fronts are over points, named by their first
evaluation, and report each member's mean over its evaluations, their standard deviation, minimum and maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from mergefront.schemas import EvaluationOut, FrontMember
from mergefront.service.models import Evaluation, EvaluationState


@dataclass(frozen=True)
class Evidence:
    """What a point's completed evaluations say, per objective."""

    ids: tuple[int, ...]
    mean: dict[str, float]
    std: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]


def summarise(ids: Sequence[int], metrics: Sequence[dict[str, float]], keys: Sequence[str]) -> Evidence:
    """The evidence of one point from its evaluations' ids and metrics (at least one)."""
    values = np.asarray([[m[k] for k in keys] for m in metrics], dtype=float)  # e x m
    return Evidence(tuple(ids), *({k: float(col[j]) for j, k in enumerate(keys)}
                                  for col in (values.mean(axis=0), values.std(axis=0), values.min(axis=0),
                                              values.max(axis=0))))


def evidence(*, session: Session, points: Sequence[Evaluation], keys: Sequence[str],
             until: datetime | None = None) -> dict[int, Evidence]:
    """Each completed point's evidence by its first evaluation's id: that one and its completed repeats (those
    finished by `until`, when given), read by one indexed query."""
    firsts = [p.id for p in points if p.metrics is not None]
    where = [Evaluation.repeat_of.in_(firsts), Evaluation.state == EvaluationState.completed]
    if until is not None:
        where.append(Evaluation.finished_at <= until)
    repeats: dict[int, list[tuple[int, dict[str, float]]]] = {}
    if firsts:
        for i, of, m in session.execute(select(Evaluation.id, Evaluation.repeat_of, Evaluation.metrics)
                                        .where(*where).order_by(Evaluation.number)).all():
            if m is not None and of is not None:
                repeats.setdefault(of, []).append((i, m))
    out = {}
    for p in points:
        if p.metrics is not None:
            seen = [(p.id, p.metrics), *repeats.get(p.id, [])]
            out[p.id] = summarise([i for i, _ in seen], [m for _, m in seen], keys)
    return out


def front_member(row: Evaluation, found: Evidence | None) -> FrontMember:
    """A front member as the API shows it: its first evaluation, with the mean over all of the point's evaluations
    as `metrics`."""
    out = EvaluationOut.model_validate(row).model_dump()
    if found is not None:
        out.update(metrics=found.mean, n_evaluations=len(found.ids), evaluation_ids=list(found.ids),
                   metrics_std=found.std, metrics_min=found.low, metrics_max=found.high)
    return FrontMember.model_validate(out)
