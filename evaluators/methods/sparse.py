"""The sparsify-then-sum family (TIES, DARE, breadcrumbs, DELLA), with mergekit's semantics, in cache-sized chunks.

For each tensor: each expert's task vector is sparsified (by magnitude, as outliers, at random, or DELLA's
magnitude-ranked random drop), optionally rescaled to keep its L1 norm, weighted, then either summed or merged
by TIES sign election (entries that agree with the elected sign of the sum), normalised by the summed weights
when asked, scaled by lambda and added to the base. Masks come from ranks computed once per tensor, so a new
density costs no sort and keeps exactly as many entries as mergekit would; random masks are a counter-based hash
of each entry's index under a key from the candidate's seed (`base.random_bits`), so a merge replays exactly.
Large tensors go through compiled kernels that fuse all of this into one pass
(`mergefront.evaluators.methods.fused`), with the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mergefront.evaluators.methods import fused
from mergefront.evaluators.methods.base import KeepRule, SegmentData, SegmentParams, l1_rescale, random_bits, uniform

CHUNK = 1 << 16  # columns per step: the k x CHUNK temporaries stay in cache


@dataclass(frozen=True)
class Recipe:
    sparsify: str | None  # "magnitude", "outliers", "random", "della" or None
    consensus: bool


def merge(recipe: Recipe, data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    """Write base + lambda * merged sparse deltas (`n`) into `out`."""
    if fused.applies(data) and fused.merge(recipe.sparsify, recipe.consensus, data, params, out):
        return
    n = data.numel
    rule = KeepRule.of(recipe.sparsify, data, params)
    scale = _rescale(rule, data) if params.rescale and recipe.sparsify else None  # k
    w = params.weight.to(data.tau.dtype)[:, None]  # k x 1
    for start in range(0, n, CHUNK):
        sl = slice(start, min(start + CHUNK, n))
        keep = _keep(rule, data, sl)  # k x m, or None
        delta = data.tau[:, sl] * (w if scale is None else w * scale[:, None])  # k x m, a new tensor
        if keep is not None:
            delta.mul_(keep)
        total, divisor = _combine(delta, w, recipe.consensus)
        if params.normalize:
            total.div_(divisor)
        torch.add(data.base[sl], total, alpha=params.lam, out=out[sl])


def _keep(rule: KeepRule, data: SegmentData, sl: slice) -> torch.Tensor | None:
    """Which entries of the chunk each expert keeps (`k x m`, bool); None when all are kept."""
    if rule.kind is None:
        return None
    full = rule.full[:, None]
    if rule.kind in ("magnitude", "outliers"):
        assert data.rank_desc is not None, "the engine ranks magnitudes before these methods run"
        rank = data.rank_desc[:, sl]
        keep = rank < rule.hi[:, None]
        return (keep & (rank >= rule.lo[:, None]) if rule.kind == "outliers" else keep) | full
    index = torch.arange(sl.start, sl.stop, dtype=torch.int64, device=data.tau.device)  # m
    bits = random_bits(index[None, :], rule.keys[:, None])  # k x m
    if rule.kind == "random":
        return (bits < rule.hi[:, None]) | full
    assert data.row_rank is not None, "the engine ranks rows before DELLA runs"
    return (uniform(bits) < rule.probability(data.row_rank[:, sl])) | full


def _rescale(rule: KeepRule, data: SegmentData) -> torch.Tensor:
    """Per expert, |tau|_1 / |kept tau|_1 (`k`): a first pass over the same masks."""
    kept = torch.zeros(data.tau.shape[0], dtype=data.tau.dtype, device=data.tau.device)
    for start in range(0, data.numel, CHUNK):
        sl = slice(start, min(start + CHUNK, data.numel))
        keep = _keep(rule, data, sl)
        kept += (data.tau[:, sl].abs() * keep).sum(dim=1) if keep is not None else data.tau[:, sl].abs().sum(dim=1)
    return l1_rescale(data, kept)


def _combine(delta: torch.Tensor, w: torch.Tensor, consensus: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed deltas (`m`) and what normalising divides them by (`m`, or a 1-element tensor)."""
    if not consensus:
        divisor = w.sum()
        return delta.sum(dim=0), torch.where(divisor.abs() < 1e-8, 1.0, divisor)
    elected = torch.where(delta.sum(dim=0) >= 0, 1.0, -1.0).to(delta.dtype)  # a zero sum elects +, as mergekit
    agree = torch.sign(delta) == elected  # zero deltas agree with neither sign
    total = torch.where(agree, delta, 0.0).sum(dim=0)
    divisor = torch.where(agree, w, 0.0).sum(dim=0)
    return total, torch.where(divisor == 0, 1.0, divisor)
