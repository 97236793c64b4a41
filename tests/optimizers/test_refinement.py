"""Where `hybrid` refines: the front's ends, its largest gaps, and anchors chosen on the GPs' means."""

from __future__ import annotations

import numpy as np
import pytest

from mergefront.optimizers import HybridOptimizer, Parameter, SearchSpace
from mergefront.optimizers.refinement import front_ends, largest_gaps, refinement_boxes, shrunk_radius, spanning

# a front of four points along the first objective (minimised), and one dominated point
X = np.array([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.9, 0.9], [0.5, 0.5]])
Y = np.array([[0.0, 1.0], [0.1, 0.9], [0.2, 0.8], [1.0, 0.0], [0.9, 0.9]])


def test_the_largest_gap_is_between_front_neighbours_and_comes_first() -> None:
    gaps = largest_gaps(X, Y)
    assert len(gaps) == 3  # four front points, three gaps; the dominated point is in none
    np.testing.assert_array_equal(np.stack(gaps[0]), X[[2, 3]])  # (0.2, 0.8) to (1.0, 0.0): the widest
    assert largest_gaps(X[:1], Y[:1]) == []
    three = np.hstack([Y, Y[:, :1]])  # three objectives: each point's gap to its nearest front neighbour
    assert {tuple(p) for p in largest_gaps(X, three)[0]} == {tuple(X[2]), tuple(X[3])}  # the most isolated


def test_boxes_take_the_ends_in_turn_and_alternate_with_the_gaps() -> None:
    ends = front_ends(X, Y)
    np.testing.assert_array_equal(ends, X[[0, 3]])
    by_ends = refinement_boxes(X, Y, 3, 1, "ends", 0.05)  # refinements 1, 2, 3: the second end, the first, ...
    np.testing.assert_allclose([b.mean(axis=0) for b in by_ends], X[[3, 0, 3]].clip(0.05, 0.95))
    by_gaps = refinement_boxes(X, Y, 2, 0, "gaps", 0.05)  # the two largest gaps of this ask
    np.testing.assert_allclose(by_gaps[0], spanning(X[2], X[3], 0.05))
    assert ((by_gaps[0][0] <= X[2]) & (X[3] <= by_gaps[0][1])).all()
    both = refinement_boxes(X, Y, 4, 0, "both", 0.05)  # end, gap, end, gap
    np.testing.assert_allclose(both[0], by_ends[1])
    np.testing.assert_allclose(both[1], by_gaps[0])
    np.testing.assert_allclose(both[2], by_ends[0])
    np.testing.assert_allclose(both[3], by_gaps[1])


def test_anchors_on_the_gps_means_pass_over_a_lucky_draw() -> None:
    space = SearchSpace(tuple(Parameter(f"p{i}", 0.0, 1.0, "") for i in range(2)))
    rng = np.random.default_rng(0)
    train_X = rng.random((40, 2))
    truth = np.stack([train_X[:, 0], 1.0 - train_X[:, 0]], axis=-1)  # minimised: x0 low is best on the first
    train_Y = truth + rng.normal(0.0, 0.05, truth.shape)
    lucky = int(np.argmin(np.abs(train_X[:, 0] - 0.4)))  # a middling point draws the best value on the first
    train_Y[lucky, 0] = train_Y[:, 0].min() - 0.05
    raw = HybridOptimizer(space, 2, 0, refine=0.25)
    assert front_ends(train_X, raw.anchor_values(train_X, train_Y, 0))[0].tolist() == train_X[lucky].tolist()
    means = HybridOptimizer(space, 2, 0, refine=0.25, refine_means=True)
    smoothed = means.anchor_values(train_X, train_Y, 0)
    end = front_ends(train_X, smoothed)[0]
    assert end[0] < 0.2  # the end best on the first objective is where it truly is: x0 near 0
    assert np.abs(smoothed - truth).mean() < np.abs(train_Y - truth).mean()


def test_refinement_options_are_checked() -> None:
    space = SearchSpace(tuple(Parameter(f"p{i}", 0.0, 1.0, "") for i in range(2)))
    with pytest.raises(ValueError, match="refine_anchors"):
        HybridOptimizer(space, 2, 0, refine_anchors="middle")  # type: ignore[arg-type]


def test_an_adaptive_box_shrinks_with_the_points_already_evaluated_in_it() -> None:
    anchor = np.array([0.5, 0.5])
    alone = np.array([anchor, [0.9, 0.9]])
    assert shrunk_radius(anchor, alone, 0.2) == 0.2  # nothing tried around it yet: the full box
    crowded = np.vstack([alone, anchor + [[0.1, 0.0], [0.0, -0.1], [0.15, 0.15], [-0.2, 0.0]]])
    assert shrunk_radius(anchor, crowded, 0.2) == pytest.approx(0.05)  # four tried around it: a quarter
    assert shrunk_radius(anchor, crowded[:4], 0.2) == pytest.approx(0.1)  # two: half
    box = refinement_boxes(crowded, np.array([[0.0, 1.0], [1.0, 0.0], *[[0.5, 0.6]] * 4]), 1, 0, "ends", 0.2,
                           adaptive=True)[0]
    np.testing.assert_allclose(box, [[0.45, 0.45], [0.55, 0.55]])
