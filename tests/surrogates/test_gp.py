from __future__ import annotations

import numpy as np
import torch

from surrogates.gp import GPSurrogate


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
