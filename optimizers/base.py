"""The optimizer interface: stateless ask, rebuilt from the stored history plus the seed."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mergefront.optimizers.space import SearchSpace

Point = tuple[float, ...]


@dataclass(frozen=True)
class Observation:
    """One finished evaluation as an optimizer sees it.

    `x` is the unit-cube point (`d`); `values` are the objectives in minimisation form (`m`),
    or None when the evaluation failed.
    """

    x: Point
    values: tuple[float, ...] | None

    @property
    def failed(self) -> bool:
        return self.values is None


class Optimizer(ABC):
    """Proposes candidates in the unit cube.

    Contract:
    - `ask` is a pure function of (history, pending, seed): the optimizer keeps no state between calls, so a
      job resumes after a restart by asking again with the stored history. Calls from several threads are safe.
    - History order is the order evaluations were created; values are minimised.
    - Proposals lie in `[0, 1]^d`, are distinct from each other, from every point in the history and from
      every pending point.
    - Failed evaluations (values None) are never treated as good points, and are not proposed again.
    - Raises ValueError for malformed input (wrong dimensions, n < 1).
    """

    def __init__(self, space: SearchSpace, n_objectives: int, seed: int) -> None:
        if n_objectives < 1:
            raise ValueError(f"n_objectives must be >= 1, got {n_objectives}")
        self.space = space
        self.n_objectives = n_objectives
        self.seed = seed

    def ask(self, n: int, history: Sequence[Observation], pending: Sequence[Point] = ()) -> list[Point]:
        """Propose `n` new points given the finished `history` and the `pending` (in-flight) points."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        for obs in history:
            self._check_point(obs.x)
            if obs.values is not None and len(obs.values) != self.n_objectives:
                raise ValueError(f"observation has {len(obs.values)} values, expected {self.n_objectives}")
        for p in pending:
            self._check_point(p)
        return self._ask(n, history, pending)

    @abstractmethod
    def _ask(self, n: int, history: Sequence[Observation], pending: Sequence[Point]) -> list[Point]: ...

    def _check_point(self, x: Sequence[float]) -> None:
        if len(x) != self.space.dim:
            raise ValueError(f"point {tuple(x)} has {len(x)} coordinates, the space has {self.space.dim}")

    def _rng(self, history: Sequence[Observation], pending: Sequence[Point]) -> np.random.Generator:
        """A generator seeded by the job seed and the size of what is known, so a replay asks the same."""
        return np.random.default_rng([self.seed, len(history), len(pending)])


def known_points(history: Sequence[Observation], pending: Sequence[Point], dim: int) -> np.ndarray:
    """Every point already evaluated or in flight (`k x d`)."""
    rows = [obs.x for obs in history] + [tuple(p) for p in pending]
    return np.asarray(rows, dtype=float).reshape(len(rows), dim)


def drop_known(candidates: np.ndarray, known: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Keep the candidates (`c x d`) that differ from every known point and from each other."""
    kept: list[np.ndarray] = []
    for row in candidates:
        pool = np.vstack([known, *kept])
        if pool.shape[0] == 0 or np.min(np.max(np.abs(pool - row), axis=1)) > tol:
            kept.append(row)
    return np.asarray(kept, dtype=float).reshape(len(kept), candidates.shape[1])
