"""Task arithmetic: base + lambda * sum_i w_i tau_i, fused matrix-vector products over cache-sized chunks."""

from __future__ import annotations

import torch

from mergefront.evaluators.methods.base import SegmentData, SegmentParams, weighted_sum_into


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    w = params.weight * params.lam
    if params.normalize:
        norm = float(params.weight.sum())
        w = w / (norm if abs(norm) >= 1e-8 else 1.0)
    weighted_sum_into(data.base, data.tau, w, out)
