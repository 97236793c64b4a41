"""The merge-search problems of the sample-efficiency benchmark, and their dense reference fronts.

Each problem is a job spec on a built-in suite (four experts merged; objectives: one metric of each of the first
tasks) whose candidates are evaluated in-process by `CandidateEvaluator`, the code the Ray workers run, over the
space `job_space` builds for the job. Every optimizer, ours and the peers, goes through the same `Problem.observe`.

Noisy problems merge with random masks (DARE). As in a job, evaluation `number` of a run with seed `s` draws its
masks from `candidate_seed` (s x 100,003 + number), so an optimizer sees one draw per candidate. What a run found
is scored on the truth instead: the mean over `truth_seeds` fixed mask seeds, the same for every run and for the
reference front.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mergefront.evaluators.evaluation import Candidate, CandidateEvaluator, ObjectiveSetup, WorkerSetup
from mergefront.evaluators.suites import ensure_suite
from mergefront.optimizers import (
    NSGA2Optimizer,
    Observation,
    SearchSpace,
    hypervolume,
    nondominated_mask,
)
from mergefront.optimizers.map import one_hot_points
from mergefront.optimizers.random_search import sobol_points
from mergefront.service.settings import Settings
from mergefront.service.space import candidate_seed, job_space, merge_config
from mergefront.spec import JobSpec, parse_spec

TASKS = {"digits": ("rotated", "inverted", "parity", "mod3"), "tinylm": ("copy", "reverse", "sort", "add")}
UNIT = {"low": 0.0, "high": 1.0}
DENSITY = {"low": 0.1, "high": 1.0}
TRUTH_SEED = 2**31 - 1  # truth seeds count down from here: no run's candidate seed comes near
#: torch's CPU capability of the machines that measured the kept reference fronts and runs (benchmarks/results):
#: a CPU of another kind rounds otherwise, trains other suites and so answers other problems (check_cpu)
KEPT_CPU = os.environ.get("MERGEFRONT_BENCH_CPU", "AVX512")


@dataclass(frozen=True)
class Definition:
    """One problem: the suite, the merge searched, how many of the suite's tasks are scored and on which metric,
    and how its reference front is built (a grid of `grid_levels` values per coordinate, or MAP's one-hot merges
    and a Sobol sample of `start` points; a `long_run`-evaluation NSGA-II run; then NSGA-II rounds of
    `refine_evaluations` started from the front until one adds less than `REFINE_TOLERANCE`)."""

    suite: str
    merge: Mapping[str, object]
    objectives: int
    metric: str = "accuracy"
    grid_levels: int | None = None
    start: int = 0
    long_run: int = 3000
    refine_evaluations: int = 10_000
    refine_population: int = 200
    refine_rounds: int = 8
    truth_seeds: int = 0  # > 0: random masks; runs are scored on the mean over this many mask seeds
    reference_point: tuple[float, ...] | None = None  # None: the job default (each metric's worst value)
    tasks: tuple[str, ...] = field(default=())

    @property
    def scored(self) -> tuple[str, ...]:
        return (self.tasks or TASKS[self.suite])[: self.objectives]


TASK_ARITHMETIC = {"method": "task_arithmetic", "weight": UNIT, "lambda": 1.0}
TIES = {"method": "ties", "weight": UNIT, "density": DENSITY, "lambda": 1.0}
# problem -> definition. Every problem merges all four experts; the "-2obj" ones score only the suite's first two
# tasks, to show what the number of objectives does to the hypervolume a budget can reach.
PROBLEMS: dict[str, Definition] = {
    "task_arithmetic-4": Definition("digits", TASK_ARITHMETIC, 4, grid_levels=11),  # 11^4 = 14,641 points
    "ties-8": Definition("digits", TIES, 4, grid_levels=3),  # 3^8 = 6,561 points
    "task_arithmetic-4-2obj": Definition("digits", TASK_ARITHMETIC, 2, grid_levels=11),
    "ties-8-2obj": Definition("digits", TIES, 2, grid_levels=3),
    # the noisy variant of task arithmetic: DARE drops half of each task vector at random (and rescales the rest)
    "dare_linear-4-2obj": Definition(
        "digits", {"method": "dare_linear", "weight": UNIT, "density": 0.5, "lambda": 1.0}, 2, grid_levels=5,
        long_run=400, refine_evaluations=400, refine_population=40, refine_rounds=2, truth_seeds=4),
    # per component on a real transformer (embeddings, attention, MLP, norms: 4 x 4 weights and 4 x 4 densities),
    # the answer tokens' loss on two tasks, reference point ln(20) = 3.0: a uniform guess over the vocabulary
    "tinylm-ties-32-2obj": Definition(
        "tinylm", {"method": "ties", "weight": {**UNIT, "granularity": "component"},
                   "density": {**DENSITY, "granularity": "component"}, "lambda": 1.0}, 2, metric="loss",
        start=96, long_run=400, refine_evaluations=400, refine_population=40, refine_rounds=1,
        reference_point=(3.0, 3.0)),
}
REFINE_TOLERANCE = 0.005  # rounds go on until one adds less than this fraction of hypervolume


def problem_spec(problem: str, optimizer: dict | None = None) -> JobSpec:
    definition = PROBLEMS[problem]
    optimizer = {**(optimizer or {"name": "random"})}
    if definition.reference_point is not None:
        optimizer["reference_point"] = list(definition.reference_point)
    return parse_spec({
        "name": f"bench-{problem}",
        "models": {"base": f"bench://{definition.suite}/base",
                   "experts": [f"bench://{definition.suite}/{t}" for t in TASKS[definition.suite]]},
        "merge": dict(definition.merge),
        "objectives": [{"task": t, "metric": definition.metric} for t in definition.scored],
        "optimizer": optimizer,
        "resources": {"device": "cpu"},
    })


@dataclass
class Problem:
    """One problem of the benchmark; the suite is built and the evaluator made only when something is evaluated,
    so a report from kept runs needs neither."""

    name: str
    spec: JobSpec
    cache_root: Path

    @property
    def definition(self) -> Definition:
        return PROBLEMS[self.name]

    @property
    def n_objectives(self) -> int:
        return len(self.spec.objectives)

    @property
    def noisy(self) -> bool:
        return self.definition.truth_seeds > 0

    @property
    def maximize(self) -> list[bool]:
        return [o.maximize for o in self.spec.objectives]

    @property
    def ref_point(self) -> list[float]:
        return [float(v) for v in self.spec.default_reference_point() if v is not None]

    @cached_property
    def space(self) -> SearchSpace:
        return job_space(self.spec, Settings(cache_dir=self.cache_root))

    @cached_property
    def evaluator(self) -> CandidateEvaluator:
        check_cpu()
        suite = self.definition.suite
        suite_dir = ensure_suite(suite, self.cache_root, verbose=False)
        objectives = tuple(ObjectiveSetup(o.key, o.task, o.split, o.metric_name) for o in self.spec.objectives)
        return CandidateEvaluator(WorkerSetup.for_suite(suite, suite_dir, TASKS[suite], objectives, "cpu"))

    def evaluate(self, x: Sequence[float], seed: int = 0) -> tuple[float, ...]:
        """The metrics (one per objective, as the job reports them) of the merge at unit-cube point `x` (`d`)
        with mask seed `seed`."""
        config = merge_config(self.spec, self.space.decode(x), self.space, seed=seed)
        metrics = self.evaluator.evaluate(Candidate(0, config)).metrics
        return tuple(metrics[k] for k in self.spec.objective_keys)

    def observe(self, x: Sequence[float], run_seed: int, number: int) -> tuple[float, ...]:
        """What a job with seed `run_seed` records for its evaluation `number` at `x`."""
        if not self.noisy:
            return self.evaluate(x)
        spec = self.spec.model_copy(update={"optimizer": self.spec.optimizer.model_copy(update={"seed": run_seed})})
        return self.evaluate(x, candidate_seed(spec, number))

    def truth(self, x: Sequence[float]) -> tuple[float, ...]:
        """The metrics at `x` a run is scored on: the merge's own, or for random masks their mean over the
        problem's truth seeds."""
        if not self.noisy:
            return self.evaluate(x)
        draws = [self.evaluate(x, TRUTH_SEED - i) for i in range(self.definition.truth_seeds)]
        return tuple(float(v) for v in np.mean(draws, axis=0))

    def hypervolume(self, Y: np.ndarray) -> float:
        """Hypervolume of metrics `Y` (`n x m`) against the job's reference point."""
        return hypervolume(Y, self.ref_point, self.maximize)


def open_problem(problem: str, cache_root: Path) -> Problem:
    return Problem(problem, problem_spec(problem), cache_root)


def _front(problem: Problem, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = nondominated_mask(Y, problem.maximize)
    return X[mask], Y[mask]


def _truths(problem: Problem, X: np.ndarray) -> np.ndarray:
    return np.asarray([problem.truth(x) for x in X])


def _start(problem: Problem) -> np.ndarray:
    """The first points of the reference search (`n x d`): a grid, or MAP's one-hot merges and a Sobol sample."""
    levels = problem.definition.grid_levels
    if levels is not None:
        return np.asarray(list(itertools.product(np.linspace(0.0, 1.0, levels), repeat=problem.space.dim)))
    sobol = sobol_points(problem.space.dim, 12345, 0, problem.definition.start)
    return np.vstack([one_hot_points(problem.space), sobol])


def _long_run(problem: Problem, n: int) -> tuple[np.ndarray, np.ndarray]:
    opt = NSGA2Optimizer(problem.space, problem.n_objectives, seed=12345, population_size=100)
    sign = np.where(problem.maximize, -1.0, 1.0)
    history: list[Observation] = []
    while len(history) < n:
        for x in opt.ask(min(100, n - len(history)), history):
            history.append(Observation(x, tuple(sign * np.asarray(problem.truth(x)))))
    return np.asarray([o.x for o in history]), sign * np.asarray([o.values for o in history])


def _refine(problem: Problem, X: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every point (`n x d`) and its metrics (`n x m`) of an NSGA-II run started from a sample of front `X`."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem as PymooProblem
    from pymoo.optimize import minimize

    seen_X: list[np.ndarray] = []
    seen_Y: list[np.ndarray] = []
    sign = np.where(problem.maximize, -1.0, 1.0)
    population = problem.definition.refine_population

    class Metrics(PymooProblem):
        def __init__(self) -> None:
            super().__init__(n_var=problem.space.dim, n_obj=problem.n_objectives, xl=0.0, xu=1.0)

        def _evaluate(self, x: np.ndarray, out: dict, *args: object, **kwargs: object) -> None:
            Y = _truths(problem, x)
            seen_X.append(x)
            seen_Y.append(Y)
            out["F"] = sign * Y

    start = np.random.default_rng(seed).choice(len(X), size=min(len(X), population), replace=False)
    minimize(Metrics(), NSGA2(pop_size=population, sampling=X[start]),
             ("n_eval", problem.definition.refine_evaluations), seed=seed, verbose=False)
    return np.vstack(seen_X), np.vstack(seen_Y)


def check_cpu() -> None:
    """Refuse to evaluate on another kind of CPU than the kept results' (`KEPT_CPU`): its float rounding trains
    other suites, so its evaluations would be scored against another problem's reference front and runs."""
    import torch

    here = torch.backends.cpu.get_cpu_capability()
    if here != KEPT_CPU:
        raise SystemExit(
            f"the kept reference fronts and runs under benchmarks/results were measured on a CPU with torch's CPU "
            f"capability {KEPT_CPU}; this one is {here}, which trains other bench:// suites, so what it evaluates "
            f"answers another problem. The kept runs still rebuild the tables (--cached-only). To measure on this "
            f"CPU, move the kept results away and set MERGEFRONT_BENCH_CPU={here}: every reference front and run is "
            "then computed afresh")


def reference_path(cache_dir: Path, problem: str) -> Path:
    """Where a problem's reference front is kept."""
    return cache_dir / f"{problem}-reference.npz"


def reference_front(problem: Problem, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The dense reference front (`f x d` points, `f x m` metrics), computed once and kept in `cache_dir`.

    A grid (or one-hot merges and a Sobol sample) and a long NSGA-II run, then rounds of NSGA-II started from the
    front so far, until a round adds less than `REFINE_TOLERANCE` of its hypervolume.
    """
    path = reference_path(cache_dir, problem.name)
    if path.exists():
        data = np.load(path)
        return data["X"], data["Y"]
    started = time.perf_counter()
    sX = _start(problem)
    sY = _truths(problem, sX)
    lX, lY = _long_run(problem, problem.definition.long_run)
    X, Y = _front(problem, np.vstack([sX, lX]), np.vstack([sY, lY]))
    n_evaluated = len(sX) + len(lX)
    hv = problem.hypervolume(Y)
    print(f"{problem.name}: start + long run: {len(X)} points, hypervolume {hv:.6f}", flush=True)
    for round_ in range(1, problem.definition.refine_rounds + 1):
        rX, rY = _refine(problem, X, seed=round_)
        X, Y = _front(problem, np.vstack([X, rX]), np.vstack([Y, rY]))
        n_evaluated += len(rX)
        gain, hv = problem.hypervolume(Y) / hv - 1.0, problem.hypervolume(Y)
        print(f"{problem.name}: refinement {round_}: {len(X)} points, hypervolume {hv:.6f} (+{gain:.2%})",
              flush=True)
        if gain < REFINE_TOLERANCE:
            break
    seconds = time.perf_counter() - started
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, X=X, Y=Y, n_evaluated=n_evaluated, seconds=seconds)
    print(f"{problem.name}: reference front of {len(X)} points from {n_evaluated} evaluations "
          f"({problem.definition.truth_seeds or 1} merges each) in {seconds:.0f} s, hypervolume {hv:.6f}")
    return X, Y
