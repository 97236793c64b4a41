"""Compiled kernels for the sparsify-then-sum family (TIES, DARE, breadcrumbs, DELLA) and for weighted sums
(task arithmetic, linear, Model Stock, SLERP) on large tensors.

The eager path (`mergefront.evaluators.methods.sparse`) makes about ten passes over each `k x chunk` block (masks,
weighted deltas, sign election, agreement, sums), each a separate torch operation. Here the same arithmetic is written
expert by expert on 1-D blocks and compiled with `torch.compile` (Inductor: C++/OpenMP on the CPU, Triton on
CUDA), which fuses it into one loop that reads each task vector, its ranks, and the base once, draws its random
numbers in registers, and writes the output buffer once (weighted sums: `out = beta * base + sum_i w_i tau_i`).
Masks, the sign election and the normalisation are those of the eager path, entry for entry; random draws are the
same counter-based hash of each entry's index (`base.random_bits`), so a candidate merges to the same tensor
either way (sums may differ in the last bits: the order of additions differs).

Used for tensors of at least `FUSED_MIN` entries when a compiler is there (a C++ compiler for the CPU, Triton for
CUDA) and `MERGEFRONT_FUSED` is not `0`; a kernel that fails to compile turns the fused path off for the process
(with a warning) and the eager path takes over. The first merge of each method compiles its kernels (seconds;
Inductor caches them on disk for later processes).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mergefront.evaluators.methods.base import KeepRule, SegmentData, SegmentParams, l1_rescale, random_bits, uniform

log = logging.getLogger(__name__)

FUSED_MIN = 1 << 16  # entries per tensor from which the compiled kernels take over (one compile serves all sizes)
STEP = 1 << 20  # entries per compiled call

_state: dict[str, Any] = {"broken": False, "kernels": {}}


def applies(data: SegmentData) -> bool:
    """Whether this tensor merges through the compiled kernels."""
    return _usable(data.base)


def _usable(base: torch.Tensor) -> bool:
    return base.numel() >= FUSED_MIN and not _state["broken"] and _compiler_for(base.device.type)


def _compiler_for(device_type: str) -> bool:
    return os.environ.get("MERGEFRONT_FUSED", "1") != "0" and _has_compiler(device_type)


@functools.cache
def _has_compiler(device_type: str) -> bool:
    if device_type == "cpu":
        return any(shutil.which(cc) for cc in ("c++", "g++", "clang++"))
    if device_type == "cuda":
        return importlib.util.find_spec("triton") is not None
    return False


def merge(sparsify: str | None, consensus: bool, data: SegmentData, params: SegmentParams,
          out: torch.Tensor) -> bool:
    """Write the merge into `out` with the compiled kernels; False (nothing written) if they cannot run."""
    try:
        _merge(sparsify, consensus, data, params, out)
        return True
    except Exception as exc:  # a compiler problem: fall back for good, the eager path gives the same merge
        _disable(exc)
        return False


def _merge(sparsify: str | None, consensus: bool, data: SegmentData, params: SegmentParams,
           out: torch.Tensor) -> None:
    k, n = data.tau.shape
    dtype = data.tau.dtype
    rule = KeepRule.of(sparsify, data, params)
    coef = params.weight.to(dtype)
    if params.rescale and sparsify is not None:
        coef = coef * _l1_scale(rule, data).to(dtype)
    wsum = params.weight.to(dtype).sum()
    wsum = torch.where(wsum.abs() < 1e-8, 1.0, wsum)
    lam = torch.tensor(params.lam, dtype=dtype, device=data.base.device)
    kernel = _kernel("merge", sparsify, consensus, params.normalize, k)
    for lo, hi in _blocks(n):
        kernel([data.tau[i, lo:hi] for i in range(k)], *_block(rule, data, lo, hi), coef, params.weight.to(dtype),
               data.base[lo:hi], lam, wsum, out[lo:hi])


def weighted_sum(base: torch.Tensor, tau: torch.Tensor, w: torch.Tensor, out: torch.Tensor, beta: float) -> bool:
    """`out = beta * base + w @ tau` in one fused pass per block; False (nothing written) if it cannot run."""
    if not _usable(base):
        return False
    try:
        k = tau.shape[0]
        kernel = _kernel("weighted", None, False, False, k)
        beta_t = torch.tensor(beta, dtype=tau.dtype, device=tau.device)
        for lo, hi in _blocks(base.numel()):
            kernel([tau[i, lo:hi] for i in range(k)], w, base[lo:hi], beta_t, out[lo:hi])
        return True
    except Exception as exc:
        _disable(exc)
        return False


def _disable(exc: Exception) -> None:
    _state["broken"] = True
    log.warning("compiled merge kernels are unavailable (%s: %s); merging with eager torch operations",
                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")


def _l1_scale(rule: KeepRule, data: SegmentData) -> torch.Tensor:
    """Per expert, |tau|_1 / |kept tau|_1 (`k`), mergekit's rescale for random drops."""
    k, n = data.tau.shape
    kernel = _kernel("kept_l1", rule.kind, False, False, k)
    kept = torch.zeros(k, dtype=torch.float64, device=data.base.device)
    for lo, hi in _blocks(n):
        kept += kernel([data.tau[i, lo:hi] for i in range(k)], *_block(rule, data, lo, hi)).double()
    return l1_rescale(data, kept)


def _blocks(n: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + STEP, n)) for lo in range(0, n, STEP)]


def _block(rule: KeepRule, data: SegmentData, lo: int, hi: int) -> tuple[Any, ...]:
    """The mask inputs of one block: each expert's ranks (DELLA: keep probabilities), the block's first index, and
    the rule's per-expert values."""
    k = data.tau.shape[0]
    ranks: list[torch.Tensor] = []
    if rule.kind in ("magnitude", "outliers"):
        assert data.rank_desc is not None
        ranks = [data.rank_desc[i, lo:hi] for i in range(k)]
    elif rule.kind == "della":  # computed outside the kernel, as the eager path does (no fused multiply-add)
        assert data.row_rank is not None
        ranks = [rule.probability(data.row_rank[i, lo:hi], i) for i in range(k)]
    offset = torch.tensor(lo, dtype=torch.int64, device=data.base.device)
    return ranks, offset, rule.keys, rule.lo, rule.hi, rule.full


def _keep(kind: str | None, i: int, ranks: Sequence[torch.Tensor], index: torch.Tensor, keys: torch.Tensor,
          lo: torch.Tensor, hi: torch.Tensor, full: torch.Tensor) -> torch.Tensor | None:
    """Expert i's kept entries of a block, as `KeepRule` says (the per-expert twin of `sparse._keep`)."""
    if kind == "magnitude":
        keep = ranks[i] < hi[i]
    elif kind == "outliers":
        keep = (ranks[i] >= lo[i]) & (ranks[i] < hi[i])
    elif kind == "random":
        keep = random_bits(index, keys[i]) < hi[i]
    elif kind == "della":
        keep = uniform(random_bits(index, keys[i])) < ranks[i]  # ranks: the keep probabilities
    else:
        return None
    return keep | full[i]


def _kernel(what: str, kind: str | None, consensus: bool, normalize: bool, k: int) -> Callable[..., torch.Tensor]:
    key = (what, kind, consensus, normalize, k)
    if key not in _state["kernels"]:
        def bound(*args: Any) -> torch.Tensor | None:
            if what == "merge":
                _merge_block(kind, consensus, normalize, k, *args)
            elif what == "weighted":
                _weighted_block(k, *args)
            else:
                return _kept_l1_block(kind, k, *args)
            return None

        _allow_recompiles()
        _state["kernels"][key] = torch.compile(bound, dynamic=True)
    kernel: Callable[..., torch.Tensor] = _state["kernels"][key]
    return kernel


def _allow_recompiles() -> None:
    """Every (method, switches, k) is its own graph of the same Python function: let Dynamo keep them all."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), 256))


def _merge_block(kind: str | None, consensus: bool, normalize: bool, k: int, taus: list[torch.Tensor],
                 ranks: list[torch.Tensor], offset: torch.Tensor, keys: torch.Tensor, lo: torch.Tensor,
                 hi: torch.Tensor, full: torch.Tensor, coef: torch.Tensor, weight: torch.Tensor,
                 base: torch.Tensor, lam: torch.Tensor, wsum: torch.Tensor, out: torch.Tensor) -> None:
    """out = base + lam * merged deltas of one block, expert by expert (the compiler fuses it into one loop)."""
    index = torch.arange(base.numel(), dtype=torch.int64, device=base.device) + offset
    deltas = []
    for i in range(k):
        keep = _keep(kind, i, ranks, index, keys, lo, hi, full)
        delta = taus[i] * coef[i]
        deltas.append(delta if keep is None else torch.where(keep, delta, 0.0))
    total = deltas[0]
    for delta in deltas[1:]:
        total = total + delta
    if consensus:
        positive = total >= 0  # a zero sum elects +, as mergekit
        total = torch.zeros_like(base)
        divisor = torch.zeros_like(base)
        for i in range(k):
            agree = torch.where(positive, deltas[i] > 0, deltas[i] < 0)  # zero deltas agree with neither sign
            total = total + torch.where(agree, deltas[i], 0.0)
            divisor = divisor + torch.where(agree, weight[i], 0.0)
        if normalize:
            total = total / torch.where(divisor == 0, 1.0, divisor)
    elif normalize:
        total = total / wsum
    out.copy_(base + lam * total)


def _weighted_block(k: int, taus: list[torch.Tensor], w: torch.Tensor, base: torch.Tensor, beta: torch.Tensor,
                    out: torch.Tensor) -> None:
    """out = beta * base + sum_i w_i tau_i over one block."""
    total = base * beta
    for i in range(k):
        total = total + taus[i] * w[i]
    out.copy_(total)


def _kept_l1_block(kind: str | None, k: int, taus: list[torch.Tensor], ranks: list[torch.Tensor],
                   offset: torch.Tensor, keys: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                   full: torch.Tensor) -> torch.Tensor:
    """Per expert, the L1 norm of its kept entries in one block (`k`)."""
    index = torch.arange(taus[0].numel(), dtype=torch.int64, device=taus[0].device) + offset
    sums = []
    for i in range(k):
        keep = _keep(kind, i, ranks, index, keys, lo, hi, full)
        magnitude = taus[i].abs()
        sums.append((magnitude if keep is None else torch.where(keep, magnitude, 0.0)).sum())
    return torch.stack(sums)
