"""SLERP between the base (t = 0) and one expert (t = 1), per tensor, as mergekit 0.1.5 computes it.

The cosine between base and expert depends on the checkpoints alone, so it is computed on the first merge and
kept: of the two tensors each divided by its norm (a norm at or below 1e-8 counts as 1), clamped to [-1, 1].
Above 0.9995 in absolute value the tensors are lerped. The coefficients are computed in float32 (float64 for
float64 tensors), as mergekit does; each merge is then `c0 * base + c1 * (base + tau) = (c0 + c1) * base + c1 * tau`,
one fused weighted sum.
"""

from __future__ import annotations

import torch

from mergefront.evaluators.methods.base import SegmentData, SegmentParams, weighted_sum_into

DOT_THRESHOLD = 0.9995  # mergekit's: nearly parallel (or antiparallel) tensors are interpolated linearly
NORM_EPS = 1e-8  # mergekit's: a norm at or below it is taken as 1


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    if data.cosine is None:
        data.cosine = _cosine(data)
    dtype = torch.float64 if data.base.dtype == torch.float64 else torch.float32
    t = torch.tensor(params.t, dtype=dtype)
    if abs(data.cosine) > DOT_THRESHOLD:
        c0, c1 = 1 - t, t
    else:
        theta = torch.acos(torch.tensor(data.cosine, dtype=dtype))
        c0, c1 = torch.sin((1 - t) * theta) / torch.sin(theta), torch.sin(t * theta) / torch.sin(theta)
    weighted_sum_into(data.base, data.tau[:1], c1.view(1).to(data.tau.device), out, beta=float(c0 + c1))


def _cosine(data: SegmentData) -> float:
    v0 = data.base.double()
    v1 = v0 + data.tau[0].double()
    n0, n1 = float(v0.norm()), float(v1.norm())
    dot = float((v0 / (n0 if n0 > NORM_EPS else 1.0)) @ (v1 / (n1 if n1 > NORM_EPS else 1.0)))
    return max(-1.0, min(1.0, dot))
