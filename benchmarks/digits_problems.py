"""The merge-search problems of the sample-efficiency benchmark, and their dense reference fronts.

Each problem is a job spec on bench://digits (four experts; objectives: the validation accuracy of each task, or
of the first two) whose candidates are evaluated in-process by `CandidateEvaluator`, the code the Ray workers run.
Every optimizer, ours and the peers, goes through the same `DigitsProblem.evaluate`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mergefront.evaluators.evaluation import Candidate, CandidateEvaluator, ObjectiveSetup, WorkerSetup
from mergefront.evaluators.suites import ensure_suite
from mergefront.optimizers import NSGA2Optimizer, Observation, SearchSpace, build_space, hypervolume, nondominated_mask
from mergefront.service.space import merge_config
from mergefront.spec import JobSpec, parse_spec

TASKS = ("rotated", "inverted", "parity", "mod3")
MERGES = {
    "task_arithmetic-4": {"method": "task_arithmetic", "weight": {"low": 0.0, "high": 1.0}, "lambda": 1.0},
    "ties-8": {"method": "ties", "weight": {"low": 0.0, "high": 1.0}, "density": {"low": 0.1, "high": 1.0},
               "lambda": 1.0},
}
GRID_LEVELS = {"task_arithmetic-4": 11, "ties-8": 3}  # per coordinate: 11^4 = 14,641 and 3^8 = 6,561 points
# problem -> (search space, objectives). Every problem merges all four experts; the "-2obj" ones score only the
# suite's first two tasks, to show what the number of objectives does to the hypervolume a budget can reach.
PROBLEMS = {
    "task_arithmetic-4": ("task_arithmetic-4", TASKS),
    "ties-8": ("ties-8", TASKS),
    "task_arithmetic-4-2obj": ("task_arithmetic-4", TASKS[:2]),
    "ties-8-2obj": ("ties-8", TASKS[:2]),
}
LONG_RUN = 3000  # evaluations of the long NSGA-II run that completes each reference front
REFINE_EVALUATIONS = 10_000  # per refinement round: NSGA-II started from the front found so far
REFINE_POPULATION = 200
REFINE_TOLERANCE = 0.005  # rounds go on until one adds less than this fraction of hypervolume
REFINE_ROUNDS = 8


def problem_spec(problem: str, optimizer: dict | None = None) -> JobSpec:
    return parse_spec({
        "name": f"bench-{problem}",
        "models": {"base": "bench://digits/base", "experts": [f"bench://digits/{t}" for t in TASKS]},
        "merge": MERGES[PROBLEMS[problem][0]],
        "objectives": [{"task": t} for t in PROBLEMS[problem][1]],
        "optimizer": optimizer or {"name": "random"},
        "resources": {"device": "cpu"},
    })


@dataclass(frozen=True)
class DigitsProblem:
    name: str
    spec: JobSpec
    space: SearchSpace
    evaluator: CandidateEvaluator

    @property
    def n_objectives(self) -> int:
        return len(self.spec.objectives)

    def evaluate(self, x: Sequence[float]) -> tuple[float, ...]:
        """The accuracies (maximised, one per objective) of the merge at unit-cube point `x` (`d`)."""
        config = merge_config(self.spec, self.space.decode(x), self.space, seed=0)
        metrics = self.evaluator.evaluate(Candidate(0, config)).metrics
        return tuple(metrics[k] for k in self.spec.objective_keys)


def open_problem(problem: str, cache_root: Path) -> DigitsProblem:
    spec = problem_spec(problem)
    suite_dir = ensure_suite("digits", cache_root, verbose=False)
    objectives = tuple(ObjectiveSetup(o.key, o.task, o.split, o.metric_name) for o in spec.objectives)
    evaluator = CandidateEvaluator(WorkerSetup.for_suite("digits", suite_dir, TASKS, objectives, "cpu"))
    return DigitsProblem(problem, spec, build_space(spec.merge, spec.models.experts), evaluator)


def _front(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = nondominated_mask(Y, [True] * Y.shape[1])
    return X[mask], Y[mask]


def _grid(problem: DigitsProblem, levels: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(0.0, 1.0, levels)
    X = np.asarray(list(itertools.product(axis, repeat=problem.space.dim)))  # levels^d x d
    Y = np.asarray([problem.evaluate(x) for x in X])
    return X, Y


def _long_run(problem: DigitsProblem, n: int) -> tuple[np.ndarray, np.ndarray]:
    opt = NSGA2Optimizer(problem.space, problem.n_objectives, seed=12345, population_size=100)
    history: list[Observation] = []
    while len(history) < n:
        for x in opt.ask(100, history):
            history.append(Observation(x, tuple(-v for v in problem.evaluate(x))))
    return np.asarray([o.x for o in history]), -np.asarray([o.values for o in history])


def _refine(problem: DigitsProblem, X: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every point (`n x d`) and accuracies (`n x m`) of an NSGA-II run started from a sample of front `X`."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    seen_X: list[np.ndarray] = []
    seen_Y: list[np.ndarray] = []

    class Accuracies(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=problem.space.dim, n_obj=problem.n_objectives, xl=0.0, xu=1.0)

        def _evaluate(self, x: np.ndarray, out: dict, *args: object, **kwargs: object) -> None:
            Y = np.asarray([problem.evaluate(row) for row in x])
            seen_X.append(x)
            seen_Y.append(Y)
            out["F"] = -Y

    start = np.random.default_rng(seed).choice(len(X), size=min(len(X), REFINE_POPULATION), replace=False)
    minimize(Accuracies(), NSGA2(pop_size=REFINE_POPULATION, sampling=X[start]), ("n_eval", REFINE_EVALUATIONS),
             seed=seed, verbose=False)
    return np.vstack(seen_X), np.vstack(seen_Y)


def reference_front(problem: DigitsProblem, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The dense reference front (`f x d` points, `f x m` accuracies), computed once and kept in `cache_dir`.

    A grid and a long NSGA-II run, then rounds of NSGA-II started from the front so far, until a round adds less
    than `REFINE_TOLERANCE` of its hypervolume.
    """
    path = cache_dir / f"{problem.name}-reference.npz"
    if path.exists():
        data = np.load(path)
        return data["X"], data["Y"]
    start = time.perf_counter()
    gX, gY = _grid(problem, GRID_LEVELS[PROBLEMS[problem.name][0]])
    lX, lY = _long_run(problem, LONG_RUN)
    X, Y = _front(np.vstack([gX, lX]), np.vstack([gY, lY]))
    n_evaluated = len(gX) + len(lX)
    hv = reference_hypervolume(Y)
    print(f"{problem.name}: grid + long run: {len(X)} points, hypervolume {hv:.6f}", flush=True)
    for round_ in range(1, REFINE_ROUNDS + 1):
        rX, rY = _refine(problem, X, seed=round_)
        X, Y = _front(np.vstack([X, rX]), np.vstack([Y, rY]))
        n_evaluated += len(rX)
        gain, hv = reference_hypervolume(Y) / hv - 1.0, reference_hypervolume(Y)
        print(f"{problem.name}: refinement {round_}: {len(X)} points, hypervolume {hv:.6f} (+{gain:.2%})",
              flush=True)
        if gain < REFINE_TOLERANCE:
            break
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, X=X, Y=Y, n_evaluated=n_evaluated, seconds=time.perf_counter() - start)
    print(f"{problem.name}: reference front of {len(X)} points from {n_evaluated} evaluations "
          f"in {time.perf_counter() - start:.0f} s, hypervolume {hv:.6f}")
    return X, Y


def reference_hypervolume(Y: np.ndarray) -> float:
    """Hypervolume of accuracies `Y` (`n x m`) above reference point 0 (the job default for accuracies)."""
    return hypervolume(Y, [0.0] * Y.shape[1], [True] * Y.shape[1])
