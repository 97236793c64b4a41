from __future__ import annotations

import numpy as np
import pytest

from mergefront.surrogates.holdout import twin_groups
from mergefront.surrogates.quadratic import QuadraticSurrogate, Warp, _ridge_loo, fit_quadratic, quadratic_features


def _quadratic(X: np.ndarray) -> np.ndarray:
    return 0.3 + X @ np.array([0.5, -0.2, 0.1]) - 0.8 * X[:, 0] ** 2 + 0.6 * X[:, 1] * X[:, 2]


def test_features_are_constant_linear_squares_and_cross_terms() -> None:
    F = quadratic_features(np.array([[2.0, 3.0, 5.0]]))
    np.testing.assert_allclose(F, [[1, 2, 3, 5, 4, 9, 25, 6, 10, 15]])


def test_recovers_a_quadratic_exactly_with_held_out_r2_near_one() -> None:
    X = np.random.default_rng(0).random((30, 3))
    fit = fit_quadratic(X, _quadratic(X))
    X_new = np.random.default_rng(1).random((10, 3))
    np.testing.assert_allclose(fit.predict(X_new), _quadratic(X_new), atol=1e-3)
    assert fit.r2 > 0.999


def test_held_out_r2_exposes_a_surrogate_not_to_trust() -> None:
    rng = np.random.default_rng(2)
    X = rng.random((30, 3))
    fit = fit_quadratic(X, np.sin(25 * X[:, 0]) + rng.normal(0, 0.3, 30))
    assert fit.r2 < 0.3


def test_leave_one_out_shortcut_matches_refitting_without_each_point() -> None:
    rng = np.random.default_rng(3)
    X, y = rng.random((12, 2)), rng.random(12)
    F = quadratic_features(X)
    _, loo = _ridge_loo(F, y, 0.1)
    for i in range(12):
        keep = np.arange(12) != i
        coef, _ = _ridge_loo(F[keep], y[keep], 0.1)
        assert loo[i] == pytest.approx(F[i] @ coef, abs=1e-8)


def test_a_repeated_point_is_held_out_with_all_its_evaluations() -> None:
    rng = np.random.default_rng(6)
    points = rng.random((14, 2))
    X = np.vstack([points, points[[2, 2, 9]]])  # point 2 three times, point 9 twice
    y = np.sin(6 * X[:, 0]) + 0.05 * rng.normal(size=17)
    F = quadratic_features(X)
    _, loo = _ridge_loo(F, y, 0.01, twin_groups(X))
    for i in range(17):  # the fit without every evaluation of point i
        keep = ~(X == X[i]).all(axis=1)
        coef, _ = _ridge_loo(F[keep], y[keep], 0.01)
        assert loo[i] == pytest.approx(F[i] @ coef, abs=1e-8)


def test_twins_do_not_flatter_the_held_out_r2() -> None:
    rng = np.random.default_rng(7)
    points = rng.random((20, 2))
    y = rng.normal(size=20)  # nothing a quadratic can predict
    once = fit_quadratic(points, y)
    twice = fit_quadratic(np.repeat(points, 2, axis=0), np.repeat(y, 2))  # each evaluated twice, same value
    assert once.r2 < 0.3 and twice.r2 < 0.3
    assert twice.r2 == pytest.approx(once.r2, abs=0.05)  # the same evidence, held out the same way


def test_logit_warp_keeps_accuracies_in_range_far_from_the_data() -> None:
    X = np.random.default_rng(4).random((20, 2)) * 0.5  # training points in one corner only
    acc = np.clip(0.2 + 1.5 * X[:, 0] + X[:, 1] ** 2, 0.0, 1.0)
    surrogate = QuadraticSurrogate.fit(X, -acc[:, None], [Warp(-1.0, 0.0)])  # minimised accuracy
    pred = surrogate.predict(np.random.default_rng(5).uniform(-2, 3, (200, 2)))
    assert pred.min() >= -1.0 and pred.max() <= 0.0
    assert Warp(-1.0, 0.0).inverse(Warp(-1.0, 0.0).forward(np.array([-0.3])))[0] == pytest.approx(-0.3)


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="must be"):
        fit_quadratic(np.zeros((5, 2)), np.zeros(4))
