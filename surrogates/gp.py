"""Gaussian-process surrogates (BoTorch / GPyTorch): one independent GP per objective, inputs in the unit cube.

Objectives are modelled in BoTorch's maximisation form. Every fit runs under a forked torch generator seeded by
the caller, so the same data and seed give the same model.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.means import Mean
from gpytorch.mlls import ExactMarginalLogLikelihood

from mergefront.surrogates.holdout import twin_groups
from mergefront.surrogates.quadratic import QuadraticFit

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


PriorFn = Callable[[torch.Tensor], torch.Tensor]  # `... x d` points -> `...` prior means, in the GP's own scale


class PriorMean(Mean):  # type: ignore[misc]
    """A GP prior mean `a * f(x) + b` for a fixed function `f` (a fitted quadratic), standardised as the GP's
    targets are; the scale `a` (from 1) and offset `b` (from 0) are learned with the kernel's hyperparameters, so
    marginal likelihood can turn down a prior that does not fit."""

    def __init__(self, fn: PriorFn) -> None:
        super().__init__()
        self.fn = fn
        self.register_parameter("scale", torch.nn.Parameter(torch.ones((), dtype=DTYPE)))
        self.register_parameter("constant", torch.nn.Parameter(torch.zeros((), dtype=DTYPE)))
        self.register_buffer("centre", torch.zeros((), dtype=DTYPE))
        self.register_buffer("spread", torch.ones((), dtype=DTYPE))

    def standardise_like(self, model: SingleTaskGP) -> None:
        """Put `f` on the scale of the model's standardised targets (its outcome transform's mean and deviation)."""
        transform: Any = model.outcome_transform
        self.centre = transform.means.reshape(()).detach().clone()
        self.spread = transform.stdvs.reshape(()).detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (self.fn(x) - self.centre) / self.spread + self.constant


def quadratic_prior(fit: QuadraticFit, sign: float = 1.0) -> PriorFn:
    """A fitted quadratic (through its warp) as a torch function of `... x d` points, times `sign` (-1 turns an
    objective MAP minimises into BoTorch's maximisation form)."""
    coef = torch.as_tensor(fit.coef, dtype=DTYPE)
    low, high = fit.warp.low, fit.warp.high

    def fn(x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1]
        rows, cols = torch.triu_indices(d, d, offset=1)
        feats = torch.cat([torch.ones_like(x[..., :1]), x, x**2, x[..., rows] * x[..., cols]], dim=-1)
        z = feats @ coef
        value = z if low is None or high is None else low + (high - low) * torch.sigmoid(z)
        return sign * value

    return fn


def _fit_one(train_X: torch.Tensor, train_y: torch.Tensor, max_iterations: int | None = None,
             prior: PriorFn | None = None) -> SingleTaskGP:
    """One GP on `n x d` inputs and `n x 1` outputs, hyperparameters by maximum marginal likelihood (at most
    `max_iterations` L-BFGS-B iterations when given). The noise level is learned (BoTorch's default likelihood);
    `prior` replaces the constant prior mean."""
    mean = None if prior is None else PriorMean(prior)
    model = SingleTaskGP(train_X, train_y, outcome_transform=Standardize(m=1), mean_module=mean)
    if mean is not None:
        mean.standardise_like(model)
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    options = None if max_iterations is None else {"options": {"maxiter": max_iterations}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optimisation warnings: fit_gpytorch_mll retries, then keeps the best
        fit_gpytorch_mll(mll, optimizer_kwargs=options)
    model.eval()
    return model


def fit_gp_list(train_X: torch.Tensor, train_Y: torch.Tensor, seed: int,
                max_iterations: int | None = None, priors: Sequence[PriorFn] | None = None) -> ModelListGP:
    """Fit one GP per objective.

    Args:
        train_X: `n x d` points in the unit cube.
        train_Y: `n x m` objective values, maximised.
        seed: seeds the fit's random restarts.
        priors: per objective, a prior mean (maximised, in the objective's scale); default constant.

    Returns:
        A `ModelListGP` with `m` outputs.
    """
    if train_X.ndim != 2 or train_Y.ndim != 2 or train_X.shape[0] != train_Y.shape[0]:
        raise ValueError(f"train_X {tuple(train_X.shape)} and train_Y {tuple(train_Y.shape)} must be `n x d`, `n x m`")
    if priors is not None and len(priors) != train_Y.shape[1]:
        raise ValueError(f"{len(priors)} prior means for {train_Y.shape[1]} objectives")
    with seeded_torch(seed):
        models = [_fit_one(train_X, train_Y[:, i : i + 1], max_iterations, None if priors is None else priors[i])
                  for i in range(train_Y.shape[1])]
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
    the others is `y_i - [K^-1 y]_i / [K^-1]_ii`. A point evaluated more than once is held out with its twins
    (`mergefront.surrogates.holdout`): for its rows `S`, `y_S - ([K^-1]_SS)^-1 [K^-1 y]_S`. The outcome
    standardisation is affine, so R² computed on the standardised targets is the objective's own. NaN where the
    values do not vary.
    """
    out = []
    with torch.no_grad():
        gps: list[Any] = list(model.models)  # SingleTaskGPs (torch's Module typing hides their attributes)
        for gp in gps:
            X, y = gp.train_inputs[0], gp.train_targets  # n x d, n (standardised)
            K = gp.covar_module(X).to_dense() + gp.likelihood.noise.reshape(-1)[0] * torch.eye(len(y), dtype=y.dtype)
            K_inv = torch.linalg.inv(K)
            alpha = K_inv @ (y - gp.mean_module(X))  # n
            loo = y - alpha / torch.diagonal(K_inv)
            for rows in twin_groups(X.numpy()):
                S = torch.as_tensor(rows)
                loo[S] = y[S] - torch.linalg.solve(K_inv[S][:, S], alpha[S])
            total = float(((y - y.mean()) ** 2).sum())
            out.append(1.0 - float(((y - loo) ** 2).sum()) / total if total > 0 else float("nan"))
    return out
