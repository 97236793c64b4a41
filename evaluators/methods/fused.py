"""Compiled kernels: the merge arithmetic of `mergefront.evaluators.methods.sparse` and weighted sums (linear, Model
Stock, SLERP), fused into one loop per block on large tensors.

The eager path runs the same Python functions on cache-sized blocks, about ten torch operations per expert and
block (masks, weighted deltas, sign election, agreement, sums). `torch.compile` (Inductor: C++/OpenMP on the CPU,
Triton on CUDA) fuses them into one loop that reads each task vector, its ranks, and the base once, draws its
random numbers in registers, and writes the output buffer once. The kernels are compiled with
`emulate_precision_casts`, so every operation rounds to its dtype exactly as the eager operation does: a candidate
merges to the same tensor, bit for bit, on either path and in every dtype (weighted sums of float32 tensors
excepted: the eager path streams those through `addmv`, whose additions are ordered otherwise).

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
from collections.abc import Callable
from typing import Any

import torch

from mergefront.evaluators.methods.base import SegmentData

log = logging.getLogger(__name__)

FUSED_MIN = 1 << 16  # entries per tensor from which the compiled kernels take over (one compile serves all sizes)
STEP = 1 << 20  # entries per compiled call of a kernel that sums (its block sums are part of the result)
ELEMENTWISE_STEP = 1 << 28  # entries per call of a kernel that maps entries to entries from views, holding no
# temporaries: a call costs its guards and wrappers and leaves a thread idle while the other finishes its half, so a
# 134M-parameter model merges in one call per span (2^24 entries a call: 6 % slower on 2 cores)
EAGER_STEP = 1 << 16  # entries per eager call: the k x EAGER_STEP temporaries stay in cache

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


def blockwise(key: tuple[Any, ...], fn: Callable[..., Any], base: torch.Tensor,
              args_of: Callable[[int, int], tuple[Any, ...]], step: int = STEP) -> list[Any]:
    """`fn(*args_of(lo, hi))` over the blocks of a tensor of `base.numel()` entries; what each call returns.

    Compiled (one kernel per `key`, blocks of `step` entries) where the compiled path applies, else eager (blocks of
    `EAGER_STEP`). A kernel that fails to compile turns the compiled path off for the process, and the eager
    function runs every block again.
    """
    n = base.numel()
    if _usable(base):
        try:
            kernel = _kernel(key, fn)
            return [kernel(*args_of(lo, hi)) for lo, hi in _blocks(n, step)]
        except Exception as exc:  # a compiler problem: fall back for good, the eager path gives the same merge
            _disable(exc)
    return [fn(*args_of(lo, hi)) for lo, hi in _blocks(n, EAGER_STEP)]


def weighted_sum(base: torch.Tensor, tau: torch.Tensor, w: torch.Tensor, out: torch.Tensor, beta: float) -> bool:
    """`out = beta * base + w @ tau` in one fused pass per block, in float32 for reduced-precision tensors (one
    rounding at the end); False (nothing written) for a float32 / float64 tensor the compiled path does not take
    (`base.weighted_sum_into` streams those through `addmv`)."""
    if not _usable(base) and tau.dtype in (torch.float32, torch.float64):
        return False
    k = tau.shape[0]
    acc = torch.float64 if tau.dtype == torch.float64 else torch.float32
    w, beta_t = w.to(acc), torch.tensor(beta, dtype=acc, device=tau.device)
    block = functools.partial(weighted_block, k)
    blockwise(("weighted", k), block, base, lambda lo, hi: ([tau[i, lo:hi] for i in range(k)], w, base[lo:hi],
                                                            beta_t, out[lo:hi]), ELEMENTWISE_STEP)
    return True


def weighted_block(k: int, taus: list[torch.Tensor], w: torch.Tensor, base: torch.Tensor, beta: torch.Tensor,
                   out: torch.Tensor) -> None:
    """out = beta * base + sum_i w_i tau_i over one block, accumulated in `w`'s dtype."""
    total = base.to(w.dtype) * beta
    for i in range(k):
        total = total + taus[i].to(w.dtype) * w[i]
    out.copy_(total)


def _disable(exc: Exception) -> None:
    _state["broken"] = True
    log.warning("compiled merge kernels are unavailable (%s: %s); merging with eager torch operations",
                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")


def _blocks(n: int, step: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def _kernel(key: tuple[Any, ...], fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` compiled once per `key`, every operation rounding to its dtype as in eager torch (Inductor otherwise
    keeps bf16 / fp16 intermediates in float32, and the merge would depend on the path it took)."""
    if key not in _state["kernels"]:
        def bound(*args: Any) -> Any:
            return fn(*args)

        _allow_recompiles()
        _state["kernels"][key] = torch.compile(bound, dynamic=True, options={"emulate_precision_casts": True})
    kernel: Callable[..., Any] = _state["kernels"][key]
    return kernel


def _allow_recompiles() -> None:
    """Every (method, switches, k) is its own graph of the same Python function: let Dynamo keep them all."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), 256))
