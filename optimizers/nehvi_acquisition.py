"""The BoTorch half of qLogNEHVI (imported lazily, so the API process never loads BoTorch).

Everything here is in BoTorch's maximisation form.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
from botorch.acquisition.multi_objective.utils import (
    get_default_partitioning_alpha,
    prune_inferior_points_multi_objective,
)
from botorch.exceptions.errors import ModelFittingError
from botorch.models import ModelListGP
from botorch.optim import optimize_acqf
from botorch.sampling.normal import SobolQMCNormalSampler
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from mergefront.surrogates.gp import DTYPE, PriorFn, fit_gp_list, seeded_torch
from mergefront.surrogates.quadratic import WARP_EPS

if TYPE_CHECKING:
    from mergefront.optimizers.qnehvi import AcquisitionSettings

LARGE_HISTORY = 100  # completed evaluations from which proposals trade a little precision for time
LARGE_BASELINE = 48  # baseline points kept then (the most probably Pareto-optimal)
LARGE_MC_SAMPLES = 32
LARGE_FIT_ITERATIONS = 60  # L-BFGS-B iterations per GP fit then (hyperparameters settle well before)
LARGE_RESTARTS = 2  # L-BFGS-B starts per candidate then
LARGE_RAW_SAMPLES = 64
LARGE_ALPHA = 1e-2  # approximate box decomposition (BoTorch's own default above 4 objectives is 1e-3 .. 1e-2)
OUTCOME_WARPS = ("none", "logit")
DE_WEIGHT = 0.5  # F of the differential-evolution mutant a + F (b - c)
DE_CROSSOVER = 0.5  # probability that a coordinate of the trial comes from the mutant


def propose(train_X: np.ndarray, train_Y: np.ndarray, ref_point: np.ndarray, pending: np.ndarray, n: int,
            seed: int, settings: AcquisitionSettings, *, weak_to_strong: bool = False,
            uncertainty_screening: bool = False, priors: Sequence[PriorFn] | None = None,
            box: np.ndarray | None = None,
            value_bounds: Sequence[tuple[float, float] | None] | None = None) -> np.ndarray:
    """Maximise qLogNEHVI for `n` candidates.

    Args:
        train_X: `k x d` completed points in the unit cube.
        train_Y: `k x m` their values, maximised.
        ref_point: `m`, maximised.
        pending: `p x d` points in flight (passed to the acquisition as `X_pending`).
        n: how many candidates.
        seed: seeds the GP fit, the quasi-Monte-Carlo sampler and the optimiser's starts.
        priors: per objective, the GP's prior mean (maximised); default constant.
        box: `2 x d` lower and upper corners inside the unit cube the candidates must lie in; default the cube.
        value_bounds: per objective, the interval its values lie in (maximised), or None; with `settings.outcome_warp`
            the GPs fit those objectives warped (`OutcomeWarp`) and the acquisition maps their samples back.

    Returns:
        `n x d` candidates.
    """
    X = torch.as_tensor(train_X, dtype=DTYPE)
    warps = _warps(settings.outcome_warp, value_bounds, train_Y.shape[1])
    fitted = train_Y if warps is None else np.stack(
        [y if w is None else w.forward(y) for w, y in zip(warps, train_Y.T, strict=True)], axis=1)
    Y = torch.as_tensor(fitted, dtype=DTYPE)  # k x m, each objective in its GP's scale
    try:
        model = fit_gp_list(X, Y, seed, LARGE_FIT_ITERATIONS if X.shape[0] > LARGE_HISTORY else None, priors)
    except ModelFittingError as exc:
        raise RuntimeError(f"GP fit failed on {tuple(X.shape)} points: {exc}") from exc
    with seeded_torch(seed + 1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numerical warnings of the optimiser; the best candidate is kept
        acq = _acquisition(model, X, Y.shape[1], ref_point, pending, seed, settings, warps)
        q = 2 * n if uncertainty_screening else n
        bounds = torch.stack([torch.zeros(X.shape[1], dtype=DTYPE), torch.ones(X.shape[1], dtype=DTYPE)])
        if box is not None:
            bounds = torch.as_tensor(np.clip(box, 0.0, 1.0), dtype=DTYPE)
        restarts, raw = settings.num_restarts, settings.raw_samples
        if X.shape[0] > LARGE_HISTORY:
            restarts, raw = min(restarts, LARGE_RESTARTS), min(raw, LARGE_RAW_SAMPLES)
        cands, _ = optimize_acqf(acq, bounds=bounds, q=q, num_restarts=restarts, raw_samples=raw, sequential=True,
                                 options={"batch_limit": 8, "maxiter": settings.maxiter})
        cands = cands.detach()  # q x d
        if weak_to_strong:
            cands = _weak_to_strong(acq, cands, X, Y, np.random.default_rng(seed))
        if uncertainty_screening:
            cands = _most_uncertain(model, cands, n)
    return cands.numpy()


@dataclass(frozen=True)
class OutcomeWarp:
    """The logit of an objective's place in the interval `[low, high]` it is known to lie in (maximised), the scale
    its GP fits (as MAP's quadratics fit accuracies)."""

    low: float
    high: float

    def forward(self, y: np.ndarray) -> np.ndarray:
        t = np.clip((y - self.low) / (self.high - self.low), WARP_EPS, 1.0 - WARP_EPS)
        return np.log(t) - np.log1p(-t)

    def back(self, z: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(z)


def _warps(kind: str, bounds: Sequence[tuple[float, float] | None] | None, m: int) -> list[OutcomeWarp | None] | None:
    """Per objective, its warp (None where no interval is known) when `kind` is `logit`; None when nothing is warped."""
    if kind == "none" or bounds is None or all(b is None for b in bounds):
        return None
    if kind not in OUTCOME_WARPS:
        raise ValueError(f"outcome_warp must be one of {', '.join(OUTCOME_WARPS)}, got {kind!r}")
    if len(bounds) != m:
        raise ValueError(f"{len(bounds)} objective bounds for {m} objectives")
    return [None if b is None else OutcomeWarp(*b) for b in bounds]


def _unwarp(warps: Sequence[OutcomeWarp | None]) -> GenericMCMultiOutputObjective:
    """The acquisition's objective: GP samples (`... x m`, warped where a warp is given) on each objective's scale."""

    def back(samples: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        columns = [s if w is None else w.back(s) for w, s in zip(warps, samples.unbind(-1), strict=True)]
        return torch.stack(columns, dim=-1)

    return GenericMCMultiOutputObjective(back)


def _acquisition(model: ModelListGP, X: torch.Tensor, m: int, ref_point: np.ndarray, pending: np.ndarray,
                 seed: int, settings: AcquisitionSettings,
                 warps: Sequence[OutcomeWarp | None] | None = None) -> qLogNoisyExpectedHypervolumeImprovement:
    X_pending = torch.as_tensor(pending, dtype=DTYPE) if pending.shape[0] else None
    objective = None if warps is None else _unwarp(warps)
    ref = [float(v) for v in ref_point]
    samples, alpha, baseline = settings.mc_samples, get_default_partitioning_alpha(m), X
    if X.shape[0] > LARGE_HISTORY:
        # Long histories: the per-sample box decompositions over the baseline dominate a proposal. Keep the
        # LARGE_BASELINE points most likely to be Pareto-optimal, decompose approximately, use fewer samples.
        with torch.no_grad():
            baseline = prune_inferior_points_multi_objective(
                model, X, ref_point=torch.as_tensor(ref, dtype=DTYPE), objective=objective,
                max_frac=LARGE_BASELINE / X.shape[0])
        samples, alpha = min(samples, LARGE_MC_SAMPLES), max(alpha, LARGE_ALPHA)
    return qLogNoisyExpectedHypervolumeImprovement(
        model=model, ref_point=ref, X_baseline=baseline,
        sampler=SobolQMCNormalSampler(sample_shape=torch.Size([samples]), seed=seed),
        X_pending=X_pending, prune_baseline=baseline is X, alpha=alpha, objective=objective,
    )


def _strongest(X: torch.Tensor, Y: torch.Tensor, k: int) -> torch.Tensor:
    """The `k` best evaluated points (`k x d`) by non-dominated rank, then crowding-free order."""
    fronts = NonDominatedSorting().do(-Y.numpy())  # pymoo minimises
    order = np.concatenate(fronts)[:k]
    return X[torch.as_tensor(order)]


def _weak_to_strong(acq: qLogNoisyExpectedHypervolumeImprovement, cands: torch.Tensor, X: torch.Tensor,
                    Y: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Cross each candidate (`q x d`) with a DE mutant of the strongest points; keep the better of the pair."""
    strong = _strongest(X, Y, max(3, X.shape[0] // 3))
    out = []
    for cand in cands:
        a, b, c = strong[torch.as_tensor(rng.choice(strong.shape[0], size=3, replace=strong.shape[0] < 3))]
        mutant = a + DE_WEIGHT * (b - c)  # d
        take = torch.as_tensor(rng.random(cand.shape[0]) < DE_CROSSOVER)
        take[int(rng.integers(cand.shape[0]))] = True
        trial = torch.where(take, mutant, cand).clamp(0.0, 1.0)
        with torch.no_grad():
            values = acq.forward(torch.stack([cand, trial]).unsqueeze(1))  # 2
        out.append(trial if values[1] > values[0] else cand)
    return torch.stack(out)


def _most_uncertain(model: ModelListGP, cands: torch.Tensor, n: int) -> torch.Tensor:
    """The `n` of the candidates (`q x d`) with the largest summed posterior standard deviation."""
    with torch.no_grad():
        post = model.posterior(cands)
        # relative to each objective's spread, so no objective dominates the sum
        std = post.variance.clamp_min(0.0).sqrt() / post.mean.std(dim=0).clamp_min(1e-9)  # q x m
    keep = torch.argsort(std.sum(dim=-1), descending=True)[:n]
    return cands[torch.sort(keep).values]
