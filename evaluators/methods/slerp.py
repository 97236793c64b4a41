"""SLERP between the base (t = 0) and one expert (t = 1), per tensor; nearly parallel tensors are lerped."""

from __future__ import annotations

import math

import torch

from evaluators.methods.base import SegmentData, SegmentParams

PARALLEL = 1.0 - 1e-6


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    v0 = data.base
    v1 = data.base + data.tau[0]
    t = params.t
    norms = v0.norm() * v1.norm()
    cos = float((v0 @ v1) / norms) if float(norms) > 0 else 1.0
    if abs(cos) > PARALLEL:
        torch.lerp(v0, v1, t, out=out)
        return
    theta = math.acos(max(-1.0, min(1.0, cos)))
    s0 = math.sin((1 - t) * theta) / math.sin(theta)
    s1 = math.sin(t * theta) / math.sin(theta)
    torch.add(v0 * s0, v1, alpha=s1, out=out)
