"""What the docs quote from a fresh run, for this machine's kind of CPU.

Training, merging and the GPs' fits round differently with the CPU's vector unit (torch's CPU capability: AVX512,
AVX2, ...), so a fresh build or search prints other, equally valid figures on another kind of CPU; on one kind, a
seed gives the same figures every time. The docs quote such output once per kind it was measured on, each block
after a `<!-- cpu KIND -->` line. A test compares a fresh run with its own kind's block, and is skipped, saying
so, on a kind the docs do not quote.
"""

from __future__ import annotations

import re

import pytest
import torch


def cpu_kind() -> str:
    return str(torch.backends.cpu.get_cpu_capability())


def quoted_blocks(page: str, pattern: str) -> dict[str, str]:
    """The fenced blocks of `page` whose text matches `pattern` (from their first line), by the CPU kind named in
    the `<!-- cpu KIND -->` line before each."""
    return {m.group(1): m.group(2)
            for m in re.finditer(rf"<!-- cpu (\w+) -->\n```\n({pattern}.*?)```", page, re.S)}


def quoted_for_this_cpu(page: str, pattern: str, what: str) -> str:
    """The block of `page` matching `pattern` that was measured on this kind of CPU."""
    blocks = quoted_blocks(page, pattern)
    assert blocks, f"{what}: no block after a `<!-- cpu KIND -->` line"
    if cpu_kind() not in blocks:
        pytest.skip(f"{what} is quoted for CPUs {sorted(blocks)}, not for this one ({cpu_kind()}), whose float "
                    "rounding trains and searches otherwise; add its block to compare")
    return blocks[cpu_kind()]
