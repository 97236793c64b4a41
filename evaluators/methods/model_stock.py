"""Model Stock: move the experts' mean toward the base by t = k cos / (1 + (k - 1) cos), per tensor."""

from __future__ import annotations

import torch

from evaluators.methods.base import SegmentData, SegmentParams


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    k = data.tau.shape[0]
    unit = data.tau / data.tau.norm(dim=1, keepdim=True).clamp_min(1e-12)  # k x n
    cosines = unit @ unit.T  # k x k
    cos = float((cosines.sum() - cosines.diagonal().sum()) / (k * (k - 1)))
    t = k * cos / (1 + (k - 1) * cos) if (1 + (k - 1) * cos) != 0 else 0.0
    # t * mean_i(base + tau_i) + (1 - t) * base = base + t * mean_i tau_i
    torch.add(data.base, data.tau.mean(dim=0), alpha=t, out=out)
