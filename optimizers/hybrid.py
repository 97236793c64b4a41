"""Hybrid: MAP's one-hot design and quadratics early, qLogNEHVI on GPs later.

The initial design is MAP's (each expert's one-hot merge, then the job's Sobol points). After it, every ask fits
MAP's quadratics (`mergefront.surrogates.quadratic`) and, with `switch="r2"` (the default), one GP per objective:
while the quadratics' mean held-out R² is at least the GPs', the ask is MAP's (NSGA-II on the quadratics, a spread
of the predicted front); once the GPs predict better, it maximises qLogNEHVI on the GPs (BoTorch's constant prior
mean, learned noise level), against the job's reference point. `switch="design"` goes to the GPs right after the
design. `prior_mean=True` gives the GPs each objective's fitted quadratic (through its warp, scaled and shifted by
marginal likelihood) as prior mean; on the benchmark that did worse than the constant mean (docs/optimizers.md),
so it is not the default.

Like every optimizer here, each ask is a pure function of the history, the in-flight points and the seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from mergefront.optimizers.base import Observation, Optimizer, Point, drop_known, known_points, n_distinct
from mergefront.optimizers.history import (
    SurrogateReport,
    as_points,
    inferred_reference_point,
    top_up,
    training_data,
)
from mergefront.optimizers.map import MAPOptimizer, predicted_front, spread
from mergefront.optimizers.qnehvi import AcquisitionSettings
from mergefront.optimizers.space import SearchSpace
from mergefront.surrogates.quadratic import QuadraticSurrogate

log = logging.getLogger(__name__)

Switch = Literal["r2", "design"]


class HybridOptimizer(Optimizer):
    def __init__(self, space: SearchSpace, n_objectives: int, seed: int, *,
                 value_bounds: Sequence[tuple[float, float] | None] | None = None,
                 ref_point: Sequence[float] | None = None, initial_points: int | None = None,
                 switch: Switch = "r2", prior_mean: bool = False,
                 settings: AcquisitionSettings | None = None) -> None:
        super().__init__(space, n_objectives, seed)
        if ref_point is not None and len(ref_point) != n_objectives:
            raise ValueError(f"ref_point {list(ref_point)} has {len(ref_point)} values for {n_objectives} objectives")
        if switch not in ("r2", "design"):
            raise ValueError(f"switch must be 'r2' or 'design', got {switch!r}")
        self.map = MAPOptimizer(space, n_objectives, seed, value_bounds=value_bounds, initial_points=initial_points)
        self.initial_points = self.map.initial_points
        self.ref_point = None if ref_point is None else np.asarray(ref_point, dtype=float)  # minimised
        self.switch: Switch = switch
        self.prior_mean = prior_mean
        self.settings = settings or AcquisitionSettings()

    averages = False  # the GPs fit every evaluation of a repeated point (the quadratics too: a weighted fit)

    def _ask(self, n: int, history: Sequence[Observation], pending: Sequence[Point]) -> list[Point]:
        d = self.space.dim
        known = known_points(history, pending, d)
        out = drop_known(self.map.initial_design()[n_distinct(known):], known)[:n]  # the design's rows not reached
        train_X, train_Y = training_data(history, d, self.n_objectives)
        seed = int(self._rng(history, pending).integers(2**31))
        if out.shape[0] < n and train_X.shape[0] >= 3:
            quad = QuadraticSurrogate.fit(train_X, train_Y, self.map.warps)
            rest = n - out.shape[0]
            if self.uses_gps(train_X, train_Y, quad):
                in_flight = np.vstack([np.asarray(pending, dtype=float).reshape(len(pending), d), out])
                chosen = self._nehvi(rest, history, quad, in_flight, seed)
            else:
                front = predicted_front(quad, d, seed)
                chosen = spread(front, quad, rest, np.vstack([known, out]), train_X, train_Y)
            out = np.vstack([out, chosen])
        return as_points(top_up(out, n, known, seed))

    def uses_gps(self, train_X: np.ndarray, train_Y: np.ndarray, quad: QuadraticSurrogate) -> bool:
        """Whether this ask maximises qLogNEHVI (True) or takes MAP's step on the quadratics (False)."""
        if self.switch == "design":
            return True
        gp_r2 = _mean(self._gp_r2(train_X, train_Y))
        return gp_r2 > _mean(quad.r2)

    def _gp_r2(self, train_X: np.ndarray, train_Y: np.ndarray) -> list[float]:
        import torch

        from mergefront.surrogates.gp import fit_gp_list, loo_r2

        try:
            model = fit_gp_list(torch.as_tensor(train_X, dtype=torch.double),
                                torch.as_tensor(-train_Y, dtype=torch.double), self.seed)
        except Exception as exc:  # noqa: BLE001  a GP that cannot be fitted does not predict better
            log.warning("hybrid: GP fit for the switch failed (%s); MAP's step instead", exc)
            return []
        return loo_r2(model)

    def reference_point(self, history: Sequence[Observation]) -> np.ndarray:
        """The reference point (`m`, minimised) the acquisition uses at this history."""
        if self.ref_point is not None:
            return self.ref_point
        ref = inferred_reference_point(history, self.initial_points, self.n_objectives)
        if ref is None:
            ref = inferred_reference_point(history, len(history), self.n_objectives)
        assert ref is not None  # at least three completed evaluations exist here
        return ref

    def _nehvi(self, n: int, history: Sequence[Observation], quad: QuadraticSurrogate, pending: np.ndarray,
               seed: int) -> np.ndarray:
        from mergefront.optimizers.nehvi_acquisition import propose
        from mergefront.surrogates.gp import quadratic_prior

        train_X, train_Y = training_data(history, self.space.dim, self.n_objectives)
        priors = [quadratic_prior(f, sign=-1.0) for f in quad.fits] if self.prior_mean else None
        try:
            return propose(train_X, -train_Y, -self.reference_point(history), pending, n, seed, self.settings,
                           priors=priors)
        except (RuntimeError, ValueError) as exc:
            log.warning("hybrid: model-based proposal failed (%s); proposing Sobol points instead", exc)
            return np.empty((0, self.space.dim))

    def surrogate_reports(self, history: Sequence[Observation]) -> list[SurrogateReport]:
        """Held-out R² of the GPs the acquisition uses at this history (empty before three evaluations completed)."""
        import torch

        from mergefront.surrogates.gp import fit_gp_list, loo_r2, quadratic_prior

        train_X, train_Y = training_data(history, self.space.dim, self.n_objectives)
        if train_X.shape[0] < 3:
            return []
        quad = QuadraticSurrogate.fit(train_X, train_Y, self.map.warps)
        priors = [quadratic_prior(f, sign=-1.0) for f in quad.fits] if self.prior_mean else None
        model = fit_gp_list(torch.as_tensor(train_X, dtype=torch.double),
                            torch.as_tensor(-train_Y, dtype=torch.double), self.seed, priors=priors)
        return [SurrogateReport(i, r2, train_X.shape[0]) for i, r2 in enumerate(loo_r2(model))]


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else -math.inf
