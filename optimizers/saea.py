"""Surrogate-assisted NSGA-II, as in MERGE: offspring are pre-screened by a surrogate before any is evaluated.

The population and its offspring come from NSGA-II exactly as in `mergefront.optimizers.nsga2` (rebuilt from the stored
history at every ask), except that each generation breeds `screening_factor` times as many offspring as are
asked for. One GP per objective, fitted to the completed evaluations, predicts every offspring; the `n` kept are
chosen greedily by the hypervolume their optimistic prediction (mean minus one standard deviation) adds to the
evaluated front, so only the most promising are evaluated for real.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from mergefront.optimizers.base import Observation, Point
from mergefront.optimizers.history import SurrogateReport, gp_surrogate_reports, inferred_reference_point, training_data
from mergefront.optimizers.nsga2 import NSGA2Optimizer
from mergefront.optimizers.pareto import hypervolume, nondominated_mask
from mergefront.optimizers.space import SearchSpace

log = logging.getLogger(__name__)

OPTIMISM = 1.0  # the screened value is mean - OPTIMISM * std (minimised)


class SAEAOptimizer(NSGA2Optimizer):
    def __init__(self, space: SearchSpace, n_objectives: int, seed: int, population_size: int | None = None,
                 screening_factor: int = 8) -> None:
        super().__init__(space, n_objectives, seed, population_size)
        if screening_factor < 1:
            raise ValueError(f"screening_factor must be >= 1, got {screening_factor}")
        self.screening_factor = screening_factor

    def surrogate_reports(self, history: Sequence[Observation]) -> list[SurrogateReport]:
        """Every objective's GP's leave-one-out R² at this history (empty before three evaluations completed)."""
        return gp_surrogate_reports(history, self.space.dim, self.n_objectives, self.seed)

    def _offspring(self, n: int, done: Sequence[Observation], known: np.ndarray,
                   history: Sequence[Observation], pending: Sequence[Point]) -> np.ndarray:
        pool = super()._offspring(self.screening_factor * n, done, known, history, pending)  # c x d
        if pool.shape[0] <= n or len(done) < 3:
            return pool[:n]
        seed = int(self._rng(history, pending).integers(2**31))
        try:
            scores = self._optimistic_values(pool, history, seed)  # c x m
        except (RuntimeError, ValueError) as exc:
            log.warning("saea: surrogate screening failed (%s); keeping unscreened offspring", exc)
            return pool[:n]
        _, train_Y = training_data(history, self.space.dim, self.n_objectives)
        ref = inferred_reference_point(history, self.population_size, self.n_objectives)
        if ref is None:
            ref = inferred_reference_point(history, len(history), self.n_objectives)
        assert ref is not None
        return pool[_greedy_hypervolume(scores, train_Y, ref, n)]

    def _optimistic_values(self, pool: np.ndarray, history: Sequence[Observation], seed: int) -> np.ndarray:
        from mergefront.surrogates.gp import GPSurrogate

        train_X, train_Y = training_data(history, self.space.dim, self.n_objectives)
        gp = GPSurrogate.fit(train_X, -train_Y, seed)  # GPs maximise
        mean, std = gp.predict(pool)
        return -mean - OPTIMISM * std  # c x m, minimised


def _greedy_hypervolume(scores: np.ndarray, evaluated: np.ndarray, ref: np.ndarray, n: int) -> list[int]:
    """Indices of `n` rows of `scores` (`c x m`, minimised), each adding the most hypervolume to the front so far.

    Rows that add nothing are ranked by their distance to the front (closest first), so the choice is total.
    """
    minimize = [False] * scores.shape[1]
    front = evaluated[nondominated_mask(evaluated, minimize)] if evaluated.shape[0] else evaluated
    span = np.ptp(np.vstack([scores, front]), axis=0) + 1e-12
    chosen: list[int] = []
    ref_point = [float(v) for v in ref]
    for _ in range(n):
        base = hypervolume(front, ref_point, minimize) if front.shape[0] else 0.0
        gains = np.array([-np.inf if i in chosen else hypervolume(np.vstack([front, row]), ref_point, minimize) - base
                          for i, row in enumerate(scores)])
        if not np.any(gains > 0):
            # distance by which each row misses the front: its smallest worst-coordinate excess over a member
            excess = np.min(np.max((scores[:, None, :] - front[None, :, :]) / span, axis=-1), axis=1)  # c
            gains = np.where(np.isin(np.arange(len(scores)), chosen), -np.inf, -excess)
        best = int(np.argmax(gains))
        chosen.append(best)
        front = np.vstack([front, scores[best]])
    return chosen
