"""Task arithmetic: base + lambda * sum_i w_i tau_i, one fused matrix-vector product."""

from __future__ import annotations

import torch

from evaluators.methods.base import SegmentData, SegmentParams


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    w = params.weight * params.lam
    if params.normalize:
        norm = float(params.weight.sum())
        w = w / (norm if abs(norm) >= 1e-8 else 1.0)
    torch.addmv(data.base, data.tau.T, w.to(data.tau.dtype), out=out)
