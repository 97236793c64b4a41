"""MAP's quadratic surrogates: each objective as a full quadratic in the merge coefficients.

Features are a constant, the `d` linear terms, the `d` squares and the `d (d - 1) / 2` cross terms. The fit is
a ridge least-squares fit through a warp that keeps predictions in range (logit for values known to lie in an
interval, such as accuracies); the ridge strength is chosen by exact leave-one-out error, which also gives each
surrogate's held-out R² (in the objective's own scale) so a user can see when to trust it. A point evaluated more
than once is held out with all its evaluations (`mergefront.surrogates.holdout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from mergefront.surrogates.holdout import twin_groups

RIDGE_GRID = (1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
WARP_EPS = 1e-3  # logit is taken of values clipped to [eps, 1 - eps] of the interval


def quadratic_features(X: np.ndarray) -> np.ndarray:
    """`n x p` features of `n x d` points: 1, x_i, x_i^2, x_i x_j (i < j); p = 1 + 2d + d(d-1)/2."""
    n, d = X.shape
    rows, cols = np.triu_indices(d, k=1)
    return np.hstack([np.ones((n, 1)), X, X**2, X[:, rows] * X[:, cols]])


@dataclass(frozen=True)
class Warp:
    """Logit of values in `[low, high]`, or the identity when no interval is known."""

    low: float | None = None
    high: float | None = None

    def forward(self, y: np.ndarray) -> np.ndarray:
        if self.low is None or self.high is None:
            return y
        t = np.clip((y - self.low) / (self.high - self.low), WARP_EPS, 1.0 - WARP_EPS)
        return np.log(t) - np.log1p(-t)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        if self.low is None or self.high is None:
            return z
        return self.low + (self.high - self.low) * expit(z)  # no overflow warning far out in the tails


@dataclass(frozen=True)
class QuadraticFit:
    """One objective's fitted quadratic: coefficients (`p`), its warp, ridge strength and held-out R²."""

    coef: np.ndarray
    warp: Warp
    ridge: float
    r2: float  # leave-one-out, in the objective's scale; nan when the values do not vary

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions (`c`) at `c x d` points."""
        return self.warp.inverse(quadratic_features(X) @ self.coef)


def _ridge_loo(F: np.ndarray, z: np.ndarray, ridge: float,
               groups: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Ridge coefficients (`p`) and held-out predictions (`n`); the constant is not penalised.

    Each row is predicted from the others, except the rows of one of `groups` (twins: the evaluations of one
    point), predicted together from the rest: with hat matrix `H`, residuals `r` and group `S`, the fit without
    `S` leaves `(I - H_SS)^-1 r_S` at `S` (the one-row shortcut `r_i / (1 - H_ii)`, for a block).
    """
    penalty = np.full(F.shape[1], ridge)
    penalty[0] = 0.0
    A = F.T @ F + np.diag(penalty) + 1e-12 * np.eye(F.shape[1])
    A_inv_Ft = np.linalg.solve(A, F.T)  # p x n
    coef = A_inv_Ft @ z
    leverage = np.einsum("ij,ji->i", F, A_inv_Ft)  # diagonal of the hat matrix, n
    resid = z - F @ coef
    loo = z - resid / np.clip(1.0 - leverage, 1e-9, None)
    for S in groups:
        H_SS = F[S] @ A_inv_Ft[:, S]  # k x k
        loo[S] = z[S] - np.linalg.solve(np.eye(len(S)) * (1.0 + 1e-9) - H_SS, resid[S])
    return coef, loo


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    return float("nan") if total <= 0.0 else 1.0 - float(np.sum((y - pred) ** 2)) / total


def fit_quadratic(train_X: np.ndarray, train_y: np.ndarray, warp: Warp | None = None) -> QuadraticFit:
    """Fit one objective: `train_X` is `n x d`, `train_y` is `n`; the ridge with the least held-out error wins
    (a point evaluated more than once held out with its twins)."""
    if train_X.ndim != 2 or train_y.shape != (train_X.shape[0],):
        raise ValueError(f"train_X {train_X.shape} and train_y {train_y.shape} must be `n x d` and `n`")
    if train_X.shape[0] < 2:
        raise ValueError(f"need at least 2 points to fit a quadratic, got {train_X.shape[0]}")
    warp = warp or Warp()
    F, z, groups = quadratic_features(train_X), warp.forward(train_y), twin_groups(train_X)
    best: QuadraticFit | None = None
    best_err = np.inf
    for ridge in RIDGE_GRID:
        coef, loo = _ridge_loo(F, z, ridge, groups)
        err = float(np.sum((train_y - warp.inverse(loo)) ** 2))
        if err < best_err:
            best_err, best = err, QuadraticFit(coef, warp, ridge, _r2(train_y, warp.inverse(loo)))
    assert best is not None
    return best


@dataclass(frozen=True)
class QuadraticSurrogate:
    """One quadratic per objective."""

    fits: tuple[QuadraticFit, ...]

    @classmethod
    def fit(cls, train_X: np.ndarray, train_Y: np.ndarray,
            warps: Sequence[Warp | None] | None = None) -> QuadraticSurrogate:
        """Fit on `n x d` points and `n x m` values."""
        warps = warps or [None] * train_Y.shape[1]
        return cls(tuple(fit_quadratic(train_X, train_Y[:, i], w) for i, w in enumerate(warps)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions, `c x m`, at `c x d` points."""
        return np.stack([f.predict(X) for f in self.fits], axis=-1)

    def loo_errors(self, train_X: np.ndarray, train_Y: np.ndarray) -> np.ndarray:
        """Squared leave-one-out errors (`n x m`) of each surrogate at its own training points."""
        out = []
        groups = twin_groups(train_X)
        for i, fit in enumerate(self.fits):
            z = fit.warp.forward(train_Y[:, i])
            _, loo = _ridge_loo(quadratic_features(train_X), z, fit.ridge, groups)
            out.append((train_Y[:, i] - fit.warp.inverse(loo)) ** 2)
        return np.stack(out, axis=-1)

    @property
    def r2(self) -> tuple[float, ...]:
        return tuple(f.r2 for f in self.fits)
