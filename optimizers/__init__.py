"""Search-space encoding, the optimizer interface and its implementations, Pareto utilities."""

from __future__ import annotations

from mergefront.optimizers.auto import Choice, choose
from mergefront.optimizers.base import Observation, Optimizer, Point
from mergefront.optimizers.factory import budget_notes, design_sizes, make_optimizer, resolved
from mergefront.optimizers.history import SurrogateReport
from mergefront.optimizers.hybrid import HybridOptimizer
from mergefront.optimizers.map import MAPOptimizer
from mergefront.optimizers.nested_map import NestedMAPOptimizer
from mergefront.optimizers.nsga2 import NSGA2Optimizer
from mergefront.optimizers.pareto import hypervolume, nondominated_mask
from mergefront.optimizers.qnehvi import AcquisitionSettings, QNEHVIOptimizer
from mergefront.optimizers.random_search import SobolSearch
from mergefront.optimizers.saea import SAEAOptimizer
from mergefront.optimizers.space import Parameter, SearchSpace, build_space

__all__ = [
    "AcquisitionSettings",
    "Choice",
    "HybridOptimizer",
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
    "budget_notes",
    "build_space",
    "choose",
    "design_sizes",
    "hypervolume",
    "make_optimizer",
    "nondominated_mask",
    "resolved",
]
