"""What a merge method sees: one tensor's base and task vectors, and that tensor's parameter values."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import torch


@dataclass
class SegmentParams:
    """Parameter values for one tensor: per-expert ones as `k` vectors, global ones as numbers."""

    weight: torch.Tensor  # k
    density: torch.Tensor  # k
    gamma: torch.Tensor  # k
    epsilon: torch.Tensor  # k
    lam: float
    t: float
    normalize: bool


class SegmentData:
    """One tensor of the resident layout: base (`n`), task vectors (`k x n`), and lazily built rankings."""

    def __init__(self, base: torch.Tensor, tau: torch.Tensor, seed: int) -> None:
        self.base = base
        self.tau = tau
        self.seed = seed
        self.ranked: torch.Tensor | None = None  # k x n magnitudes, descending (set by the engine's cache)
        self.ranks: torch.Tensor | None = None  # k x n, rank of each entry by magnitude, 0 = smallest

    @property
    def numel(self) -> int:
        return int(self.base.numel())

    def generator(self) -> torch.Generator:
        """A generator seeded by the candidate's seed and this tensor's place: masks replay exactly."""
        gen = torch.Generator(device=self.base.device)
        gen.manual_seed(self.seed)
        return gen

    def magnitude_threshold(self, keep: torch.Tensor) -> torch.Tensor:
        """Per expert, the magnitude of the `keep[i]`-th largest entry (`k`); keep 0 gives +inf."""
        assert self.ranked is not None, "the engine sorts magnitudes before sparsifying methods run"
        n = self.numel
        idx = (keep.clamp(0, n) - 1).clamp_min(0).long()  # k
        picked = self.ranked.gather(1, idx[:, None]).squeeze(1)
        return torch.where(keep > 0, picked, torch.full_like(picked, math.inf))


class MergeMethod(Protocol):
    def __call__(self, data: SegmentData, params: SegmentParams, out: torch.Tensor) -> None:
        """Write the merged tensor (`n`) for `data` into `out`."""
        ...


# Columns per fused step: base, output and k task-vector rows of this many numbers stay in a core's L2 cache,
# so `addmv` copies the base into the output and accumulates into it without a second trip to memory, and
# each call is small enough to run on one thread; large tensors are split into one column range per thread.
CHUNK = 1 << 15
_POOL: ThreadPoolExecutor | None = None


def weighted_sum_into(base: torch.Tensor, tau: torch.Tensor, w: torch.Tensor, out: torch.Tensor,
                      beta: float = 1.0) -> None:
    """`out = beta * base + w @ tau` (`n`), in L2-sized column chunks: reads base and `tau` once, writes `out` once."""
    global _POOL
    w = w.to(tau.dtype)
    tau_t = tau.T  # n x k, column-major: addmv streams it
    n, threads = base.numel(), torch.get_num_threads()
    if threads == 1 or n < 32 * CHUNK or base.device.type != "cpu":
        return _addmv_chunks(base, tau_t, w, out, beta, 0, n)
    _POOL = _POOL or ThreadPoolExecutor(threads, thread_name_prefix="mergefront-merge")
    bounds = [min(n, -(-n * i // threads // CHUNK) * CHUNK) for i in range(threads + 1)]
    parts = [_POOL.submit(_addmv_chunks, base, tau_t, w, out, beta, lo, hi) for lo, hi in pairwise(bounds)]
    for part in parts:
        part.result()


def _addmv_chunks(base: torch.Tensor, tau_t: torch.Tensor, w: torch.Tensor, out: torch.Tensor, beta: float,
                  lo: int, hi: int) -> None:
    step = CHUNK if base.device.type == "cpu" else hi - lo
    for start in range(lo, hi, max(step, 1)):
        end = min(start + step, hi)
        torch.addmv(base[start:end], tau_t[start:end], w, beta=beta, out=out[start:end])


def count(fraction: torch.Tensor, n: int) -> torch.Tensor:
    """How many of `n` entries a fraction keeps, rounded up (`k`)."""
    return torch.ceil(fraction.double() * n).long().clamp(0, n)
