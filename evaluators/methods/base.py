"""What a merge method sees: one tensor's base and task vectors, and that tensor's parameter values."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import torch

from mergefront.evaluators.methods.row_ranks import rank_rows_into


@dataclass
class SegmentParams:
    """Parameter values for one tensor: per-expert ones as `k` vectors (float64, whatever the checkpoint's dtype:
    kept counts and thresholds are taken from them before anything is cast), global ones as numbers."""

    weight: torch.Tensor  # k
    density: torch.Tensor  # k
    gamma: torch.Tensor  # k
    epsilon: torch.Tensor  # k
    lam: float
    t: float
    normalize: bool
    rescale: bool = False


class SegmentData:
    """One tensor of the resident layout: base (`n`), task vectors (`k x n`), and rankings built once on demand.

    `ranks` (`k x n`, int32): each entry's position in its task vector sorted by magnitude, in `rank_order`
    ("descending" for TIES, "ascending" for breadcrumbs), from the very sort call mergekit makes, so entries of equal
    magnitude fall on the same side of a cut as in mergekit; a density then keeps a rank window with no sort.
    `row_rank` (`k x n`, int32): rank by magnitude within its row, equal magnitudes by index (DELLA's keep
    probabilities are a table of these, `KeepRule.probabilities`).
    """

    def __init__(self, base: torch.Tensor, tau: torch.Tensor, seed: int, shape: tuple[int, ...] = ()) -> None:
        self.base = base
        self.tau = tau
        self.seed = seed
        self.shape = shape or (int(base.numel()),)
        self.ranks: torch.Tensor | None = None
        self.rank_order: str | None = None
        self.row_rank: torch.Tensor | None = None
        self.l1: torch.Tensor | None = None  # k, float64: |tau_i|_1, for rescaling
        self.gram: torch.Tensor | None = None  # k x k: the task vectors' inner products (Model Stock)
        self.cosine: float | None = None  # the cosine between base and expert (SLERP)

    @property
    def numel(self) -> int:
        return int(self.base.numel())

    def expert_keys(self) -> torch.Tensor:
        """Per expert, the key of its random draws on this tensor (`k`, int64), from the candidate's seed."""
        k = self.tau.shape[0]
        counters = [(self.seed * 0x9E3779B1 + i * 0x7F4A7C15) & MASK32 for i in range(k)]
        return mix32(torch.tensor(counters, dtype=torch.int64, device=self.base.device))

    def rank_by_magnitude(self, order: str) -> None:
        """Rank each task vector's entries by magnitude as mergekit sorts them: float32 magnitudes on the CPU (the
        tensor's dtype elsewhere), `torch.argsort` in `order` (not a stable sort: its own order of equal values)."""
        k, n = self.tau.shape
        ranks = torch.empty((k, n), dtype=torch.int32, device=self.base.device)
        for i in range(k):
            magnitude = self.tau[i].abs()
            if magnitude.device.type == "cpu":
                magnitude = magnitude.float()
            ranks[i] = _inverse(torch.argsort(magnitude, descending=order == "descending"), n)
        self.ranks, self.rank_order = ranks, order

    def rank_rows(self) -> None:
        """Rank each row's entries by magnitude, ascending, as mergekit's DELLA does (a 1-D tensor is one row; equal
        magnitudes by index): a radix sort per block of rows (`row_ranks`), its temporaries small beside the
        `k x n` result."""
        k, n = self.tau.shape
        cols = self.shape[-1] if len(self.shape) > 1 else n
        row_rank = torch.empty((k, n), dtype=torch.int32, device=self.base.device)
        for i in range(k):
            rank_rows_into(self.tau[i], cols, row_rank[i])
        self.row_rank = row_rank

    def l1_norms(self) -> torch.Tensor:
        """Per expert, |tau_i|_1 (`k`, float64), summed once over column blocks."""
        if self.l1 is None:
            l1 = torch.zeros(self.tau.shape[0], dtype=torch.float64, device=self.base.device)
            for start in range(0, self.numel, 1 << 20):
                l1 += self.tau[:, start:start + (1 << 20)].abs().sum(dim=1, dtype=torch.float64)
            self.l1 = l1
        return self.l1


def _inverse(order: torch.Tensor, size: int) -> torch.Tensor:
    """Ranks from a permutation along the last dimension (int32)."""
    ranks = torch.empty_like(order, dtype=torch.int32)
    positions = torch.arange(size, device=order.device, dtype=torch.int32).expand_as(order).contiguous()
    return ranks.scatter_(-1, order, positions)


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
    """`out = beta * base + w @ tau` (`n`), in L2-sized column chunks: reads base and `tau` once, writes `out` once.
    `w` (`k`) is taken in float32 for reduced-precision tensors (float64 for float64), as torch computes them."""
    global _POOL
    from mergefront.evaluators.methods import fused  # compiled kernels import this module

    if fused.weighted_sum(base, tau, w, out, beta):
        return
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


# --- random draws: a counter-based hash of (entry index, key), the same in eager torch and in compiled kernels ----

MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # < 2**27: products of 32-bit values stay below 2**59, no signed 64-bit overflow anywhere


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply, two rounds) of int64 values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _MIX) & MASK32
    x = x ^ (x >> 16)
    x = (x * _MIX) & MASK32
    return x ^ (x >> 16)


def random_bits(index: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """32 uniform random bits (int64 in [0, 2**32)) for each entry index (int64) under an expert's key.

    A pure function of (index, key): a chunk's draws need no generator state, so any chunking, thread or
    compiled kernel draws the same mask, and a candidate's masks replay from its seed.
    """
    return mix32((index ^ key) & MASK32)


def uniform(bits: torch.Tensor) -> torch.Tensor:
    """Random bits as float32 numbers in [0, 1)."""
    return bits.to(torch.float32) * (1.0 / 4294967296.0)


def bits_threshold(fraction: torch.Tensor) -> torch.Tensor:
    """`bits < threshold` holds with probability `fraction` (`k`, int64)."""
    return torch.floor(fraction.double().clamp(0.0, 1.0) * 4294967296.0).long()


@dataclass(frozen=True)
class KeepRule:
    """How each expert's kept entries of one tensor are decided for one candidate (`k`-vectors), as mergekit decides.

    magnitude and outliers: lo <= rank < hi (`SegmentData.ranks`: TIES keeps the first max(1, int(density x n)) in
    descending order; breadcrumbs skips the smallest, keeps int(density x n), and drops what is left at the top, at
    most int(gamma x n) entries); random: random bits < hi; della: uniform draw < the keep probability of the
    entry's row rank (`probabilities`). An expert at density 1 keeps everything (`full`) and is not rescaled.
    """

    kind: str | None  # "magnitude", "outliers", "random", "della" or None (keep all)
    full: torch.Tensor  # bool
    lo: torch.Tensor  # int64
    hi: torch.Tensor  # int64
    density: torch.Tensor  # float32
    epsilon: torch.Tensor  # float32
    keys: torch.Tensor  # int64: each expert's key of its random draws

    @classmethod
    def of(cls, kind: str | None, data: SegmentData, params: SegmentParams) -> KeepRule:
        n, d = data.numel, params.density
        lo = hi = torch.zeros_like(d, dtype=torch.int64)
        if kind == "magnitude":
            hi = count(d, n).clamp_min(1)  # at least one entry, as mergekit
        elif kind == "outliers":
            kept = count(d, n)
            lo = (n - kept - count(params.gamma, n)).clamp_min(0)
            hi = lo + kept
        elif kind == "random":
            hi = bits_threshold(d)
        keys = data.expert_keys() if kind in ("random", "della") else lo
        return cls(kind, d >= 1, lo, hi, d.float(), params.epsilon.float(), keys)

    @property
    def ranking(self) -> str | None:
        """The order of `SegmentData.ranks` this rule reads ("descending", "ascending"), or None."""
        return {"magnitude": "descending", "outliers": "ascending"}.get(self.kind or "")

    def work_dtype(self, dtype: torch.dtype, device: torch.device) -> torch.dtype:
        """The dtype mergekit rescales in: the tensor's for magnitude cuts, float32 on the CPU for random drops
        (bf16 stays bf16)."""
        if self.kind in ("random", "della") and device.type == "cpu" and dtype != torch.bfloat16:
            return torch.float32
        return dtype

    def probabilities(self, cols: int) -> torch.Tensor:
        """DELLA's keep probability of each row rank in rows of `cols` entries, per expert (`k x cols`, float32):
        density - epsilon for the smallest magnitude to density + epsilon for the largest, linear in rank / (cols - 1)
        between, each operation in float32. The kernels look an entry's probability up by its rank."""
        scaled = torch.arange(cols, dtype=torch.int32, device=self.density.device).float() / max(cols - 1, 1)
        d, eps = self.density[:, None], self.epsilon[:, None]
        return (d - eps) + scaled * (2 * eps)

    def rescale(self, data: SegmentData, kept: torch.Tensor, work: torch.dtype) -> torch.Tensor:
        """mergekit's L1 rescale of each sparsified task vector (`k`, in `work`): |tau|_1 / |kept tau|_1, both norms
        first rounded to `work`; 1 where either is below 1e-7 or the expert keeps everything. `kept`: the kept
        entries' L1 norms (`k`)."""
        before, after = data.l1_norms().to(work), kept.to(work)
        ok = (before >= 1e-7) & (after >= 1e-7) & ~self.full
        return torch.where(ok, before / torch.where(ok, after, 1.0), 1.0)


def count(fraction: torch.Tensor, n: int) -> torch.Tensor:
    """How many of `n` entries a fraction is, rounded down as mergekit does (`k`, int64)."""
    return torch.floor(fraction.double() * n).long().clamp(0, n)
