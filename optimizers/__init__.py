"""Search-space encoding, the optimizer interface and its implementations, Pareto utilities."""

from __future__ import annotations

from mergefront.spec import JobSpec
from optimizers.base import Observation, Optimizer, Point
from optimizers.nsga2 import NSGA2Optimizer
from optimizers.pareto import hypervolume, nondominated_mask
from optimizers.random_search import SobolSearch
from optimizers.space import Parameter, SearchSpace, build_space

__all__ = [
    "NSGA2Optimizer",
    "Observation",
    "Optimizer",
    "Parameter",
    "Point",
    "SearchSpace",
    "SobolSearch",
    "build_space",
    "hypervolume",
    "make_optimizer",
    "nondominated_mask",
]


def make_optimizer(spec: JobSpec, space: SearchSpace) -> Optimizer:
    """The optimizer a job spec names, over its search space."""
    opt = spec.optimizer
    m = len(spec.objectives)
    if opt.name == "random":
        return SobolSearch(space, m, opt.seed)
    if opt.name == "nsga2":
        return NSGA2Optimizer(space, m, opt.seed, population_size=opt.population_size)
    raise ValueError(f"unknown optimizer {opt.name!r}")
