"""`optimizer.name: auto` and initial designs scaled to the budget."""

from __future__ import annotations

import pytest

from mergefront.errors import InvalidSpecError
from mergefront.optimizers import (
    HybridOptimizer,
    MAPOptimizer,
    NestedMAPOptimizer,
    NSGA2Optimizer,
    Parameter,
    QNEHVIOptimizer,
    SearchSpace,
    budget_notes,
    build_space,
    design_sizes,
    make_optimizer,
)
from mergefront.optimizers.auto import choose
from mergefront.spec import parse_spec


def _spec(spec_data: dict, **optimizer: object):  # type: ignore[no-untyped-def]
    spec_data["optimizer"] = optimizer
    spec = parse_spec(spec_data)
    return spec, build_space(spec.merge, spec.models.experts)


def test_auto_is_the_default_and_picks_by_the_space(spec_data: dict) -> None:
    spec, space = _spec(spec_data)  # TIES over 3 experts: 6 dimensions
    assert spec.optimizer.name == "auto"
    assert isinstance(make_optimizer(spec, space), MAPOptimizer)
    assert budget_notes(spec, space)[0].startswith("optimizer auto: ")
    spec_data["merge"]["method"] = "dare_ties"  # random masks: noisy objectives
    spec, space = _spec(spec_data)
    assert isinstance(make_optimizer(spec, space), QNEHVIOptimizer)


def test_auto_takes_the_hybrid_for_expert_weights_alone(spec_data: dict) -> None:
    spec_data["merge"] = {"method": "task_arithmetic", "weight": {"low": 0.0, "high": 1.0}}
    spec_data["objectives"] = spec_data["objectives"][:2]  # two objectives: where refinement was measured
    spec, space = _spec(spec_data)  # 3 weights
    opt = make_optimizer(spec, space)
    assert isinstance(opt, HybridOptimizer)
    assert (opt.refine, opt.refine_radius, opt.refine_means) == (0.25, 0.2, False)  # boxes twice the default
    assert opt.settings.outcome_warp == "logit"
    assert "optimizer auto: hybrid, refine: 0.25, refine_radius: 0.2, outcome_warp: logit (" in budget_notes(
        spec, space)[0]
    spec_data["objectives"].append({"task": "parity"})  # three: within the four it was measured with
    spec, space = _spec(spec_data)
    opt = make_optimizer(spec, space)
    assert isinstance(opt, HybridOptimizer) and opt.refine == 0.25 and opt.settings.outcome_warp == "logit"
    assert choose(space, 4, 64).options == {"refine": 0.25, "refine_radius": 0.2, "outcome_warp": "logit"}
    five = choose(space, 5, 64)  # more objectives than it was measured with: off
    assert five.name == "hybrid" and five.options == {}
    assert "no local refinement (measured with at most 4 objectives)" in five.reason


def test_auto_takes_the_hybrid_for_noisy_expert_weights_and_for_many_dimensions(spec_data: dict) -> None:
    spec_data["merge"] = {"method": "dare_linear", "weight": {"low": 0.0, "high": 1.0}, "density": 0.5}
    spec_data["objectives"] = spec_data["objectives"][:2]
    spec, space = _spec(spec_data)  # 3 weights, random masks, two objectives
    opt = make_optimizer(spec, space)
    assert isinstance(opt, HybridOptimizer)
    assert (opt.refine, opt.refine_radius, opt.refine_means) == (0.25, 0.1, True)  # anchors on the GPs' means
    assert opt.settings.outcome_warp == "none"  # the logit warp was measured on DARE without means: not taken
    assert "random masks" in budget_notes(spec, space)[0]
    three = choose(space, 3, 48, noisy=True)  # the noisy refinement was measured with two objectives only
    assert three.name == "hybrid" and three.options == {}
    assert "no local refinement (measured with at most 2 objectives)" in three.reason
    # TIES per component over 4 experts and 4 groups of tensors: 16 weights and 16 densities
    per_component = SearchSpace(tuple(Parameter(f"{kind}.{e}.{g}", 0.0, 1.0, "", kind, e, g)
                                      for kind in ("weight", "density") for e in range(4) for g in "abcd"))
    choice = choose(per_component, 2, 48)
    assert choice.name == "hybrid" and choice.reason.startswith("32 dimensions")
    assert choice.options == {}  # no refinement measured there
    assert choose(per_component, 2, 48, noisy=True).name == "qnehvi"  # random masks with densities: not measured


def test_auto_takes_nested_map_for_four_experts_with_densities(spec_data: dict) -> None:
    spec_data["models"]["experts"].append("bench://digits/mod3")
    spec_data["objectives"].append({"task": "mod3"})
    spec, space = _spec(spec_data)
    assert isinstance(make_optimizer(spec, space), NestedMAPOptimizer)


def test_initial_designs_and_populations_take_at_most_a_quarter_of_the_budget(spec_data: dict) -> None:
    spec, space = _spec(spec_data, name="nsga2", budget=20)  # default population max(8, 2 x 6) = 12
    opt = make_optimizer(spec, space)
    assert isinstance(opt, NSGA2Optimizer) and opt.population_size == 5
    assert any("cut to 25% of the budget 20" in n for n in budget_notes(spec, space))
    spec, space = _spec(spec_data, name="qnehvi", budget=16)
    opt = make_optimizer(spec, space)
    assert isinstance(opt, QNEHVIOptimizer) and opt.initial_points == 4
    spec, space = _spec(spec_data, name="map", budget=8)  # never below the one-hot merges of the 3 experts
    assert design_sizes("map", space, 8).used == 3
    spec, space = _spec(spec_data, name="qnehvi", budget=12, initial_points=10)  # the user's value is kept ...
    assert make_optimizer(spec, space).initial_points == 10  # type: ignore[attr-defined]
    notes = budget_notes(spec, space)  # ... with a warning, and one for a budget too small for the space
    assert any(n.startswith("warning: the initial design (10) takes 83% of the budget") for n in notes)
    assert any("is small for 6 dimensions" in n for n in notes)


def test_the_notes_say_what_nested_maps_pairs_take_of_the_budget(spec_data: dict) -> None:
    spec_data["models"]["experts"].append("bench://digits/mod3")  # four experts, TIES: two pairs of 4 coordinates
    for budget, expected in ((64, "map (nested): the expert pairs take 24 evaluations (38% of the budget 64)"),
                             (40, "warning: map (nested): the expert pairs take 24 evaluations (60% of the budget "
                                  "40) before the root merges them; the root has only 16 left"),
                             (16, "warning: map (nested): the expert pairs take 24 evaluations (150% of the budget "
                                  "16) before the root merges them; the root never runs")):
        spec, space = _spec(spec_data, name="map", nested=True, budget=budget)
        assert any(n.startswith(expected) for n in budget_notes(spec, space)), budget_notes(spec, space)


def test_refinement_is_an_option_of_hybrid_alone(spec_data: dict) -> None:
    spec, space = _spec(spec_data, name="hybrid", refine=0.5, refine_radius=0.3, refine_means=True)
    opt = make_optimizer(spec, space)
    assert isinstance(opt, HybridOptimizer)
    assert (opt.refine, opt.refine_radius, opt.refine_means) == (0.5, 0.3, True)
    spec, space = _spec(spec_data, name="hybrid")
    assert make_optimizer(spec, space).refine == 0.0  # type: ignore[attr-defined]
    for name, option in (("map", {"refine": 0.25}), ("auto", {"refine_means": True}),
                         ("qnehvi", {"refine_radius": 0.2})):
        with pytest.raises(InvalidSpecError, match="is an option of hybrid"):
            _spec(spec_data, name=name, **option)
    with pytest.raises(InvalidSpecError, match="1"):  # a share is at most 1
        _spec(spec_data, name="hybrid", refine=1.5)
