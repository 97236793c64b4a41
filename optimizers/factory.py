"""The optimizer a job spec names, with initial designs and populations scaled to the job's budget."""

from __future__ import annotations

from dataclasses import dataclass

from mergefront.objectives import BUILTIN, UNIT_METRICS
from mergefront.optimizers.auto import Choice, choose
from mergefront.optimizers.base import Optimizer
from mergefront.optimizers.hybrid import REFINE_RADIUS, HybridOptimizer
from mergefront.optimizers.map import MAPOptimizer, one_hot_points
from mergefront.optimizers.nested_map import NestedMAPOptimizer
from mergefront.optimizers.nsga2 import NSGA2Optimizer
from mergefront.optimizers.qnehvi import AcquisitionSettings, QNEHVIOptimizer
from mergefront.optimizers.random_search import SobolSearch
from mergefront.optimizers.saea import SAEAOptimizer
from mergefront.optimizers.space import SearchSpace
from mergefront.spec import JobSpec, ObjectiveSpec, OptimizerSpec

ACCURACY_BOUNDS = (-1.0, 0.0)  # an accuracy in minimisation form
INITIAL_SHARE = 0.25  # an initial design (or NSGA-II's first population) takes at most this share of the budget


@dataclass(frozen=True)
class Sizes:
    """How many evaluations go to the initial design (or population), by default and after the budget's cap."""

    default: int
    used: int
    floor: int  # the least the optimizer can work with

    @property
    def capped(self) -> bool:
        return self.used < self.default


def design_sizes(name: str, space: SearchSpace, budget: int) -> Sizes:
    """The initial design (`map`, `qnehvi`) or population (`nsga2`, `saea`) of optimizer `name` for this budget:
    its default, cut to `INITIAL_SHARE` of the budget but never below what the optimizer needs."""
    cap = int(INITIAL_SHARE * budget)
    if name in ("nsga2", "saea"):
        default, floor = max(8, 2 * space.dim), 4
    elif name in ("map", "hybrid"):
        floor = one_hot_points(space).shape[0]  # MAP's one-hot merges come first
        default = floor + space.dim
    else:
        default, floor = max(5, space.dim + 1), 2
    return Sizes(default, max(floor, min(default, cap)), floor)


def resolved(spec: JobSpec, space: SearchSpace) -> tuple[OptimizerSpec, Choice | None]:
    """The spec's optimizer with `auto` replaced by what it picks for this space (and the choice, or None)."""
    opt = spec.optimizer
    if opt.name != "auto":
        return opt, None
    choice = choose(space, len(spec.objectives), opt.budget, noisy=spec.noisy)
    return opt.model_copy(update={"name": choice.name, **choice.options}), choice


def make_optimizer(spec: JobSpec, space: SearchSpace) -> Optimizer:
    """The optimizer a job spec names, over its search space (`auto`: the one it picks for the space).

    Model-based optimizers minimise, so the spec's reference point (given for maximised accuracies) is negated.
    """
    opt, _ = resolved(spec, space)
    m = len(spec.objectives)
    sizes = design_sizes(opt.name, space, opt.budget)
    if opt.name == "random":
        return SobolSearch(space, m, opt.seed)
    if opt.name == "nsga2":
        return NSGA2Optimizer(space, m, opt.seed, population_size=opt.population_size or sizes.used)
    if opt.name == "saea":
        return SAEAOptimizer(space, m, opt.seed, population_size=opt.population_size or sizes.used,
                             screening_factor=opt.screening_factor or 8)
    if opt.name == "map":
        bounds = [_unit_bounds(o) for o in spec.objectives]
        if opt.nested:
            return NestedMAPOptimizer(space, m, opt.seed, value_bounds=bounds, initial_points=opt.initial_points,
                                      bayesian=opt.bayesian)
        return MAPOptimizer(space, m, opt.seed, value_bounds=bounds, initial_points=opt.initial_points or sizes.used,
                            bayesian=opt.bayesian)
    if opt.name == "hybrid":
        return HybridOptimizer(space, m, opt.seed, value_bounds=[_unit_bounds(o) for o in spec.objectives],
                               ref_point=minimised_reference(spec), initial_points=opt.initial_points or sizes.used,
                               refine=opt.refine, refine_radius=opt.refine_radius or REFINE_RADIUS,
                               refine_means=opt.refine_means,
                               settings=AcquisitionSettings(outcome_warp=opt.outcome_warp or "none"))
    if opt.name == "qnehvi":
        return QNEHVIOptimizer(space, m, opt.seed, ref_point=minimised_reference(spec),
                               initial_points=opt.initial_points or sizes.used, weak_to_strong=opt.weak_to_strong,
                               uncertainty_screening=opt.uncertainty_screening)
    raise ValueError(f"unknown optimizer {opt.name!r}")


def minimised_reference(spec: JobSpec) -> list[float] | None:
    """The job's reference point in minimisation form, or None when an entry is unknown (the optimizer infers it)."""
    given = spec.default_reference_point()  # the spec's values, else each metric's worst value
    if None in given:
        return None
    return [-v if o.maximize else v for v, o in zip(given, spec.objectives, strict=True) if v is not None]


def _unit_bounds(objective: ObjectiveSpec) -> tuple[float, float] | None:
    """Bounds of an objective in minimisation form, for metrics that live in [0, 1]."""
    known = objective.task is not None or objective.evaluator in BUILTIN
    if not known or objective.metric_name not in UNIT_METRICS:
        return None
    return ACCURACY_BOUNDS if objective.maximize else (0.0, 1.0)


def budget_notes(spec: JobSpec, space: SearchSpace) -> list[str]:
    """What a user should know about the budget before a job runs: what `auto` picked, designs cut to fit, and a
    budget too small for the space."""
    opt, choice = resolved(spec, space)
    notes = [] if choice is None else [f"optimizer auto: {choice.describe()}"]
    sizes = design_sizes(opt.name, space, opt.budget)
    given = opt.population_size if opt.name in ("nsga2", "saea") else opt.initial_points
    what = "population" if opt.name in ("nsga2", "saea") else "initial design"
    if opt.name == "map" and opt.nested:
        notes.append(_nested_note(spec, space))
    elif opt.name == "random":
        pass
    elif given is not None and given > INITIAL_SHARE * opt.budget:
        notes.append(f"warning: the {what} ({given}) takes {given / opt.budget:.0%} of the budget "
                     f"({opt.budget}); the model works only on what is left")
    elif given is None and sizes.capped:
        notes.append(f"{opt.name}: {what} of {sizes.used} evaluations (default {sizes.default}, cut to "
                     f"{INITIAL_SHARE:.0%} of the budget {opt.budget})")
    if opt.reevaluate > 0:
        notes.append(reevaluate_note(spec))
    if opt.budget < 2 * (space.dim + 1):
        notes.append(f"warning: a budget of {opt.budget} is small for {space.dim} dimensions (less than "
                     f"2 x (d + 1) = {2 * (space.dim + 1)}): expect a rough front; search fewer parameters "
                     "(a coarser granularity) or raise optimizer.budget")
    return notes


def reevaluate_note(spec: JobSpec) -> str:
    """What `optimizer.reevaluate` spends, and a warning when the job's evaluations are not noisy."""
    from mergefront.optimizers.repeats import repeats_due

    opt = spec.optimizer
    total = repeats_due(opt.reevaluate, opt.budget, opt.budget, 0, opt.budget)
    note = (f"reevaluate: up to {total} of the {opt.budget} evaluations go to front members again with new mask "
            "seeds, spread over the second half of the budget; the front is on each point's mean")
    if not spec.noisy and not spec.external:
        note += (f"; warning: {spec.merge.method} draws no random masks, so a repeat scores the same unless the "
                 "objectives themselves are noisy")
    return note


def _nested_note(spec: JobSpec, space: SearchSpace) -> str:
    """How much of the budget Nested MAP's expert pairs take before its root searches; a warning past half."""
    budget = spec.optimizer.budget
    below = NestedMAPOptimizer(space, len(spec.objectives), spec.optimizer.seed).children_budget()
    if below == 0:
        return "map (nested): one pair of experts, plain MAP"
    note = (f"map (nested): the expert pairs take {below} evaluations ({below / budget:.0%} of the budget "
            f"{budget}) before the root merges them")
    if below >= budget:
        return f"warning: {note}; the root never runs: raise optimizer.budget or use map without nested"
    return f"warning: {note}; the root has only {budget - below} left" if below > budget / 2 else note
