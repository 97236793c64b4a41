"""What a job's surrogates say: each parameter's effect on each objective, and the front they predict.

The surrogate is the job's own where its optimizer has one (MAP: one quadratic per objective; qNEHVI and SAEA:
one Gaussian process per objective, read through its posterior mean). A job whose optimizer keeps no model
(NSGA-II, random search) gets the quadratic MAP would fit, fitted for this view only, and says so.

Sensitivity is the main effect of a parameter (a partial-dependence curve): the surrogate's prediction averaged
over scrambled Sobol points of the whole space with that one parameter held at each of `GRID` values across its
range. A parameter's `effect` is the curve's range, in the objective's own units; its `share` is that range over
the sum of every parameter's range. Every objective's held-out (leave-one-out) R² is given beside it: where it
is low, the surrogate does not predict unseen points and its effects mean little.

The predicted front is MAP's: NSGA-II on the quadratic surrogates, as the optimizer runs it at each ask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mergefront.optimizers.space import SearchSpace
from mergefront.spec import JobSpec

GRID = 11  # values along each parameter's range
BASE_POINTS = 128  # Sobol points the other parameters are averaged over
MAX_PREDICTED = 200  # predicted-front points returned (NSGA-II keeps at most its population)
MIN_POINTS = 3  # completed evaluations before any surrogate is fitted

Predict = Callable[[np.ndarray], np.ndarray]  # c x d points in the unit cube -> c x m values, the user's units


@dataclass(frozen=True)
class Surrogate:
    """A fitted surrogate: its kind, whether the optimizer itself uses it, predictions and held-out R²s."""

    kind: str
    own: bool
    predict: Predict
    r2: list[float | None]
    predicted_front: np.ndarray | None  # f x d points of the unit cube (MAP only), else None


@dataclass(frozen=True)
class Effect:
    parameter: str
    effect: float
    share: float
    grid: list[float]  # the parameter's values (its own units)
    curve: list[float]  # the mean prediction at each


def _user_units(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Minimised values (the optimizers' convention: maximised objectives negated) back in the user's units."""
    return values * np.where(np.asarray(maximize), -1.0, 1.0)


def fit_surrogate(spec: JobSpec, space: SearchSpace, train_X: np.ndarray, train_Y: np.ndarray,
                  optimizer_name: str, seed: int, nested: bool = False) -> Surrogate:
    """The job's surrogate fitted on `train_X` (`n x d`, unit cube) and `train_Y` (`n x m`, minimised)."""
    maximize = [o.maximize for o in spec.objectives]
    if optimizer_name in ("qnehvi", "saea"):
        import torch

        from mergefront.surrogates.gp import GPSurrogate, loo_r2

        torch.set_num_threads(1)  # a request of the API: leave the other cores to the runner
        gp = GPSurrogate.fit(train_X, -train_Y, seed)  # the GPs maximise

        def predict_gp(X: np.ndarray) -> np.ndarray:
            return _user_units(-gp.predict(X)[0], maximize)

        return Surrogate("gaussian process", True, predict_gp, [_finite(r) for r in loo_r2(gp.model)], None)

    from mergefront.optimizers.factory import _unit_bounds
    from mergefront.optimizers.map import predicted_front
    from mergefront.surrogates.quadratic import QuadraticSurrogate, Warp

    warps = [Warp() if b is None else Warp(*b) for b in (_unit_bounds(o) for o in spec.objectives)]
    quad = QuadraticSurrogate.fit(train_X, train_Y, warps)

    def predict_quad(X: np.ndarray) -> np.ndarray:
        return _user_units(quad.predict(X), maximize)

    own = optimizer_name == "map"
    front = predicted_front(quad, space.dim, seed) if own and not nested and len(spec.objectives) > 1 else None
    kind = "quadratic" if own else f"quadratic (fitted for this view: {optimizer_name} keeps no surrogate)"
    return Surrogate(kind, own, predict_quad, [_finite(r) for r in quad.r2], front)


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def effects(predict: Predict, space: SearchSpace, seed: int) -> list[list[Effect]]:
    """Per objective, each parameter's main effect (see the module's docstring), largest first."""
    from mergefront.optimizers.random_search import sobol_points

    base = sobol_points(space.dim, seed, 0, BASE_POINTS)  # b x d
    grid = np.linspace(0.0, 1.0, GRID)
    curves = []  # d arrays of GRID x m
    for j in range(space.dim):
        X = np.repeat(base[None, :, :], GRID, axis=0)  # g x b x d
        X[:, :, j] = grid[:, None]
        curves.append(predict(X.reshape(-1, space.dim)).reshape(GRID, BASE_POINTS, -1).mean(axis=1))
    m = curves[0].shape[1] if curves else 0
    out: list[list[Effect]] = []
    for k in range(m):
        ranges = [float(np.ptp(c[:, k])) for c in curves]
        total = sum(ranges)
        rows = [Effect(p.name, r, r / total if total > 0 else 0.0,
                       [float(p.low + g * (p.high - p.low)) for g in grid], [float(v) for v in c[:, k]])
                for p, r, c in zip(space.parameters, ranges, curves, strict=True)]
        out.append(sorted(rows, key=lambda e: -e.effect))
    return out


def predicted_front_values(surrogate: Surrogate, space: SearchSpace) -> tuple[list[list[float]], list[dict]]:
    """The predicted front's objective values (`m` lists) and each point's parameters, at most MAX_PREDICTED."""
    X = surrogate.predicted_front
    if X is None or X.size == 0:
        return [], []
    X = np.clip(X[:MAX_PREDICTED], 0.0, 1.0)
    values = surrogate.predict(X)  # f x m
    return [[float(v) for v in values[:, k]] for k in range(values.shape[1])], [space.decode(x) for x in X]
