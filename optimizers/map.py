"""MAP: quadratic surrogates of every objective, NSGA-II on the surrogates, a spread of the predicted front.

The initial design is the one-hot points (each expert's weight at its top, the other weights at their bottom,
every other coordinate at its top: TIES keeps the whole task vector) followed by the job's Sobol points. After
it, each ask fits one quadratic per objective (`mergefront.surrogates.quadratic`), finds the predicted Pareto front with
NSGA-II on the surrogates, and proposes the predicted-front points farthest (in predicted objective space) from
what is already evaluated or in flight. Bayesian MAP (`bayesian=True`) weights that spread by the surrogates'
held-out error near each candidate, so new points go where the surrogates are least trustworthy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem
from pymoo.optimize import minimize

from mergefront.optimizers.base import Observation, Optimizer, Point, drop_known, known_points
from mergefront.optimizers.history import SurrogateReport, as_points, top_up, training_data
from mergefront.optimizers.random_search import sobol_points
from mergefront.optimizers.space import SearchSpace
from mergefront.surrogates.quadratic import QuadraticSurrogate, Warp

SURROGATE_POPULATION = 64
SURROGATE_GENERATIONS = 60


class _SurrogateProblem(Problem):
    def __init__(self, surrogate: QuadraticSurrogate, dim: int) -> None:
        super().__init__(n_var=dim, n_obj=len(surrogate.fits), xl=0.0, xu=1.0)
        self.surrogate = surrogate

    def _evaluate(self, x: np.ndarray, out: dict, *args: object, **kwargs: object) -> None:
        out["F"] = self.surrogate.predict(x)  # pop x m, minimised


def one_hot_points(space: SearchSpace) -> np.ndarray:
    """`k x d`: per expert, its weights at the top, the other weights at the bottom, other coordinates at the top.

    Weights are the parameters of kind `weight` (every group of one expert moves together); a space with none
    (a plain box) treats each coordinate as one expert's weight.
    """
    experts = sorted({p.expert for p in space.parameters if p.kind == "weight" and p.expert is not None})
    if not experts:
        return np.eye(space.dim)
    out = np.ones((len(experts), space.dim))
    for row, expert in enumerate(experts):
        for col, p in enumerate(space.parameters):
            if p.kind == "weight":
                out[row, col] = 1.0 if p.expert == expert else 0.0
    return out


class MAPOptimizer(Optimizer):
    def __init__(self, space: SearchSpace, n_objectives: int, seed: int, *,
                 value_bounds: Sequence[tuple[float, float] | None] | None = None,
                 initial_points: int | None = None, bayesian: bool = False) -> None:
        super().__init__(space, n_objectives, seed)
        bounds = list(value_bounds) if value_bounds is not None else [None] * n_objectives
        if len(bounds) != n_objectives:
            raise ValueError(f"value_bounds has {len(bounds)} entries for {n_objectives} objectives")
        self.warps = tuple(Warp() if b is None else Warp(*b) for b in bounds)
        n_hot = one_hot_points(space).shape[0]
        self.initial_points = max(initial_points or n_hot + space.dim, n_hot)
        self.bayesian = bayesian

    def initial_design(self) -> np.ndarray:
        """The one-hot points, then Sobol points up to `initial_points` (`n_init x d`)."""
        hot = one_hot_points(self.space)
        return np.vstack([hot, sobol_points(self.space.dim, self.seed, 0, self.initial_points - hot.shape[0])])

    def _ask(self, n: int, history: Sequence[Observation], pending: Sequence[Point]) -> list[Point]:
        known = known_points(history, pending, self.space.dim)
        out = drop_known(self.initial_design()[len(known):], known)[:n]  # the design's rows not yet reached
        train_X, train_Y = training_data(history, self.space.dim, self.n_objectives)
        seed = int(self._rng(history, pending).integers(2**31))
        if out.shape[0] < n and train_X.shape[0] >= 3:
            surrogate = QuadraticSurrogate.fit(train_X, train_Y, self.warps)
            front = predicted_front(surrogate, self.space.dim, seed)
            chosen = spread(front, surrogate, n - out.shape[0], np.vstack([known, out]), train_X, train_Y,
                            self.bayesian)
            out = np.vstack([out, chosen])
        return as_points(top_up(out, n, known, seed))

    def surrogate_reports(self, history: Sequence[Observation]) -> list[SurrogateReport]:
        """Every objective's held-out R² at this history (empty before three evaluations completed)."""
        train_X, train_Y = training_data(history, self.space.dim, self.n_objectives)
        if train_X.shape[0] < 3:
            return []
        surrogate = QuadraticSurrogate.fit(train_X, train_Y, self.warps)
        return [SurrogateReport(i, r2, train_X.shape[0]) for i, r2 in enumerate(surrogate.r2)]



def predicted_front(surrogate: QuadraticSurrogate, dim: int, seed: int) -> np.ndarray:
    """The points (`f x dim`, unit cube) NSGA-II finds non-dominated on the surrogates."""
    algorithm = NSGA2(pop_size=SURROGATE_POPULATION, eliminate_duplicates=True)
    result = minimize(_SurrogateProblem(surrogate, dim), algorithm, ("n_gen", SURROGATE_GENERATIONS), seed=seed,
                      verbose=False)
    return np.atleast_2d(np.asarray(result.X, dtype=float))


def spread(front: np.ndarray, surrogate: QuadraticSurrogate, n: int, known: np.ndarray, train_X: np.ndarray,
           train_Y: np.ndarray, bayesian: bool = False) -> np.ndarray:
    """Greedily the `n` front points farthest from what is known, in scaled predicted objective space.

    With `bayesian`, each point's distance is weighted by the surrogates' held-out error near it.
    """
    front = drop_known(np.clip(front, 0.0, 1.0), known)
    if front.shape[0] == 0:
        return front
    pred = surrogate.predict(front)  # f x m
    taken = surrogate.predict(known)  # k x m
    scale = np.ptp(np.vstack([pred, taken]), axis=0) + 1e-12
    weight = _error_near(front, surrogate, train_X, train_Y) if bayesian else np.ones(len(front))
    chosen: list[int] = []
    for _ in range(min(n, front.shape[0])):
        dist = np.min(np.max(np.abs(pred[:, None, :] - taken[None, :, :]) / scale, axis=-1), axis=1)  # f
        score = dist * weight
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        taken = np.vstack([taken, pred[best]])
    return front[chosen]


def _error_near(front: np.ndarray, surrogate: QuadraticSurrogate, train_X: np.ndarray,
                train_Y: np.ndarray) -> np.ndarray:
    """Kernel-weighted held-out squared error (`f`) of the surrogates near each front point."""
    errors = surrogate.loo_errors(train_X, train_Y)  # n x m
    errors = (errors / (errors.mean(axis=0) + 1e-12)).sum(axis=1)  # n, objectives on an equal footing
    dist = np.linalg.norm(front[:, None, :] - train_X[None, :, :], axis=-1)  # f x n
    bandwidth = np.median(dist) + 1e-12
    kernel = np.exp(-0.5 * (dist / bandwidth) ** 2)
    return (kernel @ errors) / (kernel.sum(axis=1) + 1e-12) + 1e-6
