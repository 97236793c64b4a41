"""Model Stock: move the experts' mean toward the base by t = k cos / (1 + (k - 1) cos), per tensor.

`cos` is the mean pairwise cosine of the task vectors: it depends on the experts alone, so their Gram matrix is
computed on the first merge and kept (`k x k` per tensor); each merge is then one fused weighted sum.
"""

from __future__ import annotations

import torch

from mergefront.evaluators.methods.base import SegmentData, SegmentParams, weighted_sum_into


def merge(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    k = data.tau.shape[0]
    if data.gram is None:
        data.gram = (data.tau.double() @ data.tau.double().T) if data.numel < (1 << 22) else _gram(data.tau)
    norms = data.gram.diagonal().sqrt().clamp_min(1e-12)
    cosines = data.gram / (norms[:, None] * norms[None, :])  # k x k
    cos = float((cosines.sum() - cosines.diagonal().sum()) / (k * (k - 1)))
    t = k * cos / (1 + (k - 1) * cos) if (1 + (k - 1) * cos) != 0 else 0.0
    # t * mean_i(base + tau_i) + (1 - t) * base = base + (t / k) * sum_i tau_i
    weighted_sum_into(data.base, data.tau, torch.full((k,), t / k, dtype=torch.float64, device=data.tau.device),
                      out)


def _gram(tau: torch.Tensor, step: int = 1 << 20) -> torch.Tensor:
    """`tau @ tau.T` (`k x k`, float64) accumulated over column blocks, with no `k x n` float64 copy."""
    gram = torch.zeros((tau.shape[0],) * 2, dtype=torch.float64, device=tau.device)
    for start in range(0, tau.shape[1], step):
        block = tau[:, start:start + step].double()
        gram += block @ block.T
    return gram
