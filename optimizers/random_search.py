"""Random search along one scrambled Sobol sequence (space-filling, reproducible from the seed)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence

import numpy as np
from scipy.stats import qmc

from mergefront.optimizers.base import Observation, Optimizer, Point, drop_known, known_points

_ENGINES: dict[tuple[int, int], qmc.Sobol] = {}  # by (dim, seed): the last engine used, where it stopped
_ENGINES_LOCK = threading.Lock()


def sobol_points(dim: int, seed: int, start: int, n: int) -> np.ndarray:
    """Points `start .. start+n-1` (`n x d`) of the scrambled Sobol sequence of this seed.

    The engine of the last call of this (dim, seed) goes on from where it stopped, so a job asking for its next
    points does not step through the whole sequence again (the same points either way).
    """
    with _ENGINES_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balance warning for n not a power of two
        engine = _ENGINES.get((dim, seed))
        if engine is None or engine.num_generated > start:
            if len(_ENGINES) >= 256:
                _ENGINES.clear()
            engine = _ENGINES[(dim, seed)] = qmc.Sobol(d=dim, scramble=True, seed=seed)
        if start > engine.num_generated:
            engine.fast_forward(start - engine.num_generated)
        return engine.random(n)


class SobolSearch(Optimizer):
    """Proposes the next points of the job's Sobol sequence, skipping any already known."""

    def _ask(self, n: int, history: Sequence[Observation], pending: Sequence[Point]) -> list[Point]:
        known = known_points(history, pending, self.space.dim)
        start = len(known)
        out = np.empty((0, self.space.dim))
        while out.shape[0] < n:
            batch = sobol_points(self.space.dim, self.seed, start, n - out.shape[0])
            start += batch.shape[0]
            out = np.vstack([out, drop_known(batch, np.vstack([known, out]))])
        return [tuple(float(v) for v in row) for row in out]
