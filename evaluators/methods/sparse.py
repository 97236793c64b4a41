"""mergekit's generalized task arithmetic (task arithmetic, TIES, DARE, breadcrumbs, DELLA), operation for operation.

For each tensor: each expert's task vector is sparsified (by magnitude, as outliers, at random, or DELLA's
magnitude-ranked random drop), optionally rescaled to keep its L1 norm, weighted, then either summed or merged
by TIES sign election (entries that agree with the elected sign of the sum), normalised by the summed weights
when asked, scaled by lambda and added to the base.

`merge_block` is the one statement of that arithmetic, run eagerly on small tensors and compiled into one fused
loop on large ones (`mergefront.evaluators.methods.fused`, which compiles it so that every operation rounds to the
tensor's dtype as eager torch does). It performs mergekit's operations in mergekit's order and precision: the
weighted delta rounds to the tensor's dtype (after the rescale, which rounds in mergekit's work dtype); sums over
experts accumulate in float32 (float64 for float64 tensors) and round once, as `torch.sum` over experts does;
the elected sign is that of the rounded sum; normalising, lambda and the base each round once. So a merge equals
mergekit's bit for bit where torch's own sum adds the experts in order (up to four experts; beyond, `torch.sum`
groups them by a tensor's column position and thread split, a last-bit difference). Masks come from ranks computed
once per tensor with mergekit's own sort, so a new density costs no sort and keeps exactly mergekit's entries; random
masks are a counter-based hash of each entry's index under a key from the candidate's seed (`base.random_bits`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mergefront.evaluators.methods import fused
from mergefront.evaluators.methods.base import (
    KeepRule,
    MergeMethod,
    SegmentData,
    SegmentParams,
    random_bits,
    uniform,
)


@dataclass(frozen=True)
class Recipe:
    sparsify: str | None  # "magnitude", "outliers", "random", "della" or None
    consensus: bool


RECIPES = {
    "task_arithmetic": Recipe(None, consensus=False),
    "ties": Recipe("magnitude", consensus=True),
    "dare_ties": Recipe("random", consensus=True),
    "dare_linear": Recipe("random", consensus=False),
    "breadcrumbs": Recipe("outliers", consensus=False),
    "breadcrumbs_ties": Recipe("outliers", consensus=True),
    "della": Recipe("della", consensus=True),
    "della_linear": Recipe("della", consensus=False),
}


def method(name: str) -> MergeMethod:
    """The merge method `name` of this family."""
    recipe = RECIPES[name]

    def merge_method(data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
        merge(recipe, data, params, out)

    return merge_method


def merge(recipe: Recipe, data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
    """Write base + lambda * merged sparse deltas (`n`) into `out`."""
    k = data.tau.shape[0]
    dtype, device = data.tau.dtype, data.tau.device
    rule = KeepRule.of(recipe.sparsify, data, params)
    work = rule.work_dtype(dtype, device)
    scaled = bool(params.rescale and recipe.sparsify is not None)
    scale = _rescale(rule, data, work) if scaled else torch.ones(k, dtype=work, device=device)
    weight = params.weight.to(dtype)  # as mergekit: the weights in the tensor's dtype
    divisor = weight.view(k, *(1,) * len(data.shape)).sum(dim=0).view(())  # mergekit's very sum
    divisor = torch.where(divisor.abs() < 1e-8, 1.0, divisor)
    lam = torch.tensor(params.lam, dtype=_accumulator(dtype), device=device)
    block = functools.partial(merge_block, recipe.sparsify, recipe.consensus, params.normalize, scaled, k)
    table = _table(rule, data)
    fused.blockwise(("merge", recipe.sparsify, recipe.consensus, params.normalize, scaled, k), block, data.base,
                    lambda lo, hi: (*_mask_inputs(rule, data, table, lo, hi), scale, weight, divisor, lam,
                                    data.base[lo:hi], out[lo:hi]), fused.ELEMENTWISE_STEP)


def kept_entries(recipe: Recipe, data: SegmentData, params: SegmentParams) -> torch.Tensor:
    """Which entries each expert keeps (`k x n`, bool), the masks `merge` applies."""
    k, n = data.tau.shape
    rule = KeepRule.of(recipe.sparsify, data, params)
    _, ranks, table, _, keys, lo, hi, full = _mask_inputs(rule, data, _table(rule, data), 0, n)
    index = torch.arange(n, dtype=torch.int64, device=data.base.device)
    masks = [keep_mask(rule.kind, i, ranks, table, index, keys, lo, hi, full) for i in range(k)]
    return torch.stack([torch.ones(n, dtype=torch.bool, device=index.device) if m is None else m for m in masks])


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    """The precision torch computes reduced-precision arithmetic and sums in."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _rescale(rule: KeepRule, data: SegmentData, work: torch.dtype) -> torch.Tensor:
    """Per expert, mergekit's |tau|_1 / |kept tau|_1 (`k`, in `work`): a first pass over the same masks."""
    k = data.tau.shape[0]
    block = functools.partial(kept_l1_block, rule.kind, k)
    table = _table(rule, data)
    sums = fused.blockwise(("kept_l1", rule.kind, k), block, data.base,
                           lambda lo, hi: _mask_inputs(rule, data, table, lo, hi))
    kept = torch.stack(sums).sum(dim=0)
    return rule.rescale(data, kept, work)


def _table(rule: KeepRule, data: SegmentData) -> torch.Tensor:
    """DELLA's keep probability per expert and row rank (`k x cols`, computed outside the kernels: no fused
    multiply-add, the same numbers on either path); an empty table for the other rules."""
    if rule.kind != "della":
        return torch.empty(0, dtype=torch.float32, device=data.base.device)
    return rule.probabilities(data.shape[-1] if len(data.shape) > 1 else data.numel)


def _mask_inputs(rule: KeepRule, data: SegmentData, table: torch.Tensor, lo: int, hi: int) -> tuple[Any, ...]:
    """The mask inputs of one block: the experts' task vectors, ranks (TIES, breadcrumbs: magnitude ranks; DELLA:
    row ranks), DELLA's probability table, the block's first index, and the rule's per-expert values."""
    k = data.tau.shape[0]
    ranks: list[torch.Tensor] = []
    if rule.ranking is not None:
        assert data.ranks is not None and data.rank_order == rule.ranking, "the engine ranks before these methods run"
        ranks = [data.ranks[i, lo:hi] for i in range(k)]
    elif rule.kind == "della":
        assert data.row_rank is not None, "the engine ranks rows before DELLA runs"
        ranks = [data.row_rank[i, lo:hi] for i in range(k)]
    offset = torch.tensor(lo, dtype=torch.int64, device=data.base.device)
    return [data.tau[i, lo:hi] for i in range(k)], ranks, table, offset, rule.keys, rule.lo, rule.hi, rule.full


def keep_mask(kind: str | None, i: int, ranks: Sequence[torch.Tensor], table: torch.Tensor, index: torch.Tensor,
              keys: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, full: torch.Tensor) -> torch.Tensor | None:
    """Expert i's kept entries of a block (`m`, bool), as `KeepRule` says; None when it keeps all."""
    if kind in ("magnitude", "outliers"):
        keep = (ranks[i] >= lo[i]) & (ranks[i] < hi[i])
    elif kind == "random":
        keep = random_bits(index, keys[i]) < hi[i]
    elif kind == "della":
        keep = uniform(random_bits(index, keys[i])) < table[i][ranks[i]]  # the row rank's keep probability
    else:
        return None
    return keep | full[i]


def merge_block(kind: str | None, consensus: bool, normalize: bool, scaled: bool, k: int, taus: list[torch.Tensor],
                ranks: list[torch.Tensor], table: torch.Tensor, offset: torch.Tensor, keys: torch.Tensor,
                lo: torch.Tensor, hi: torch.Tensor, full: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor,
                divisor: torch.Tensor, lam: torch.Tensor, base: torch.Tensor, out: torch.Tensor) -> None:
    """out = base + lam * merged deltas of one block (`m`), expert by expert, in mergekit's order and precision."""
    dtype = base.dtype
    index = torch.arange(base.numel(), dtype=torch.int64, device=base.device) + offset
    deltas = []
    for i in range(k):
        delta = taus[i]
        keep = keep_mask(kind, i, ranks, table, index, keys, lo, hi, full)
        if keep is not None:
            delta = torch.where(keep, delta, 0.0)
        if scaled:
            delta = (delta.to(scale.dtype) * scale[i]).to(dtype)
        deltas.append(delta * weight[i])  # rounds to the tensor's dtype, as mergekit's deltas.mul_(weights)
    total = _sum(deltas, lam.dtype).to(dtype)
    if consensus:
        positive = total >= 0  # the sign of the rounded sum; a zero sum elects +, as mergekit
        agree = [torch.where(positive, delta > 0, delta < 0) for delta in deltas]  # zero deltas agree with neither
        total = _sum([torch.where(a, delta, 0.0) for a, delta in zip(agree, deltas, strict=True)], lam.dtype).to(dtype)
        divisor = _sum([torch.where(agree[i], weight[i], 0.0) for i in range(k)], lam.dtype).to(dtype)
        divisor = torch.where(divisor == 0, 1.0, divisor)
    if normalize:
        total = total / divisor
    total = (total.to(lam.dtype) * lam).to(dtype)  # times a Python float, as mergekit (exact when lambda is 1)
    out.copy_(base + total)


def _sum(terms: list[torch.Tensor], acc: torch.dtype) -> torch.Tensor:
    """The terms added in order in `acc` (what `torch.sum` over up to four experts does)."""
    total = terms[0].to(acc)
    for term in terms[1:]:
        total = total + term.to(acc)
    return total


def kept_l1_block(kind: str | None, k: int, taus: list[torch.Tensor], ranks: list[torch.Tensor], table: torch.Tensor,
                  offset: torch.Tensor, keys: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                  full: torch.Tensor) -> torch.Tensor:
    """Per expert, the L1 norm of its kept entries in one block (`k`, float64: the rescale rounds it once, so the
    eager and compiled paths, which add blocks of other sizes, round the same number)."""
    index = torch.arange(taus[0].numel(), dtype=torch.int64, device=taus[0].device) + offset
    sums = []
    for i in range(k):
        keep = keep_mask(kind, i, ranks, table, index, keys, lo, hi, full)
        magnitude = taus[i].abs()
        kept = magnitude if keep is None else torch.where(keep, magnitude, 0.0)
        # selected in the tensor's dtype, then widened: the same float64 terms as widening first, but the compiled
        # kernel's masks stay 32-bit (selecting float64 values made it convert every mask to 64-bit lanes: that
        # pass ran 5.5x slower on the CPU, DARE's merge 3x)
        sums.append(kept.to(torch.float64).sum())
    return torch.stack(sums)
