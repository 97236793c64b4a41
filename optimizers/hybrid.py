"""Hybrid: MAP's one-hot design and quadratics early, qLogNEHVI on GPs later.

The initial design is MAP's (each expert's one-hot merge, then the job's Sobol points). After it, every ask fits
MAP's quadratics (`mergefront.surrogates.quadratic`) and, with `switch="r2"` (the default), one GP per objective:
while the quadratics' mean held-out R² is at least the GPs', the ask is MAP's (NSGA-II on the quadratics, a spread
of the predicted front); once the GPs predict better, it maximises qLogNEHVI on the GPs (BoTorch's constant prior
mean, learned noise level), against the job's reference point. `switch="design"` goes to the GPs right after the
design. `prior_mean=True` gives the GPs each objective's fitted quadratic (through its warp, scaled and shifted by
marginal likelihood) as prior mean; on the benchmark that did worse than the constant mean (docs/optimizers.md),
so it is not the default.

`refine` (a share of the points after the design, default 0) takes that share of every ask's model-based points
from small boxes (`mergefront.optimizers.refinement`): by default a cube of half-width `refine_radius` (in the unit
cube, clipped to it) around an end of the evaluated front (the point best on one objective: an expert's corner
early on, a shoulder of the front later), the ends taken in turn, each candidate the qLogNEHVI maximiser inside its
box. `refine_anchors="gaps"` (or `"both"`, alternating with the ends) spans the boxes across the front's largest
gaps instead; `refine_means` picks the anchors on the GPs' posterior means (a noisy objective's lucky draw is no
end of the front); `refine_adaptive` shrinks an end's box with the points already evaluated in it; `refine_until`
stops refining once that many points are known. What the
benchmark showed for each, and what `auto` sets: docs/optimizers.md.

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
from mergefront.optimizers.refinement import ANCHORS, Anchors, cube, front_ends, refinement_boxes
from mergefront.optimizers.space import SearchSpace
from mergefront.surrogates.quadratic import QuadraticSurrogate

log = logging.getLogger(__name__)

Switch = Literal["r2", "design"]
REFINE_RADIUS = 0.1  # half-width of a refinement's box, in the unit cube


class HybridOptimizer(Optimizer):
    def __init__(self, space: SearchSpace, n_objectives: int, seed: int, *,
                 value_bounds: Sequence[tuple[float, float] | None] | None = None,
                 ref_point: Sequence[float] | None = None, initial_points: int | None = None,
                 switch: Switch = "r2", prior_mean: bool = False, refine: float = 0.0,
                 refine_radius: float = REFINE_RADIUS, refine_anchors: Anchors = "ends", refine_means: bool = False,
                 refine_adaptive: bool = False, refine_until: int | None = None,
                 settings: AcquisitionSettings | None = None) -> None:
        super().__init__(space, n_objectives, seed)
        if ref_point is not None and len(ref_point) != n_objectives:
            raise ValueError(f"ref_point {list(ref_point)} has {len(ref_point)} values for {n_objectives} objectives")
        if switch not in ("r2", "design"):
            raise ValueError(f"switch must be 'r2' or 'design', got {switch!r}")
        if not 0.0 <= refine <= 1.0:  # also false for NaN
            raise ValueError(f"refine must be a share between 0 and 1, got {refine}")
        if not 0.0 < refine_radius <= 0.5:
            raise ValueError(f"refine_radius must be above 0 and at most 0.5 (half the unit cube), got {refine_radius}")
        if refine_until is not None and refine_until < 1:
            raise ValueError(f"refine_until must be an evaluation count of at least 1, got {refine_until}")
        if refine_anchors not in ANCHORS:
            raise ValueError(f"refine_anchors must be one of {', '.join(ANCHORS)}, got {refine_anchors!r}")
        self.map = MAPOptimizer(space, n_objectives, seed, value_bounds=value_bounds, initial_points=initial_points)
        self.initial_points = self.map.initial_points
        self.ref_point = None if ref_point is None else np.asarray(ref_point, dtype=float)  # minimised
        self.switch: Switch = switch
        self.prior_mean = prior_mean
        self.refine, self.refine_radius = refine, refine_radius
        self.refine_anchors: Anchors = refine_anchors
        self.refine_means, self.refine_adaptive = refine_means, refine_adaptive
        self.refine_until = refine_until  # no refinement once this many points are known (None: the whole run)
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
            after = max(0, n_distinct(known) + out.shape[0] - self.initial_points)  # points past the design
            rest = n - out.shape[0]
            local = self.refinements_due(after, rest)
            if rest == local:
                chosen = np.empty((0, d))
            elif self.uses_gps(train_X, train_Y, quad):
                in_flight = np.vstack([np.asarray(pending, dtype=float).reshape(len(pending), d), out])
                chosen = self._nehvi(rest - local, history, quad, in_flight, seed)
            else:
                front = predicted_front(quad, d, seed)
                chosen = spread(front, quad, rest - local, np.vstack([known, out]), train_X, train_Y)
            out = np.vstack([out, chosen])
            if local:
                in_flight = np.vstack([np.asarray(pending, dtype=float).reshape(len(pending), d), out])
                first = math.floor(self.refine * after + 1e-9)  # refinements made so far: the anchors go in turn
                out = np.vstack([out, self.refined(local, first, history, quad, in_flight, seed)])
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

    def refinements_due(self, after: int, n: int) -> int:
        """How many of `n` new points, asked when `after` points past the design are known, refine locally: the
        share `refine` of the points past the design, counted over the whole run (one in four at 0.25), up to the
        `refine_until`-th point of the run."""
        if self.refine == 0.0:
            return 0
        end = after + n
        if self.refine_until is not None:
            cap = max(0, self.refine_until - self.initial_points)
            after, end = min(after, cap), min(end, cap)
        return math.floor(self.refine * end + 1e-9) - math.floor(self.refine * after + 1e-9)

    def anchors(self, train_X: np.ndarray, train_Y: np.ndarray) -> np.ndarray:
        """The ends of the evaluated front (`a x d`, a <= m): per objective the point best on it."""
        return front_ends(train_X, train_Y)

    def box(self, anchor: np.ndarray) -> np.ndarray:
        """The `2 x d` trust region around `anchor`: a cube of half-width `refine_radius`, clipped to the unit cube."""
        return cube(anchor, self.refine_radius)

    def anchor_values(self, train_X: np.ndarray, train_Y: np.ndarray, seed: int) -> np.ndarray:
        """The values (`n x m`, minimised) the refinements' anchors are chosen on: the evaluations, or with
        `refine_means` the GPs' posterior means at the evaluated points, so one lucky draw of a noisy objective
        does not become an anchor (the evaluations where the GPs cannot be fitted)."""
        if not self.refine_means:
            return train_Y
        from mergefront.surrogates.gp import GPSurrogate

        try:
            mean, _ = GPSurrogate.fit(train_X, -train_Y, seed).predict(train_X)  # n x m, maximised
        except Exception as exc:  # noqa: BLE001  the evaluations themselves are still anchors
            log.warning("hybrid: GP fit for the refinements' anchors failed (%s); the evaluations instead", exc)
            return train_Y
        return -mean

    def refined(self, n: int, first: int, history: Sequence[Observation], quad: QuadraticSurrogate,
                pending: np.ndarray, seed: int) -> np.ndarray:
        """`n` candidates (`n x d`), each the qLogNEHVI maximiser inside the box of refinement `first + j`
        (`refinement_boxes`); a point drawn uniformly in its box where the GPs cannot be fitted."""
        train_X, train_Y = training_data(history, self.space.dim, self.n_objectives)
        values = self.anchor_values(train_X, train_Y, seed)
        boxes = refinement_boxes(train_X, values, n, first, self.refine_anchors, self.refine_radius,
                                 self.refine_adaptive)
        out = np.empty((0, self.space.dim))
        for j, box in enumerate(boxes):
            chosen = self._nehvi(1, history, quad, np.vstack([pending, out]), seed + 1 + j, box=box)
            if chosen.shape[0] == 0:
                rng = np.random.default_rng([seed, j])
                chosen = box[0] + rng.random((1, self.space.dim)) * (box[1] - box[0])
            out = np.vstack([out, np.clip(chosen[:1], box[0], box[1])])
        return out

    def maximised_bounds(self) -> list[tuple[float, float] | None]:
        """Per objective, the interval its values lie in, in BoTorch's maximisation form (None where unknown)."""
        return [None if w.low is None or w.high is None else (-w.high, -w.low) for w in self.map.warps]

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
               seed: int, box: np.ndarray | None = None) -> np.ndarray:
        from mergefront.optimizers.nehvi_acquisition import propose
        from mergefront.surrogates.gp import quadratic_prior

        train_X, train_Y = training_data(history, self.space.dim, self.n_objectives)
        priors = [quadratic_prior(f, sign=-1.0) for f in quad.fits] if self.prior_mean else None
        try:
            return propose(train_X, -train_Y, -self.reference_point(history), pending, n, seed, self.settings,
                           priors=priors, box=box, value_bounds=self.maximised_bounds())
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
