"""Kept entries without kept ranks: each merge selects every expert's magnitude cut of a tensor on its device.

TIES keeps the `c` largest magnitudes of each task vector; breadcrumbs keeps the entries ranked `lo..hi` in
ascending order of magnitude. Where the memory plan has room, ranks are computed once (`SegmentData.ranks`) and a
density is a comparison. Where it has none, each merge finds each expert's cut magnitude of the tensor it merges
(a selection, not a sort), from a histogram of the magnitudes' bit patterns (non-negative floats order as their
bits do, as integers): one `bincount` of 2^15 bins for bfloat16 / float16 and two for float32 (the high 16 bits,
then the low 16 bits of the entries in the cut's bin), `torch.kthvalue` for float64. Entries beyond the cut are
kept, entries before it dropped; of those whose magnitude equals the cut, the first by index fill the count.

So every expert keeps exactly as many entries as with ranks and as mergekit (`int(density x n)`, TIES at least
one), the same entries but among those tied at the cut: mergekit's `argsort` (not a stable sort) orders equal
magnitudes its own way, which only a sort reproduces.

The selection is handed to the merge as ranks the kernels read unchanged (`rank_windows`): `lo` where an entry is
kept, `hi` where it is not, so `lo <= rank < hi` holds exactly for the kept entries; one `k x n` int32 tensor of
the tensor being merged, while a kept ranking takes that for every tensor.
"""

from __future__ import annotations

import torch

from mergefront.evaluators.methods.base import KeepRule, SegmentData

BINS_HIGH = 1 << 15  # a non-negative 16-bit pattern (or float32's high half): sign bit clear
BINS_LOW = 1 << 16


def rank_windows(data: SegmentData, rule: KeepRule) -> torch.Tensor:
    """Per expert, `rule.lo` at the entries it keeps and `rule.hi` elsewhere (`k x n`, int32), for a magnitude
    ("magnitude": the `hi` largest) or outlier ("outliers": ranks `lo..hi` ascending) rule."""
    k, n = data.tau.shape
    if rule.kind not in ("magnitude", "outliers"):
        raise ValueError(f"{rule.kind} masks are not magnitude windows")
    windows = torch.empty((k, n), dtype=torch.int32, device=data.tau.device)
    los, his, full = rule.lo.tolist(), rule.hi.tolist(), rule.full.tolist()
    for i in range(k):
        if full[i] or los[i] >= his[i]:  # keeps everything (the kernels' `full`) or nothing: no cut to find
            windows[i].fill_(los[i] if full[i] else his[i])
            continue
        keys = order_keys(data.tau[i])
        if rule.kind == "magnitude":
            keep = largest(keys, his[i])
        else:
            keep = smallest(keys, his[i])
            if los[i] > 0:
                keep &= ~smallest(keys, los[i])
        windows[i].fill_(his[i]).masked_fill_(keep, los[i])
    return windows


def order_keys(tau: torch.Tensor) -> torch.Tensor:
    """The magnitudes of a task vector as integers in the same order (their bit patterns), or float64 values."""
    magnitude = tau.abs()
    if magnitude.dtype in (torch.bfloat16, torch.float16):
        return magnitude.view(torch.int16)
    if magnitude.dtype == torch.float32:
        return magnitude.view(torch.int32)
    return magnitude


def smallest(keys: torch.Tensor, c: int) -> torch.Tensor:
    """The `c` smallest keys (bool), equal ones taken first by index: a stable ascending sort's first `c`."""
    n = keys.numel()
    if c <= 0 or c >= n:
        return torch.full_like(keys, c > 0, dtype=torch.bool)
    cut, below = kth_smallest(keys, c)
    keep = keys < cut
    _take_ties(keep, keys, cut, c - below)
    return keep


def largest(keys: torch.Tensor, c: int) -> torch.Tensor:
    """The `c` largest keys (bool), equal ones taken first by index: a stable descending sort's first `c`."""
    n = keys.numel()
    if c <= 0 or c >= n:
        return torch.full_like(keys, c > 0, dtype=torch.bool)
    cut, below = kth_smallest(keys, n - c + 1)  # the c-th largest
    keep = keys > cut
    ties = _ties(keys, cut)
    above = n - below - ties.numel()
    keep[ties[:c - above]] = True
    return keep


def kth_smallest(keys: torch.Tensor, c: int) -> tuple[int | torch.Tensor, int]:
    """The `c`-th smallest key (1 <= c <= n) and how many keys are smaller."""
    if keys.dtype == torch.int16:
        return _in_histogram(torch.bincount(keys, minlength=BINS_HIGH), c)
    if keys.dtype == torch.int32:
        high = keys >> 16
        top, below = _in_histogram(torch.bincount(high, minlength=BINS_HIGH), c)
        low = torch.bincount(keys[high == top] & 0xFFFF, minlength=BINS_LOW)
        bottom, below_low = _in_histogram(low, c - below)
        return (top << 16) | bottom, below + below_low
    cut = torch.kthvalue(keys, c).values
    return cut, int((keys < cut).sum())


def _in_histogram(counts: torch.Tensor, c: int) -> tuple[int, int]:
    """The bin holding the `c`-th smallest of the counted values, and how many values lie in the bins below."""
    cumulative = counts.cumsum(0)
    found = int(torch.searchsorted(cumulative, torch.tensor([c], device=counts.device))[0])
    return found, int(cumulative[found]) - int(counts[found])


def _ties(keys: torch.Tensor, cut: int | torch.Tensor) -> torch.Tensor:
    return (keys == cut).nonzero().view(-1)


def _take_ties(keep: torch.Tensor, keys: torch.Tensor, cut: int | torch.Tensor, count: int) -> None:
    keep[_ties(keys, cut)[:count]] = True
