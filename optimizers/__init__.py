"""Search-space encoding, the optimizer interface and its implementations, Pareto utilities."""

from __future__ import annotations

from mergefront.objectives import BUILTIN, UNIT_METRICS
from mergefront.optimizers.base import Observation, Optimizer, Point
from mergefront.optimizers.history import SurrogateReport
from mergefront.optimizers.map import MAPOptimizer
from mergefront.optimizers.nested_map import NestedMAPOptimizer
from mergefront.optimizers.nsga2 import NSGA2Optimizer
from mergefront.optimizers.pareto import hypervolume, nondominated_mask
from mergefront.optimizers.qnehvi import AcquisitionSettings, QNEHVIOptimizer
from mergefront.optimizers.random_search import SobolSearch
from mergefront.optimizers.saea import SAEAOptimizer
from mergefront.optimizers.space import Parameter, SearchSpace, build_space
from mergefront.spec import JobSpec, ObjectiveSpec

__all__ = [
    "AcquisitionSettings",
    "MAPOptimizer",
    "NSGA2Optimizer",
    "NestedMAPOptimizer",
    "Observation",
    "Optimizer",
    "Parameter",
    "Point",
    "QNEHVIOptimizer",
    "SAEAOptimizer",
    "SearchSpace",
    "SobolSearch",
    "SurrogateReport",
    "build_space",
    "hypervolume",
    "make_optimizer",
    "nondominated_mask",
]

ACCURACY_BOUNDS = (-1.0, 0.0)  # an accuracy in minimisation form


def make_optimizer(spec: JobSpec, space: SearchSpace) -> Optimizer:
    """The optimizer a job spec names, over its search space.

    Model-based optimizers minimise, so the spec's reference point (given for maximised accuracies) is negated.
    """
    opt = spec.optimizer
    m = len(spec.objectives)
    if opt.name == "random":
        return SobolSearch(space, m, opt.seed)
    if opt.name == "nsga2":
        return NSGA2Optimizer(space, m, opt.seed, population_size=opt.population_size)
    if opt.name == "saea":
        return SAEAOptimizer(space, m, opt.seed, population_size=opt.population_size,
                             screening_factor=opt.screening_factor or 8)
    if opt.name == "map":
        bounds = [_unit_bounds(o) for o in spec.objectives]
        cls = NestedMAPOptimizer if opt.nested else MAPOptimizer
        return cls(space, m, opt.seed, value_bounds=bounds, initial_points=opt.initial_points, bayesian=opt.bayesian)
    if opt.name == "qnehvi":
        ref = None
        given = spec.default_reference_point()  # the job's: the spec's values, else each metric's worst value
        if None not in given:  # else the optimizer infers it from its initial design
            ref = [-v if o.maximize else v for v, o in zip(given, spec.objectives, strict=True) if v is not None]
        return QNEHVIOptimizer(space, m, opt.seed, ref_point=ref, initial_points=opt.initial_points,
                               weak_to_strong=opt.weak_to_strong, uncertainty_screening=opt.uncertainty_screening)
    raise ValueError(f"unknown optimizer {opt.name!r}")


def _unit_bounds(objective: ObjectiveSpec) -> tuple[float, float] | None:
    """Bounds of an objective in minimisation form, for metrics that live in [0, 1]."""
    known = objective.task is not None or objective.evaluator in BUILTIN
    if not known or objective.metric_name not in UNIT_METRICS:
        return None
    return ACCURACY_BOUNDS if objective.maximize else (0.0, 1.0)
