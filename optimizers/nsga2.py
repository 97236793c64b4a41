"""NSGA-II with pymoo's operators, its state rebuilt from the stored history at every ask.

NSGA-II's survival is elitist (mu + lambda): each generation keeps the best `pop_size` of parents and
offspring by non-dominated rank and crowding. So the current population is the best `pop_size` of every
evaluated point, which is what we rebuild from the history; offspring then come from pymoo's binary
tournament, SBX crossover and polynomial mutation, with a generator seeded by the job seed and the history
size. The first `pop_size` points are the job's Sobol sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.core.problem import Problem

from mergefront.optimizers.base import Observation, Optimizer, Point, drop_known, known_points
from mergefront.optimizers.random_search import sobol_points
from mergefront.optimizers.space import SearchSpace

MAX_MATING_ROUNDS = 20


class NSGA2Optimizer(Optimizer):
    def __init__(self, space: SearchSpace, n_objectives: int, seed: int, population_size: int | None = None):
        super().__init__(space, n_objectives, seed)
        self.population_size = population_size or max(8, 2 * space.dim)

    def _ask(self, n: int, history: Sequence[Observation], pending: Sequence[Point]) -> list[Point]:
        known = known_points(history, pending, self.space.dim)
        done = [obs for obs in history if not obs.failed]
        n_initial = max(0, min(n, self.population_size - len(known)))
        if len(done) < 2:
            n_initial = n  # nothing to breed from yet
        out = sobol_points(self.space.dim, self.seed, len(known), n_initial)
        out = drop_known(out, known)
        if out.shape[0] < n:
            offspring = self._offspring(n - out.shape[0], done, np.vstack([known, out]), history, pending)
            out = np.vstack([out, offspring])
        return [tuple(float(v) for v in row) for row in out[:n]]

    def _offspring(self, n: int, done: Sequence[Observation], known: np.ndarray,
                   history: Sequence[Observation], pending: Sequence[Point]) -> np.ndarray:
        problem = Problem(n_var=self.space.dim, n_obj=self.n_objectives, xl=0.0, xu=1.0)
        algorithm = NSGA2(pop_size=self.population_size, eliminate_duplicates=True)
        algorithm.setup(problem, seed=int(self._rng(history, pending).integers(2**31)))
        train_X = np.asarray([obs.x for obs in done], dtype=float)  # n x d
        train_Y = np.asarray([obs.values for obs in done], dtype=float)  # n x m
        pop = Population.new(X=train_X, F=train_Y)
        survivors = algorithm.survival.do(problem, pop, n_survive=min(len(pop), self.population_size),
                                          algorithm=algorithm, random_state=algorithm.random_state)
        out = np.empty((0, self.space.dim))
        for _ in range(MAX_MATING_ROUNDS):
            off = algorithm.mating.do(problem, survivors, n_offsprings=n - out.shape[0], algorithm=algorithm,
                                      random_state=algorithm.random_state)
            fresh = drop_known(np.clip(off.get("X"), 0.0, 1.0), np.vstack([known, out]))
            out = np.vstack([out, fresh])
            if out.shape[0] >= n:
                return out[:n]
        # the population has collapsed onto known points: fill up with fresh random points
        fill = algorithm.random_state.random((n - out.shape[0], self.space.dim))
        return np.vstack([out, drop_known(fill, np.vstack([known, out]))])
