"""Sparsification and sign consensus shared by the TIES-family methods (all on `k x n` task vectors)."""

from __future__ import annotations

import torch

from evaluators.methods.base import SegmentData, SegmentParams, count


def trim_by_magnitude(data: SegmentData, density: torch.Tensor) -> torch.Tensor:
    """TIES: keep each expert's `density` fraction of largest-magnitude entries (`k x n`)."""
    threshold = data.magnitude_threshold(count(density, data.numel))  # k
    return torch.where(data.tau.abs() >= threshold[:, None], data.tau, 0.0)


def breadcrumbs(data: SegmentData, density: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Drop the `gamma` fraction of largest entries and keep the next `density` fraction (`k x n`)."""
    n = data.numel
    top = count(gamma, n)
    upper = data.magnitude_threshold(top)  # entries at or above are outliers; inf when none are dropped
    lower = data.magnitude_threshold((top + count(density, n)).clamp(max=n))
    mag = data.tau.abs()
    keep = (mag >= lower[:, None]) & ((mag < upper[:, None]) | (top[:, None] == 0))
    return torch.where(keep, data.tau, 0.0)


def dare(data: SegmentData, density: torch.Tensor) -> torch.Tensor:
    """DARE: keep each entry with probability `density`, rescaled by 1 / density (`k x n`)."""
    p = density.clamp(1e-6, 1.0)[:, None].expand_as(data.tau)
    keep = torch.bernoulli(p, generator=data.generator())
    return data.tau * keep / p


def della(data: SegmentData, density: torch.Tensor, epsilon: torch.Tensor) -> torch.Tensor:
    """DELLA: keep probabilities rise linearly with magnitude rank over density +- epsilon/2 (`k x n`)."""
    assert data.ranks is not None, "the engine ranks magnitudes before DELLA runs"
    n = data.numel
    spread = data.ranks.to(data.tau.dtype) / max(n - 1, 1)  # 0 for the smallest, 1 for the largest
    p = (density[:, None] - epsilon[:, None] / 2 + epsilon[:, None] * spread).clamp(1e-6, 1.0)
    keep = torch.bernoulli(p, generator=data.generator())
    return data.tau * keep / p


def disjoint_merge(deltas: torch.Tensor, params: SegmentParams) -> torch.Tensor:
    """TIES: weighted deltas vote a sign per entry; the agreeing ones are summed (`n`)."""
    weighted = deltas * params.weight[:, None]  # k x n
    elected = torch.sign(weighted.sum(dim=0))
    agree = (torch.sign(weighted) == elected) & (weighted != 0)
    total = torch.where(agree, weighted, 0.0).sum(dim=0)
    if not params.normalize:
        return total
    norm = torch.where(agree, params.weight[:, None].expand_as(weighted), 0.0).sum(dim=0)
    return total / torch.where(norm.abs() < 1e-8, 1.0, norm)


def weighted_sum(deltas: torch.Tensor, params: SegmentParams) -> torch.Tensor:
    """Sum of weighted deltas (`n`), divided by the sum of weights when normalising."""
    total = params.weight @ deltas
    if not params.normalize:
        return total
    norm = float(params.weight.sum())
    return total / (norm if abs(norm) >= 1e-8 else 1.0)
