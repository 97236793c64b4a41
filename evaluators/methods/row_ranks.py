"""DELLA's ranks: each task-vector entry's rank by magnitude within its row, from one radix sort per block of rows.

mergekit's DELLA keeps an entry with a probability that grows with its magnitude's rank in its row (`argsort` of
the magnitudes along the last dimension). Here a block of rows is ranked by one stable sort of integer keys, not by
a comparison sort per row: a non-negative float orders as its bit pattern does as an integer, so each entry's key
is its row within the block (high bits) followed by its magnitude's bits (31 for float32, 15 for bf16 / fp16); a
stable sort of the block's keys (torch sorts a 1-D integer tensor by radix, on the CPU and on CUDA) lists each row's
entries in ascending magnitude, and an entry's place among its row's keys is its rank. Blocks of `BLOCK` entries
keep the sort's keys, indices and buffers in a core's cache: 3-4x faster than `argsort` per row on the CPU.

Equal magnitudes rank by index (a stable order, the same on every device). mergekit's `argsort` is not stable and
orders them its own way; a DELLA mask sees that only among exactly equal magnitudes, where keep probabilities differ
by a rank or two. float64 magnitudes (63 bits: no room for a row) take a stable sort of each row.
"""

from __future__ import annotations

import torch

BLOCK = 1 << 17  # entries per sort (a block holds whole rows; a row longer than this is one block)
_MAGNITUDE_BITS = {torch.float32: (torch.int32, 31), torch.bfloat16: (torch.int16, 15),
                   torch.float16: (torch.int16, 15)}


def rank_rows_into(tau: torch.Tensor, cols: int, out: torch.Tensor) -> None:
    """Write each entry's rank by magnitude within its row of `cols` entries (0 for the smallest) into `out`.
    `tau`: one task vector (`n`, a multiple of `cols`); `out`: `n`, int32."""
    n = tau.numel()
    rows, step = n // cols, max(1, BLOCK // cols)  # rows per sort
    span = min(step, rows) * cols
    positions = torch.arange(span, dtype=torch.int32, device=tau.device) % cols  # a sorted block's ranks
    bits = _MAGNITUDE_BITS.get(tau.dtype)
    prefix = None if bits is None else \
        torch.arange(span, dtype=torch.int64, device=tau.device).div_(cols, rounding_mode="floor") << bits[1]
    for start in range(0, rows, step):
        lo, hi = start * cols, min(start + step, rows) * cols
        if bits is None or prefix is None:  # float64
            block = tau[lo:hi].view(-1, cols).abs()
            order = torch.sort(block, dim=1, stable=True).indices
            out[lo:hi].view(-1, cols).scatter_(1, order, positions[:hi - lo].view(-1, cols))
            continue
        keys = tau[lo:hi].abs().view(bits[0]).to(torch.int64) | prefix[:hi - lo]  # row, then magnitude
        order = torch.sort(keys, stable=True).indices
        out[lo:hi].scatter_(0, order, positions[:hi - lo])
