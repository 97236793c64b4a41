"""Linear: the weighted mean of the experts (the base is not one of the averaged models)."""

from __future__ import annotations

import torch

from mergefront.evaluators.methods.base import SegmentData, SegmentParams, weighted_sum_into


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    # sum_i w_i (base + tau_i) = (sum_i w_i) base + sum_i w_i tau_i, then / sum_i w_i when normalising
    total = float(params.weight.sum())
    if params.normalize:
        scale = total if abs(total) >= 1e-8 else 1.0
        weighted_sum_into(data.base, data.tau, params.weight / scale, out)
    else:
        weighted_sum_into(data.base, data.tau, params.weight, out, beta=total)
