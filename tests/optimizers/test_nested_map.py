"""Nested MAP: expert pairs first, each in its own coordinates, then merges of their merges."""

from __future__ import annotations

import numpy as np
import pytest

from mergefront.optimizers import (
    MAPOptimizer,
    NestedMAPOptimizer,
    Observation,
    Parameter,
    SearchSpace,
    build_space,
    hypervolume,
    make_optimizer,
)
from mergefront.spec import InvalidSpecError, parse_spec

EXPERTS = 4
# TIES-like: a weight and a density per expert (columns: w0 w1 w2 w3 d0 d1 d2 d3)
TIES = SearchSpace(tuple(Parameter(f"weight.e{i}", 0.0, 1.0, "", "weight", i) for i in range(EXPERTS))
                   + tuple(Parameter(f"density.e{i}", 0.1, 1.0, "", "density", i) for i in range(EXPERTS)))


def _tasks(x: tuple[float, ...]) -> tuple[float, ...]:
    """Objective i (minimised) wants expert i's weight high and density near 0.6, the other experts' weights low."""
    w, d = np.asarray(x[:EXPERTS]), np.asarray(x[EXPERTS:])
    return tuple(float((1 - w[i]) ** 2 + 0.3 * (np.sum(w**2) - w[i] ** 2) + 0.5 * (d[i] - 0.6) ** 2)
                 for i in range(EXPERTS))


def _run(opt, evaluations: int, f=_tasks) -> list[Observation]:  # type: ignore[no-untyped-def]
    history: list[Observation] = []
    while len(history) < evaluations:
        history += [Observation(x, f(x)) for x in opt.ask(4, history)]
    return history


def _hv(history: list[Observation]) -> float:
    return hypervolume(np.asarray([o.values for o in history]), [2.0] * EXPERTS, [False] * EXPERTS)


def test_pairs_come_first_each_starting_from_its_experts_one_hot_merges() -> None:
    opt = NestedMAPOptimizer(TIES, EXPERTS, seed=0)
    history = _run(opt, 24)  # each pair's budget: 2 x (2 one-hot + 4 Sobol points) = 12
    X = np.asarray([o.x for o in history])
    for pair, rows in (((0, 1), X[:12]), ((2, 3), X[12:24])):
        others = [e for e in range(EXPERTS) if e not in pair]
        assert np.all(rows[:, others] == 0.0)  # the other experts' weights at the bottom
        assert np.all(rows[:, [EXPERTS + e for e in others]] == 1.0)  # and their densities at the top
    np.testing.assert_array_equal(X[0], [1, 0, 0, 0, 1, 1, 1, 1])  # expert 0's one-hot merge
    np.testing.assert_array_equal(X[1], [0, 1, 0, 0, 1, 1, 1, 1])


def test_then_every_point_is_a_scaled_merge_of_two_points_of_the_pairs_fronts() -> None:
    opt = NestedMAPOptimizer(TIES, EXPERTS, seed=1)
    history = _run(opt, 40)
    root = opt._root
    left, right = root.children
    fronts = [opt._child_front(child, history) for child in (left, right)]
    assert all(f.shape[0] >= 2 for f in fronts)
    for obs in history[24:]:
        z = opt._encode(root, obs.x, history)
        assert z is not None, obs.x  # a merge of merges ...
        np.testing.assert_allclose(opt._flat(root, z, history), obs.x, atol=1e-9)  # ... which decodes back
        x = np.asarray(obs.x)
        for child, front, (t, s) in zip((left, right), fronts, ((z[0], z[2]), (z[1], z[3])), strict=True):
            point = front[round(t * (front.shape[0] - 1))]
            weights = [i for i, c in enumerate(child.coords) if child.weight[i]]
            densities = [i for i, c in enumerate(child.coords) if not child.weight[i]]
            np.testing.assert_allclose(x[[child.coords[i] for i in weights]], s * point[weights], atol=1e-9)
            if s > 0:  # the child's densities are the front point's own
                np.testing.assert_allclose(x[[child.coords[i] for i in densities]], point[densities], atol=1e-9)
    # the parent's view of a child never moves once the parent has started
    for child, front in zip((left, right), fronts, strict=True):
        np.testing.assert_array_equal(opt._child_front(child, history[:26]), front)


def test_merging_the_merges_finds_trade_offs_that_no_pair_reaches() -> None:
    history = _run(NestedMAPOptimizer(TIES, EXPERTS, seed=2), 48)
    pairs, both = _hv(history[:24]), _hv(history)
    assert both > 1.5 * pairs  # the root's merges of four experts add most of the front


def test_an_odd_expert_and_a_global_parameter() -> None:
    space = SearchSpace((*(Parameter(f"weight.e{i}", 0.0, 1.0, "", "weight", i) for i in range(3)),
                         Parameter("lambda", 0.5, 1.5, "", "lambda")))

    def f(x: tuple[float, ...]) -> tuple[float, float]:
        a = np.asarray(x)
        return float(np.sum((a - 0.2) ** 2)), float(np.sum((a - 0.8) ** 2))

    opt = NestedMAPOptimizer(space, 2, seed=3)
    assert [n.experts for n in opt._nodes] == [(0, 1), (2,), (0, 1, 2)]
    history = _run(opt, 28, f)
    X = np.asarray([o.x for o in history])
    pair, single = opt._nodes[0], opt._nodes[1]
    # budgets: the pair 2 x (2 + 2), the single expert 2 x 3 (and the rest of a batch the root cannot take yet)
    assert len(opt._own(pair, X, history)) == 8 and 6 <= len(opt._own(single, X, history)) < 10
    below = len(opt._own(pair, X, history)) + len(opt._own(single, X, history))
    assert np.all(X[:below, 3] == 1.0)  # lambda stays at the top until the root searches it ...
    assert len(opt._own(opt._root, X, history)) == len(X) - below
    assert len(set(np.round(X[below:, 3], 9))) == len(X) - below  # ... which it does
    assert len({tuple(x) for x in X}) == len(X)


def test_two_experts_is_plain_map() -> None:
    space = SearchSpace(tuple(Parameter(f"weight.e{i}", 0.0, 1.0, "", "weight", i) for i in range(2)))

    def f(x: tuple[float, ...]) -> tuple[float, float]:
        return (1 - x[0]) ** 2 + x[1] ** 2, x[0] ** 2 + (1 - x[1]) ** 2

    assert _run(NestedMAPOptimizer(space, 2, seed=4), 12, f) == _run(MAPOptimizer(space, 2, seed=4), 12, f)


def test_the_spec_option(spec_data: dict) -> None:
    spec_data["optimizer"] = {"name": "map", "nested": True, "bayesian": True}
    spec = parse_spec(spec_data)
    opt = make_optimizer(spec, build_space(spec.merge, spec.models.experts))
    assert isinstance(opt, NestedMAPOptimizer) and opt.bayesian
    spec_data["optimizer"] = {"name": "qnehvi", "nested": True}
    with pytest.raises(InvalidSpecError, match="nested is an option of map"):
        parse_spec(spec_data)
