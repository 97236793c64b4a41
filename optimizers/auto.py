"""`optimizer.name: auto`: the optimizer the sample-efficiency benchmark shows best for a job's space.

The rule reads the search space's dimension, the number of experts and objectives, the budget and whether the
merge method draws random masks (noisy objectives), and says why it chose what it chose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mergefront.optimizers.map import one_hot_points
from mergefront.optimizers.space import SearchSpace

# hybrid's local refinement where the benchmark shows it pays (docs/optimizers.md): a quarter of the points after
# the design inside boxes around the front's ends; with random masks the anchors chosen on the GPs' means, without
# them wider boxes and GPs on the logit of the accuracies. Each is on up to the number of objectives it was measured
# with: the noisy one on two, the other on two and four (task_arithmetic-4-2obj, task_arithmetic-4).
REFINE_NOISY: dict[str, object] = {"refine": 0.25, "refine_means": True}
REFINE_WEIGHTS: dict[str, object] = {"refine": 0.25, "refine_radius": 0.2, "outcome_warp": "logit"}
REFINE_OBJECTIVES_NOISY = 2
REFINE_OBJECTIVES = 4


@dataclass(frozen=True)
class Choice:
    """What `auto` picked: an optimizer name with its options, and the reason in words."""

    name: str
    reason: str
    options: dict[str, object] = field(default_factory=dict)

    def describe(self) -> str:
        opts = "".join(f", {k}: {v}" for k, v in self.options.items())
        return f"{self.name}{opts} ({self.reason})"


def choose(space: SearchSpace, n_objectives: int, budget: int, *, noisy: bool = False) -> Choice:
    """The optimizer for a space of this dimension, with `n_objectives` objectives, `budget` evaluations, and
    objectives that are `noisy` (a merge method with random masks)."""
    d, experts = space.dim, one_hot_points(space).shape[0]
    weights_only = all(p.kind == "weight" for p in space.parameters) and d == experts
    if noisy and weights_only:
        refines = n_objectives <= REFINE_OBJECTIVES_NOISY
        return Choice("hybrid", f"{d} expert weights and random masks: MAP's one-hot start, then the GPs "
                      "(qLogNEHVI), which learn the noise level" + _refinement(refines, "around the front's ends, "
                      "chosen on the GPs' means", REFINE_OBJECTIVES_NOISY), REFINE_NOISY if refines else {})
    if noisy:
        return Choice("qnehvi", "random masks make the objectives noisy; the GPs learn the noise level")
    if d > 24:
        return Choice("hybrid", f"{d} dimensions: MAP's one-hot start, then the GPs (qLogNEHVI) as soon as they "
                      f"predict better than quadratics of (d + 1)(d + 2) / 2 = {(d + 1) * (d + 2) // 2} terms")
    if d > experts and experts >= 4:
        return Choice("map", f"{d} dimensions over {experts} experts: pairs of experts first (Nested MAP)",
                      {"nested": True})
    if weights_only:
        refines = n_objectives <= REFINE_OBJECTIVES
        return Choice("hybrid", f"{d} expert weights: MAP's one-hot start, then the GPs (qLogNEHVI), which keep "
                      "climbing where the quadratics level off" + _refinement(refines, "in boxes of half-width 0.2 "
                      "around the front's ends, the GPs on the logit of accuracies", REFINE_OBJECTIVES),
                      REFINE_WEIGHTS if refines else {})
    return Choice("map", f"{d} dimensions: MAP's one-hot design and quadratics lead at every budget up to "
                  f"{budget}")


def _refinement(refines: bool, where: str, measured: int) -> str:
    if refines:
        return f"; a quarter of the later points refine {where}"
    return f"; no local refinement (measured with at most {measured} objectives)"
