"""Gaussian-process surrogates (BoTorch / GPyTorch): one independent GP per objective, inputs in the unit cube.

Objectives are modelled in BoTorch's maximisation form. Every fit runs under a forked torch generator seeded by
the caller, so the same data and seed give the same model.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood

DTYPE = torch.double
_TORCH_GLOBALS = threading.RLock()  # torch's generator and thread count are process-wide


@contextmanager
def seeded_torch(seed: int, threads: int = 1) -> Iterator[None]:
    """Run a block with torch's generator forked and seeded (the caller's stream is untouched), on `threads` threads.

    These problems are small (hundreds of points): one intra-op thread is several times faster than
    contending for busy cores, and the result does not depend on the machine's thread count.
    """
    with _TORCH_GLOBALS:  # two jobs proposing at once in one process must not reseed each other
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                yield
        finally:
            torch.set_num_threads(previous)


def _fit_one(train_X: torch.Tensor, train_y: torch.Tensor, max_iterations: int | None = None) -> SingleTaskGP:
    """One GP on `n x d` inputs and `n x 1` outputs, hyperparameters by maximum marginal likelihood (at most
    `max_iterations` L-BFGS-B iterations when given)."""
    model = SingleTaskGP(train_X, train_y, outcome_transform=Standardize(m=1))
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    options = None if max_iterations is None else {"options": {"maxiter": max_iterations}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optimisation warnings: fit_gpytorch_mll retries, then keeps the best
        fit_gpytorch_mll(mll, optimizer_kwargs=options)
    model.eval()
    return model


def fit_gp_list(train_X: torch.Tensor, train_Y: torch.Tensor, seed: int,
                max_iterations: int | None = None) -> ModelListGP:
    """Fit one GP per objective.

    Args:
        train_X: `n x d` points in the unit cube.
        train_Y: `n x m` objective values, maximised.
        seed: seeds the fit's random restarts.

    Returns:
        A `ModelListGP` with `m` outputs.
    """
    if train_X.ndim != 2 or train_Y.ndim != 2 or train_X.shape[0] != train_Y.shape[0]:
        raise ValueError(f"train_X {tuple(train_X.shape)} and train_Y {tuple(train_Y.shape)} must be `n x d`, `n x m`")
    with seeded_torch(seed):
        models = [_fit_one(train_X, train_Y[:, i : i + 1], max_iterations) for i in range(train_Y.shape[1])]
    return ModelListGP(*models)


@dataclass(frozen=True)
class GPSurrogate:
    """A fitted GP list behind a numpy interface, for optimizers that only need means and deviations."""

    model: ModelListGP

    @classmethod
    def fit(cls, train_X: np.ndarray, train_Y: np.ndarray, seed: int) -> GPSurrogate:
        """Fit on `n x d` points and `n x m` values (maximised)."""
        X = torch.as_tensor(train_X, dtype=DTYPE)
        Y = torch.as_tensor(train_Y, dtype=DTYPE)
        return cls(fit_gp_list(X, Y, seed))

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation, each `c x m`, at `c x d` points."""
        with torch.no_grad():
            post = self.model.posterior(torch.as_tensor(X, dtype=DTYPE))
            mean = post.mean.numpy()  # c x m
            std = post.variance.clamp_min(0.0).sqrt().numpy()  # c x m
        return mean, std


def loo_r2(model: ModelListGP) -> list[float]:
    """Each GP's leave-one-out R² on its training points, in closed form (no refits).

    For an exact GP with covariance `K` (noise included) and centred targets `y`, the prediction at point i from
    the others is `y_i - [K^-1 y]_i / [K^-1]_ii`. The outcome standardisation is affine, so R² computed on the
    standardised targets is the objective's own. NaN where the values do not vary.
    """
    out = []
    with torch.no_grad():
        gps: list[Any] = list(model.models)  # SingleTaskGPs (torch's Module typing hides their attributes)
        for gp in gps:
            X, y = gp.train_inputs[0], gp.train_targets  # n x d, n (standardised)
            K = gp.covar_module(X).to_dense() + gp.likelihood.noise.reshape(-1)[0] * torch.eye(len(y), dtype=y.dtype)
            K_inv = torch.linalg.inv(K)
            centred = y - gp.mean_module(X)
            loo = y - (K_inv @ centred) / torch.diagonal(K_inv)
            total = float(((y - y.mean()) ** 2).sum())
            out.append(1.0 - float(((y - loo) ** 2).sum()) / total if total > 0 else float("nan"))
    return out
