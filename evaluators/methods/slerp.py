"""SLERP between the base (t = 0) and one expert (t = 1), per tensor; nearly parallel tensors are lerped.

The angle between base and expert depends on the checkpoints alone, so it is computed on the first merge and
kept; each merge is then `s0 * base + s1 * (base + tau) = (s0 + s1) * base + s1 * tau`, one fused weighted sum.
"""

from __future__ import annotations

import math

import torch

from mergefront.evaluators.methods.base import SegmentData, SegmentParams, weighted_sum_into

PARALLEL = 1.0 - 1e-6


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    if data.cosine is None:
        v0 = data.base.double()
        v1 = v0 + data.tau[0].double()
        norms = v0.norm() * v1.norm()
        data.cosine = float((v0 @ v1) / norms) if float(norms) > 0 else 1.0
    t, cos = params.t, data.cosine
    if abs(cos) > PARALLEL:
        beta, s1 = 1.0, t  # lerp: base + t * tau
    else:
        theta = math.acos(max(-1.0, min(1.0, cos)))
        s0 = math.sin((1 - t) * theta) / math.sin(theta)
        s1 = math.sin(t * theta) / math.sin(theta)
        beta = s0 + s1
    weighted_sum_into(data.base, data.tau[:1], torch.tensor([s1], dtype=data.tau.dtype, device=data.tau.device), out,
                      beta=beta)
