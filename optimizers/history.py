"""What model-based optimizers read from a history: training data, the inferred reference point, new points."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mergefront.optimizers.base import Observation, Point, drop_known
from mergefront.optimizers.random_search import sobol_points

REFERENCE_MARGIN = 0.1


def training_data(history: Sequence[Observation], dim: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The completed evaluations: `train_X` (`n x d`) and `train_Y` (`n x m`, minimised); failed ones left out."""
    done = [obs for obs in history if obs.values is not None]
    train_X = np.asarray([obs.x for obs in done], dtype=float).reshape(len(done), dim)
    train_Y = np.asarray([obs.values for obs in done], dtype=float).reshape(len(done), m)
    return train_X, train_Y


def inferred_reference_point(history: Sequence[Observation], n_initial: int, m: int) -> np.ndarray | None:
    """A reference point (`m`, minimised) inferred once from the initial design, or None before it is complete.

    It is the nadir of the completed evaluations among the first `n_initial` of the history, moved outwards by
    a tenth of their range. History order is creation order, so the same point comes back at every later ask.
    """
    if len(history) < n_initial:
        return None
    _, Y = training_data(history[:n_initial], _dim(history), m)
    if Y.shape[0] == 0:
        return None
    nadir, ideal = Y.max(axis=0), Y.min(axis=0)
    span = np.where(nadir > ideal, nadir - ideal, np.maximum(np.abs(nadir), 1.0))
    return nadir + REFERENCE_MARGIN * span


def _dim(history: Sequence[Observation]) -> int:
    return len(history[0].x) if history else 0


def as_points(arr: np.ndarray) -> list[Point]:
    """Rows of a `c x d` array as plain tuples, clipped to the unit cube."""
    return [tuple(float(v) for v in row) for row in np.clip(arr, 0.0, 1.0)]


def top_up(candidates: np.ndarray, n: int, known: np.ndarray, seed: int) -> np.ndarray:
    """The first `n` new candidates (`c x d`), topped up with Sobol points when too few are new (`n x d`)."""
    dim = known.shape[1]
    out = drop_known(np.clip(candidates, 0.0, 1.0), known)[:n]
    start = known.shape[0] + 1000  # past the initial design, so these are not points it will propose
    while out.shape[0] < n:
        fill = sobol_points(dim, seed, start, n - out.shape[0])
        start += fill.shape[0]
        out = np.vstack([out, drop_known(fill, np.vstack([known, out]))])
    return out


@dataclass(frozen=True)
class SurrogateReport:
    """How far one objective's surrogate can be trusted: its held-out (leave-one-out) R² on `n_points`."""

    objective: int
    r2: float
    n_points: int


def gp_surrogate_reports(history: Sequence[Observation], dim: int, m: int, seed: int) -> list[SurrogateReport]:
    """Leave-one-out R² of the GPs a GP-based optimizer fits at this history (empty before three completed)."""
    import torch

    from mergefront.surrogates.gp import fit_gp_list, loo_r2

    train_X, train_Y = training_data(history, dim, m)
    if train_X.shape[0] < 3:
        return []
    model = fit_gp_list(torch.as_tensor(train_X, dtype=torch.double), torch.as_tensor(-train_Y, dtype=torch.double),
                        seed)
    return [SurrogateReport(i, r2, train_X.shape[0]) for i, r2 in enumerate(loo_r2(model))]
