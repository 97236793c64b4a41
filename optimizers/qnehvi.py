"""qLogNEHVI: BoTorch's log noisy expected hypervolume improvement on one GP per objective.

The first `initial_points` proposals are the job's Sobol sequence (space-filling). After that every ask fits
one GP per objective to the completed evaluations (unit-cube inputs, standardised outputs) and maximises
`qLogNoisyExpectedHypervolumeImprovement`, with the in-flight candidates passed as pending points so that
asynchronous batches do not repeat each other. The reference point is the one given (a job passes its own: the
spec's values, else each metric's known worst value, so the acquisition improves the hypervolume the job reports),
or inferred once from the initial design (its nadir, moved out by a tenth of the range) and fixed from then on.
Above four objectives the box partitioning is approximate (BoTorch's default `alpha`).

Two options follow MM-MO: `weak_to_strong` crosses every candidate with a differential-evolution mutant of
the best evaluated configurations and keeps whichever the acquisition prefers; `uncertainty_screening`
optimises twice as many candidates and keeps those the GPs are least certain about.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mergefront.optimizers.base import Observation, Optimizer, Point, drop_known, known_points, n_distinct
from mergefront.optimizers.history import (
    SurrogateReport,
    as_points,
    gp_surrogate_reports,
    inferred_reference_point,
    top_up,
    training_data,
)
from mergefront.optimizers.random_search import sobol_points
from mergefront.optimizers.space import SearchSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcquisitionSettings:
    """How hard each ask works (Monte-Carlo samples, optimiser restarts and raw samples, L-BFGS-B iterations) and
    what the GPs fit: `outcome_warp="logit"` fits each GP to the logit of an objective known to lie in an interval
    (accuracies), the acquisition still on the objective's own scale (`nehvi_acquisition.OutcomeWarp`)."""

    mc_samples: int = 64
    num_restarts: int = 4
    raw_samples: int = 128
    maxiter: int = 50
    outcome_warp: str = "none"


class QNEHVIOptimizer(Optimizer):
    def __init__(self, space: SearchSpace, n_objectives: int, seed: int, *,
                 ref_point: Sequence[float] | None = None, initial_points: int | None = None,
                 weak_to_strong: bool = False, uncertainty_screening: bool = False,
                 settings: AcquisitionSettings | None = None) -> None:
        super().__init__(space, n_objectives, seed)
        if ref_point is not None and len(ref_point) != n_objectives:
            raise ValueError(f"ref_point {list(ref_point)} has {len(ref_point)} values for {n_objectives} objectives")
        self.ref_point = None if ref_point is None else np.asarray(ref_point, dtype=float)  # minimised
        self.initial_points = initial_points or max(5, space.dim + 1)
        self.weak_to_strong = weak_to_strong
        self.uncertainty_screening = uncertainty_screening
        self.settings = settings or AcquisitionSettings()

    averages = False  # the GPs fit every evaluation of a repeated point: that is how they learn the noise level

    def _ask(self, n: int, history: Sequence[Observation], pending: Sequence[Point]) -> list[Point]:
        d = self.space.dim
        known = known_points(history, pending, d)
        train_X, train_Y = training_data(history, d, self.n_objectives)
        reached = n_distinct(known)  # repeats of a point are not design points
        n_sobol = n if train_X.shape[0] < 2 else max(0, min(n, self.initial_points - reached))
        out = drop_known(sobol_points(d, self.seed, reached, n_sobol), known)
        if out.shape[0] < n:
            seed = int(self._rng(history, pending).integers(2**31))
            in_flight = np.vstack([np.asarray(pending, dtype=float).reshape(len(pending), d), out])  # k x d
            model_based = self._model_based(n - out.shape[0], history, in_flight, seed)
            out = np.vstack([out, top_up(model_based, n - out.shape[0], np.vstack([known, out]), seed)])
        return as_points(out)

    def surrogate_reports(self, history: Sequence[Observation]) -> list[SurrogateReport]:
        """Every objective's GP's leave-one-out R² at this history (empty before three evaluations completed)."""
        return gp_surrogate_reports(history, self.space.dim, self.n_objectives, self.seed)

    def reference_point(self, history: Sequence[Observation]) -> np.ndarray:
        """The reference point (`m`, minimised) the acquisition uses at this history."""
        if self.ref_point is not None:
            return self.ref_point
        ref = inferred_reference_point(history, self.initial_points, self.n_objectives)
        if ref is None:  # asked before the initial design completed: infer from what is done so far
            ref = inferred_reference_point(history, len(history), self.n_objectives)
        assert ref is not None  # at least two completed evaluations exist here
        return ref

    def _model_based(self, n: int, history: Sequence[Observation], pending: np.ndarray, seed: int) -> np.ndarray:
        from mergefront.optimizers.nehvi_acquisition import propose

        train_X, train_Y = training_data(history, self.space.dim, self.n_objectives)
        try:
            return propose(
                train_X, -train_Y, -self.reference_point(history), pending, n, seed, self.settings,
                weak_to_strong=self.weak_to_strong, uncertainty_screening=self.uncertainty_screening,
            )
        except (RuntimeError, ValueError) as exc:  # a GP that cannot be fitted: fall back to space-filling points
            log.warning("qnehvi: model-based proposal failed (%s); proposing Sobol points instead", exc)
            return np.empty((0, self.space.dim))
