"""Proposal cost: seconds for one proposal of 4 candidates at n = 200 observations, d = 16, m = 3.

The history is 200 Sobol points of DTLZ2 (16 variables, 3 objectives; pymoo's definition), the same for every
method. Ours propose the 4 candidates in one `ask`; Optuna's samplers, told the same 200 trials, ask 4 times
(they propose one at a time). Reports the median of `--repeats` proposals per method, each from a fresh instance
(as after a restart), with this process limited to the cores it may use (`os.sched_getaffinity`).

    .venv/bin/python benchmarks/proposal_cost.py [--repeats 3] [--methods qnehvi,map]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mergefront.optimizers import (  # noqa: E402
    MAPOptimizer,
    NSGA2Optimizer,
    Observation,
    Optimizer,
    Parameter,
    QNEHVIOptimizer,
    SAEAOptimizer,
    SearchSpace,
    SobolSearch,
)
from mergefront.optimizers.random_search import sobol_points  # noqa: E402

N, D, M, Q = 200, 16, 3, 4
TARGET_SECONDS = 10.0
SPACE = SearchSpace(tuple(Parameter(f"x{i}", 0.0, 1.0, "") for i in range(D)))
OURS = {
    "qnehvi": lambda: QNEHVIOptimizer(SPACE, M, 0),
    "map": lambda: MAPOptimizer(SPACE, M, 0),
    "saea": lambda: SAEAOptimizer(SPACE, M, 0),
    "nsga2": lambda: NSGA2Optimizer(SPACE, M, 0),
    "random": lambda: SobolSearch(SPACE, M, 0),
}
PEERS = ("optuna-gp", "optuna-tpe", "optuna-nsga2")


def history() -> tuple[np.ndarray, np.ndarray]:
    from pymoo.problems import get_problem

    X = sobol_points(D, 7, 0, N)  # N x D
    F = get_problem("dtlz2", n_var=D, n_obj=M).evaluate(X)  # N x M, minimised
    return X, np.asarray(F, dtype=float)


def time_ours(make: Callable[[], Optimizer], X: np.ndarray, F: np.ndarray) -> float:
    obs = [Observation(tuple(map(float, x)), tuple(map(float, f))) for x, f in zip(X, F, strict=True)]
    opt = make()
    start = time.perf_counter()
    opt.ask(Q, obs)
    return time.perf_counter() - start


def time_peer(name: str, X: np.ndarray, F: np.ndarray) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"optuna-gp": lambda: optuna.samplers.GPSampler(seed=0),
                "optuna-tpe": lambda: optuna.samplers.TPESampler(seed=0),
                "optuna-nsga2": lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=2 * D)}
    study = optuna.create_study(directions=["minimize"] * M, sampler=samplers[name]())
    dists = {f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(D)}
    for x, f in zip(X, F, strict=True):
        study.add_trial(optuna.trial.create_trial(params={f"x{i}": float(v) for i, v in enumerate(x)},
                                                  distributions=dists, values=[float(v) for v in f]))
    start = time.perf_counter()
    for _ in range(Q):
        trial = study.ask()
        for i in range(D):
            trial.suggest_float(f"x{i}", 0.0, 1.0)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join([*OURS, *PEERS]))
    args = parser.parse_args(argv)
    X, F = history()
    cores = len(os.sched_getaffinity(0))
    print(f"one proposal of {Q} candidates at n = {N}, d = {D}, m = {M}; {cores} cores; median of {args.repeats}")
    results = {}
    for method in args.methods.split(","):
        runs = [time_peer(method, X, F) if method in PEERS else time_ours(OURS[method], X, F)
                for _ in range(args.repeats)]
        results[method] = {"median_s": statistics.median(runs), "runs_s": runs}
        verdict = "" if method in PEERS else ("  ok" if statistics.median(runs) <= TARGET_SECONDS else "  OVER 10 s")
        print(f"  {method:<13} {statistics.median(runs):7.2f} s{verdict}", flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "proposal_cost.json").write_text(json.dumps({"n": N, "d": D, "m": M, "q": Q, "cores": cores,
                                                        "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
