from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.models import ModelListGP

from mergefront.surrogates.gp import GPSurrogate, fit_gp_list, loo_r2


def _f(X: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(3 * X[:, 0]) + X[:, 1], -((X - 0.5) ** 2).sum(axis=1)], axis=-1)  # n x 2


def test_one_gp_per_objective_interpolates_a_smooth_function() -> None:
    X = np.random.default_rng(0).random((25, 2))
    gp = GPSurrogate.fit(X, _f(X), seed=0)
    X_new = np.random.default_rng(1).random((20, 2)) * 0.8 + 0.1
    mean, std = gp.predict(X_new)
    assert mean.shape == std.shape == (20, 2)
    assert np.max(np.abs(mean - _f(X_new))) < 0.05
    far_mean, far_std = gp.predict(np.array([[3.0, 3.0]]))
    assert np.all(far_std > std.max())  # less certain far from the data


def test_same_data_and_seed_give_the_same_model_and_leave_the_global_generator_alone() -> None:
    X = np.random.default_rng(2).random((15, 3))
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = GPSurrogate.fit(X, _f(X[:, :2]), seed=4).predict(X[:5])[0]
    assert torch.rand(1) == expected_next
    np.testing.assert_array_equal(first, GPSurrogate.fit(X, _f(X[:, :2]), seed=4).predict(X[:5])[0])


def test_closed_form_leave_one_out_r2_matches_predicting_each_point_from_the_others() -> None:
    rng = np.random.default_rng(3)
    X = torch.as_tensor(rng.random((20, 2)))
    Y = torch.stack([torch.sin(4 * X[:, 0]) + X[:, 1], X[:, 0] * X[:, 1] + 0.05 * torch.as_tensor(rng.normal(size=20))],
                    dim=1)
    model = fit_gp_list(X, Y, seed=0)
    fast = loo_r2(model)
    for j, gp in enumerate(model.models):  # the same hyperparameters, the posterior of the other 19 points
        y, prior_mean = gp.train_targets, gp.mean_module.constant.detach()
        with torch.no_grad():
            K = gp.covar_module(X).to_dense() + gp.likelihood.noise[0] * torch.eye(20, dtype=X.dtype)
        loo = []
        for i in range(20):
            keep = torch.arange(20) != i
            weights = torch.linalg.solve(K[keep][:, keep], y[keep] - prior_mean)
            loo.append(float(prior_mean + K[i, keep] @ weights))
        pred = torch.tensor(loo, dtype=y.dtype)
        slow = 1.0 - float(((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())
        assert fast[j] == pytest.approx(slow, rel=1e-6, abs=1e-9)
        assert 0.5 < fast[j] <= 1.0


def test_the_noise_level_is_learned_from_the_data_not_fixed() -> None:
    rng = np.random.default_rng(5)
    X = rng.random((30, 2))
    clean = np.sin(3 * X[:, :1]) + X[:, 1:]
    noisy = clean + 0.3 * rng.normal(size=clean.shape)  # as a merge's mask seed moves an accuracy
    levels = []
    for y in (clean, noisy):
        gp = fit_gp_list(torch.as_tensor(X), torch.as_tensor(y), seed=0).models[0]
        levels.append(float(gp.likelihood.noise) * float(gp.outcome_transform.stdvs) ** 2)  # in y's own units
    assert levels[0] < 1e-2 < 0.3**2 / 3 < levels[1]  # near the true variance 0.09, far above the clean fit's


def test_repeated_points_with_different_values_teach_the_noise_level() -> None:
    rng = np.random.default_rng(8)
    X = np.repeat(rng.random((12, 2)), 3, axis=0)  # 12 points, each evaluated three times (new mask seeds)
    clean = np.sin(3 * X[:, :1]) + X[:, 1:]
    levels = []
    for y in (clean, clean + 0.2 * rng.normal(size=clean.shape)):
        gp = fit_gp_list(torch.as_tensor(X), torch.as_tensor(y), seed=0).models[0]
        levels.append(float(gp.likelihood.noise) * float(gp.outcome_transform.stdvs) ** 2)  # in y's own units
    assert levels[0] < 1e-3 and 0.2**2 / 3 < levels[1] < 0.2**2 * 3  # near the true variance 0.04


def test_a_repeated_point_is_held_out_with_its_twins_not_predicted_by_them() -> None:
    rng = np.random.default_rng(11)
    points = rng.random((10, 2))
    X = torch.as_tensor(np.vstack([points, points[[0, 0, 3, 7]]]))  # point 0 three times, 3 and 7 twice
    values = np.sin(9 * X[:, 0].numpy()) * np.cos(7 * X[:, 1].numpy())  # too wiggly for 10 points to predict
    Y = torch.as_tensor(values[:, None] + 0.01 * rng.normal(size=(14, 1)))
    gp = fit_gp_list(X, Y, seed=0).models[0]
    y, prior_mean = gp.train_targets, gp.mean_module.constant.detach()
    with torch.no_grad():
        K = gp.covar_module(X).to_dense() + gp.likelihood.noise[0] * torch.eye(14, dtype=X.dtype)
    pred = torch.empty(14, dtype=y.dtype)
    for i in range(14):  # the posterior mean from every evaluation of the other points, same hyperparameters
        keep = ~(X == X[i]).all(dim=1)
        pred[i] = prior_mean + K[i, keep] @ torch.linalg.solve(K[keep][:, keep], y[keep] - prior_mean)
    slow = 1.0 - float(((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    fast = loo_r2(ModelListGP(gp))[0]
    assert fast == pytest.approx(slow, rel=1e-6, abs=1e-9)
    assert fast < 0.5  # one evaluation at a time, the twins predict 0, 3 and 7 almost exactly


def test_twins_do_not_flatter_a_gp_that_knows_nothing_between_its_points() -> None:
    rng = np.random.default_rng(12)
    points = rng.random((15, 2))
    X = np.repeat(points, 2, axis=0)  # each point evaluated twice, the same value (a deterministic merge)
    y = np.repeat(rng.normal(size=(15, 1)), 2, axis=0)  # unrelated to the coordinates
    once = loo_r2(fit_gp_list(torch.as_tensor(points), torch.as_tensor(y[::2]), seed=0))[0]
    twice = loo_r2(fit_gp_list(torch.as_tensor(X), torch.as_tensor(y), seed=0))[0]
    assert once < 0.3 and twice < 0.3  # held out by point, the twins teach it nothing about other points
