"""From a front to a decision: constraints and a preference rank a job's front members and pick one.

Constraints are filters on objectives or parameters (`parity_accuracy >= 0.8`); a member that breaks one is out.
The preference is a weight per objective (MAP's preference vector): each objective is scaled over the feasible
members to [0, 1] (1 its best value there, 0 its worst; an objective with one value scores 1), and a member's
score is the weighted mean of its scaled values. The highest score is recommended; equal scores go to the member
evaluated first (the lowest evaluation number), and the ranking says how many tie.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mergefront.errors import InvalidSpecError
from mergefront.schemas import EvaluationOut
from mergefront.service.columns import OPS, ColumnFilter, resolve_column, typed_name

TIE_RULE = "equal scores go to the member evaluated first (lowest evaluation number)"


@dataclass(frozen=True)
class Ranking:
    """Feasible front members, best first, with their scores; `tied`: how many share the top score."""

    members: list[EvaluationOut]
    scores: list[float]
    weights: list[float]
    n_front: int
    tied: int


def parse_weights(objectives: Sequence[str], given: Mapping[str, float]) -> list[float]:
    """One weight per objective (1 where not given); names as typed, each finite and >= 0, not all 0."""
    columns = [f"metrics.{k}" for k in objectives]
    weights = dict.fromkeys(objectives, 1.0)
    for name, value in given.items():
        key = typed_name(resolve_column(columns=columns, name=name, loc="weight"))
        if not (math.isfinite(value) and value >= 0):
            raise InvalidSpecError(f"the weight of {key} must be a finite number >= 0, not {value}", ("weight",))
        weights[key] = float(value)
    if not any(weights.values()):
        raise InvalidSpecError("at least one weight must be above 0", ("weight",))
    return [weights[k] for k in objectives]


def _value(row: EvaluationOut, column: str) -> float | None:
    source = row.metrics or {} if column.startswith("metrics.") else row.params
    value = source.get(typed_name(column))
    return None if value is None else float(value)


def feasible(members: Sequence[EvaluationOut], constraints: Sequence[ColumnFilter],
             columns: Sequence[str]) -> list[EvaluationOut]:
    """The members that meet every constraint (columns: the objectives' and parameters' full names)."""
    checks = [(resolve_column(columns=columns, name=c.column, loc="constraint"), OPS[c.op], c.value)
              for c in constraints]
    out = []
    for row in members:
        values = [(_value(row, column), op, bound) for column, op, bound in checks]
        if all(v is not None and op(v, bound) for v, op, bound in values):
            out.append(row)
    return out


def rank(members: Sequence[EvaluationOut], *, objectives: Sequence[str], maximize: Sequence[bool],
         constraints: Sequence[ColumnFilter] = (), weights: Mapping[str, float] | None = None) -> Ranking:
    """Rank front `members` by the weighted mean of their scaled objectives, among those meeting `constraints`."""
    w = parse_weights(objectives, weights or {})
    params = sorted({k for m in members for k in m.params})
    columns = [*(f"metrics.{k}" for k in objectives), *(f"params.{k}" for k in params)]
    kept = feasible(members, constraints, columns)
    scaled = []  # per member, per objective in [0, 1], 1 = best
    for key, up in zip(objectives, maximize, strict=True):
        values = [float((m.metrics or {})[key]) for m in kept]
        lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
        scaled.append([1.0 if hi == lo else ((v - lo) if up else (hi - v)) / (hi - lo) for v in values])
    scores = [sum(w[k] * scaled[k][i] for k in range(len(objectives))) / sum(w) for i in range(len(kept))]
    order = sorted(range(len(kept)), key=lambda i: (-scores[i], kept[i].number))
    top = scores[order[0]] if order else 0.0
    tied = sum(1 for s in scores if math.isclose(s, top, rel_tol=0, abs_tol=1e-12))
    return Ranking([kept[i] for i in order], [scores[i] for i in order], w, len(members), tied)
