"""Linear: the weighted mean of the experts (the base is not one of the averaged models)."""

from __future__ import annotations

import torch

from evaluators.methods.base import SegmentData, SegmentParams


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    # sum_i w_i (base + tau_i) = (sum_i w_i) base + sum_i w_i tau_i, then / sum_i w_i when normalising
    total = float(params.weight.sum())
    if params.normalize:
        scale = total if abs(total) >= 1e-8 else 1.0
        torch.addmv(data.base, data.tau.T, (params.weight / scale).to(data.tau.dtype), out=out)
    else:
        torch.addmv(data.base, data.tau.T, params.weight.to(data.tau.dtype), beta=total, out=out)
