"""Where a searched parameter takes its own value: the whole model, components, groups of layers, name filters.

Tensor names are recognised for Llama/Mistral/Qwen, GPT-2 and BERT checkpoints; anything else falls back to
"other". Light: no torch, so the spec, the search space and the merge engine share these rules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field

from mergefront.bounds import CleanModel

COMPONENTS = ("embeddings", "attention", "mlp", "norms", "other")

_COMPONENT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("norms", re.compile(r"(norm|ln_\w+|ln_f|layernorm|LayerNorm)(\.|$)", re.IGNORECASE)),
    ("embeddings", re.compile(r"(embed_tokens|embed_positions|wte|wpe|word_embeddings|position_embeddings|"
                              r"token_type_embeddings|lm_head|embed_out|\bembeddings\b)")),
    ("attention", re.compile(r"(self_attn|\.attn\.|attention|\.q_proj|\.k_proj|\.v_proj|\.o_proj|c_attn)")),
    ("mlp", re.compile(r"(\.mlp\.|feed_forward|intermediate|\.output\.dense|c_fc|gate_proj|up_proj|down_proj|ffn)")),
)
_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block|trunk)\.(\d+)\.")


def component_of(name: str) -> str:
    """`attention`, `mlp`, `embeddings`, `norms` or `other` for a tensor name."""
    for component, pattern in _COMPONENT_PATTERNS:
        if pattern.search(name):
            return component
    return "other"


def layer_of(name: str) -> int | None:
    """The block index a tensor belongs to (`model.layers.3.mlp...` -> 3), None outside the blocks."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


class Granularity(CleanModel):
    """`model` (one value), `component`, `layers` (k groups over depth) or `filters` (name substrings + rest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["model", "component", "layers", "filters"] = "model"
    groups: int = Field(1, ge=1, le=64, description="layers: how many groups over depth")
    filters: tuple[str, ...] = Field((), max_length=256,
                                     description="filters: mergekit-style name filters, matched in order")

    def labels(self, names: Sequence[str]) -> list[str]:
        """The groups that the tensors `names` fall into, in a stable order (empty groups are left out)."""
        seen = {self.group_of(n, names) for n in names}
        return [g for g in self._all_labels(names) if g in seen]

    def group_of(self, name: str, names: Sequence[str]) -> str:
        if self.kind == "model":
            return "all"
        if self.kind == "component":
            return component_of(name)
        if self.kind == "filters":
            return next((f for f in self.filters if f in name), "rest")
        return self._layer_group(name, names)

    def _all_labels(self, names: Sequence[str]) -> list[str]:
        if self.kind == "model":
            return ["all"]
        if self.kind == "component":
            return list(COMPONENTS)
        if self.kind == "filters":
            return [*self.filters, "rest"]
        return [*(_span(b) for b in _layer_bounds(names, self.groups)), "non_layer"]

    def _layer_group(self, name: str, names: Sequence[str]) -> str:
        layer = layer_of(name)
        if layer is None:
            return "non_layer"
        return next(_span(b) for b in _layer_bounds(names, self.groups) if b[0] <= layer <= b[1])


def _layer_bounds(names: Sequence[str], groups: int) -> list[tuple[int, int]]:
    """Split the distinct layer indices into `groups` contiguous, near-equal runs (first, last)."""
    layers = sorted({i for i in (layer_of(n) for n in names) if i is not None})
    if not layers:
        return []
    groups = min(groups, len(layers))
    size, extra = divmod(len(layers), groups)
    bounds, start = [], 0
    for g in range(groups):
        stop = start + size + (1 if g < extra else 0)
        bounds.append((layers[start], layers[stop - 1]))
        start = stop
    return bounds


def _span(bound: tuple[int, int]) -> str:
    return f"layers_{bound[0]}" if bound[0] == bound[1] else f"layers_{bound[0]}-{bound[1]}"
