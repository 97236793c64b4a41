"""The optimizer interface: stateless ask, rebuilt from the stored history plus the seed."""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

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
    - A point may be in the history more than once (evaluated again with a new mask seed, see
      `mergefront.optimizers.repeats`): optimizers with `averages` set see one observation per point, the mean
      of its completed evaluations (and no pending repeat of it); the others (GP-based: they learn the noise
      level from the repeats) see every observation.
    - Raises ValueError for malformed input (wrong dimensions, n < 1).
    """

    averages = True  # see each repeated point once, with its mean values

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
        if isinstance(history, History):  # checked one observation at a time as it grew
            if (history.dim, history.n_objectives) != (self.space.dim, self.n_objectives):
                raise ValueError(f"history of {history.dim} coordinates and {history.n_objectives} objectives, "
                                 f"expected {self.space.dim} and {self.n_objectives}")
        else:
            for obs in history:
                self._check_point(obs.x)
                if obs.values is not None and len(obs.values) != self.n_objectives:
                    raise ValueError(f"observation has {len(obs.values)} values, expected {self.n_objectives}")
        for p in pending:
            self._check_point(p)
        if self.averages:
            history, pending = averaged(history), new_points(history, pending)
        return self._ask(n, history, pending)

    @abstractmethod
    def _ask(self, n: int, history: Sequence[Observation], pending: Sequence[Point]) -> list[Point]: ...

    def _check_point(self, x: Sequence[float]) -> None:
        if len(x) != self.space.dim:
            raise ValueError(f"point {tuple(x)} has {len(x)} coordinates, the space has {self.space.dim}")

    def _rng(self, history: Sequence[Observation], pending: Sequence[Point]) -> np.random.Generator:
        """A generator seeded by the job seed and the size of what is known, so a replay asks the same."""
        return np.random.default_rng([self.seed, len(history), len(pending)])


class History(Sequence[Observation]):
    """Finished evaluations in creation order, grown one at a time by whoever keeps a job in memory (the runner,
    the ask/tell server), each checked once as it is added; their points are kept in one array as they come, so
    an ask does not convert the whole history again."""

    def __init__(self, dim: int, n_objectives: int) -> None:
        self.dim, self.n_objectives = dim, n_objectives
        self._keys: list[int] = []
        self._items: list[Observation] = []
        self._points = np.empty((64, dim))
        self._first: dict[Point, int] = {}  # each point's first key

    @property
    def repeats(self) -> int:
        """How many observations are of a point already in the history before them (evaluated again)."""
        return len(self._items) - len(self._first)

    def first(self, x: Point) -> int | None:
        """The key of point `x`'s first observation, or None when the history does not hold it."""
        return self._first.get(tuple(x))

    def __contains__(self, x: object) -> bool:
        """Whether the history holds point `x` (a tuple)."""
        return isinstance(x, tuple) and x in self._first

    def add(self, key: int, obs: Observation) -> None:
        """Add an observation; `key` (the evaluation's number) orders the history."""
        if len(obs.x) != self.dim:
            raise ValueError(f"point {tuple(obs.x)} has {len(obs.x)} coordinates, the space has {self.dim}")
        if obs.values is not None and len(obs.values) != self.n_objectives:
            raise ValueError(f"observation has {len(obs.values)} values, expected {self.n_objectives}")
        at = bisect.bisect(self._keys, key)
        self._keys.insert(at, key)
        self._items.insert(at, obs)
        n = len(self._items) - 1
        if n == self._points.shape[0]:
            self._points = np.concatenate([self._points, np.empty_like(self._points)])
        self._points[n] = obs.x
        self._first[tuple(obs.x)] = min(key, self._first.get(tuple(obs.x), key))

    def points(self) -> np.ndarray:
        """Every observation's point (`n x d`), in the order they were added."""
        return self._points[:len(self._items)]

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, i: int) -> Observation: ...

    @overload
    def __getitem__(self, i: slice) -> list[Observation]: ...

    def __getitem__(self, i: int | slice) -> Observation | list[Observation]:
        return self._items[i]

    def __iter__(self) -> Iterator[Observation]:
        return iter(self._items)


def averaged(history: Sequence[Observation]) -> Sequence[Observation]:
    """One observation per point, in the order the points first came: the mean of its completed evaluations, or
    a failed one when none completed. The history itself when no point is in it twice."""
    if isinstance(history, History) and history.repeats == 0:
        return history
    values: dict[Point, list[tuple[float, ...]]] = {}
    for obs in history:
        done = values.setdefault(tuple(obs.x), [])
        if obs.values is not None:
            done.append(obs.values)
    if len(values) == len(history):
        return history
    return [Observation(x, tuple(float(v) for v in np.mean(done, axis=0)) if done else None)
            for x, done in values.items()]


def new_points(history: Sequence[Observation], pending: Sequence[Point]) -> list[Point]:
    """The pending points that are not in the history (nor earlier in `pending`): in-flight repeats left out."""
    seen: History | set[Point] = history if isinstance(history, History) else {tuple(o.x) for o in history}
    out: list[Point] = []
    for p in pending:
        if tuple(p) not in seen and tuple(p) not in out:
            out.append(tuple(p))
    return out


def n_distinct(known: np.ndarray) -> int:
    """How many different points (rows) `known` (`k x d`) holds."""
    return int(np.unique(known, axis=0).shape[0]) if known.shape[0] > 1 else known.shape[0]


def known_points(history: Sequence[Observation], pending: Sequence[Point], dim: int) -> np.ndarray:
    """Every point already evaluated or in flight (`k x d`)."""
    waiting = np.asarray([tuple(p) for p in pending], dtype=float).reshape(len(pending), dim)
    if isinstance(history, History):
        return np.concatenate([history.points(), waiting])
    rows = [obs.x for obs in history]
    return np.concatenate([np.asarray(rows, dtype=float).reshape(len(rows), dim), waiting])


def drop_known(candidates: np.ndarray, known: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Keep the candidates (`c x d`) that differ from every known point and from each other."""
    kept: list[np.ndarray] = []
    for row in candidates:
        near = known[np.abs(known[:, 0] - row[0]) <= tol] if known.shape[0] and known.shape[1] else known
        pool = np.vstack([near, *kept]) if kept else near  # only the known points close in the first coordinate
        if pool.shape[0] == 0 or np.min(np.max(np.abs(pool - row), axis=1)) > tol:
            kept.append(row)
    return np.asarray(kept, dtype=float).reshape(len(kept), candidates.shape[1])
