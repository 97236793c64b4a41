"""Re-evaluating front members: how many, which, and what the optimizers see of a point evaluated again."""

from __future__ import annotations

import numpy as np
import pytest

from mergefront.optimizers import MAPOptimizer, NSGA2Optimizer, Observation, SearchSpace
from mergefront.optimizers.base import History, averaged
from mergefront.optimizers.repeats import ask_with_repeats, choose_repeats, count_repeats, repeats_due
from mergefront.optimizers.space import Parameter


def box(d: int) -> SearchSpace:
    return SearchSpace(tuple(Parameter(f"x{i}", 0.0, 1.0, "") for i in range(d)))


def toy(x: tuple[float, ...], rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Two conflicting objectives (minimised), with noise when a generator is given."""
    noise = rng.normal(0, 0.05, 2) if rng is not None else np.zeros(2)
    return float(x[0] + noise[0]), float(1 - x[0] + 0.5 * x[1] + noise[1])


@pytest.mark.parametrize(("share", "budget", "batch"), [(0.25, 48, 4), (0.5, 10, 3), (0.1, 7, 2), (0.3, 64, 1)])
def test_repeats_come_in_the_second_half_and_add_up_to_the_share(share: float, budget: int, batch: int) -> None:
    created, repeated = 0, 0
    while created < budget:
        n = min(batch, budget - created)
        due = repeats_due(share, budget, created, repeated, n)
        assert 0 <= due <= n
        if created + n <= budget / 2:
            assert due == 0
        created, repeated = created + n, repeated + due
    assert repeated == int(share * budget)


def test_repeats_due_make_up_for_those_not_made() -> None:
    assert repeats_due(0.5, 20, 12, 0, 4) == 4  # 16 created: 6 due, at most the 4 asked
    assert repeats_due(0.5, 20, 16, 1, 4) == 4 - 0  # 20 created: 10 due, 1 made, 4 asked
    assert repeats_due(0.0, 20, 16, 0, 4) == 0


def test_front_members_with_fewest_evaluations_counting_those_in_flight_then_widest_spread_are_repeated() -> None:
    a, b, c, d = (0.1, 0.0), (0.5, 0.0), (0.9, 0.0), (0.5, 0.5)  # d is dominated
    history = [Observation(a, (0.1, 0.9)), Observation(b, (0.5, 0.5)), Observation(c, (0.9, 0.1)),
               Observation(d, (0.6, 0.6)), Observation(a, (0.1, 0.9)), Observation(c, (0.5, 0.1)),
               Observation(c, (0.9, 0.1))]
    assert choose_repeats(history, [], 1) == [b]  # one evaluation
    assert choose_repeats(history, [b], 1) == [a]  # two evaluations each (c has three)
    assert choose_repeats(history + [Observation(b, (0.5, 0.5))], [], 2) == [a, b]  # equal count and spread: oldest
    assert choose_repeats(history + [Observation(b, (0.5, 0.6))], [], 2) == [b, a]  # b: wider spread first
    assert choose_repeats(history, [], 4) == [b, a, b, c]  # counting those chosen before; d never (dominated)
    assert choose_repeats(history, [], 0) == []


def test_averaged_gives_one_observation_per_point_with_its_mean() -> None:
    h = History(2, 2)
    for key, obs in enumerate([Observation((0.1, 0.2), (1.0, 2.0)), Observation((0.3, 0.3), None),
                               Observation((0.1, 0.2), (3.0, 4.0)), Observation((0.3, 0.3), None),
                               Observation((0.5, 0.5), (0.0, 0.0)), Observation((0.5, 0.5), None)]):
        h.add(key, obs)
    assert h.repeats == 3 and count_repeats(h, [(0.5, 0.5), (0.9, 0.9)]) == 4 and h.first((0.1, 0.2)) == 0
    assert list(averaged(h)) == [Observation((0.1, 0.2), (2.0, 3.0)), Observation((0.3, 0.3), None),
                                 Observation((0.5, 0.5), (0.0, 0.0))]
    plain = History(2, 2)
    plain.add(0, Observation((0.1, 0.2), (1.0, 2.0)))
    assert averaged(plain) is plain


@pytest.mark.parametrize("make", [lambda s: MAPOptimizer(s, 2, seed=3), lambda s: NSGA2Optimizer(s, 2, seed=3)])
def test_map_and_nsga2_see_the_mean_of_a_point_evaluated_again(make) -> None:  # type: ignore[no-untyped-def]
    space = box(2)
    rng = np.random.default_rng(0)
    xs = [tuple(float(v) for v in rng.random(2)) for _ in range(12)]
    once = [Observation(x, toy(x, rng)) for x in xs]
    again = [Observation(x, toy(x, rng)) for x in xs[:4]]
    means = list(once)
    for i, obs in enumerate(again):
        pair = np.asarray([once[i].values, obs.values], dtype=float)  # 2 x m
        means[i] = Observation(obs.x, tuple(float(v) for v in pair.mean(axis=0)))
    optimizer = make(space)
    # the repeats' values count, through the means, and an in-flight repeat (of xs[5]) is no new point
    assert optimizer.ask(4, once + again, [xs[5]]) == optimizer.ask(4, means, [])


def test_asks_with_repeats_spend_the_budget_exactly_and_replay_from_the_seed() -> None:
    def run(seed: int) -> list[tuple[float, ...]]:
        space, rng = box(2), np.random.default_rng(seed)
        optimizer, history, made = MAPOptimizer(space, 2, seed=seed), History(2, 2), []
        while len(made) < 20:
            xs = ask_with_repeats(optimizer, min(4, 20 - len(made)), history, [], share=0.25, budget=20)
            for x in xs:
                history.add(len(made), Observation(x, toy(x, rng)))
                made.append(x)
        assert history.repeats == 5 and len(made) == 20
        return made

    assert run(1) == run(1)
    first = run(1)
    assert len(set(first[:8])) == 8  # the batches within the first half: new points only


def test_repeats_do_not_cut_qnehvis_initial_design_short() -> None:
    from mergefront.optimizers import QNEHVIOptimizer
    from mergefront.optimizers.random_search import sobol_points

    design = [tuple(float(v) for v in row) for row in sobol_points(2, 5, 0, 8)]
    rng = np.random.default_rng(2)
    history = [Observation(x, toy(x, rng)) for x in design[:6]] + [Observation(x, toy(x, rng)) for x in design[:3]]
    # 9 evaluations of 6 points: the design's points 7 and 8 come next, not the GP's
    assert QNEHVIOptimizer(box(2), 2, seed=5, initial_points=8).ask(2, history) == design[6:]


def test_the_space_notes_say_what_reevaluate_spends_and_warn_when_the_merge_is_not_noisy(spec_data: dict) -> None:
    from mergefront.optimizers import budget_notes, build_space
    from mergefront.spec import parse_spec

    for method, warned in (("ties", True), ("dare_ties", False)):
        spec_data["merge"]["method"] = method
        spec_data["optimizer"] = {"name": "nsga2", "budget": 48, "reevaluate": 0.25}
        spec = parse_spec(spec_data)
        notes = [n for n in budget_notes(spec, build_space(spec.merge, spec.models.experts)) if "reevaluate" in n]
        assert len(notes) == 1 and "up to 12 of the 48 evaluations" in notes[0]
        assert ("draws no random masks" in notes[0]) == warned


def test_the_hybrid_fits_every_evaluation_of_a_repeated_point_and_proposes_new_points() -> None:
    from mergefront.optimizers import HybridOptimizer

    rng = np.random.default_rng(4)
    xs = [tuple(float(v) for v in rng.random(2)) for _ in range(10)]
    history = [Observation(x, toy(x, rng)) for x in xs] + [Observation(x, toy(x, rng)) for x in xs[:5] * 2]
    out = HybridOptimizer(box(2), 2, seed=1, ref_point=[1.5, 2.0], initial_points=4).ask(3, history, [xs[0]])
    assert len(set(out)) == 3 and not set(out) & set(xs)
    assert all(0.0 <= v <= 1.0 for x in out for v in x)
