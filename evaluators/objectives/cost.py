"""Cost objectives, computed from the merged tensors alone (the model never runs).

- ``sparsity`` (as in MM-MO): the fraction of the merged task vector's entries that are zero, i.e. where the merged
  model equals the base; ``kept_fraction`` is one minus it.
- ``storage`` (as in MERGE): what shipping the merged result as a difference from the base takes, each tensor
  stored sparse (its changed values plus a 32-bit index each, 64-bit past 2**31 entries) or dense, whichever is
  smaller; ``megabytes`` (10**6 bytes) and ``fraction`` of the dense size. Tensors the merge leaves alone cost 0.
"""

from __future__ import annotations

from typing import Any

import torch

from mergefront.evaluators.merge import ResidentMerger
from mergefront.objectives import CostSettings


class _Counter:
    def __init__(self, settings: CostSettings, *, tokenizer: Any = None, device: torch.device | None = None) -> None:
        self.settings = settings

    @staticmethod
    def changed(merger: ResidentMerger) -> list[tuple[int, int]]:
        """(changed entries, all entries) of each merged tensor."""
        return merger.changed()


class SparsityObjective(_Counter):
    def __call__(self, merger: ResidentMerger) -> dict[str, float]:
        counts = self.changed(merger)
        kept = sum(c for c, _ in counts) / max(1, sum(n for _, n in counts))
        return {"sparsity": 1.0 - kept, "kept_fraction": kept}


class StorageObjective(_Counter):
    def __call__(self, merger: ResidentMerger) -> dict[str, float]:
        value_bytes = merger.out.element_size()
        stored = dense = 0
        for changed, numel in self.changed(merger):
            index_bytes = 4 if numel < 2**31 else 8
            stored += min(changed * (value_bytes + index_bytes), numel * value_bytes)
            dense += numel * value_bytes
        return {"megabytes": stored / 1e6, "fraction": stored / max(1, dense)}
