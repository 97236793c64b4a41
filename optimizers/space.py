"""Search-space encoding: named merge parameters <-> points of the unit cube."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mergefront.spec import MergeSpec


@dataclass(frozen=True)
class Parameter:
    """One searched number, e.g. the weight of expert 2 for the whole model."""

    name: str
    low: float
    high: float
    description: str


@dataclass(frozen=True)
class SearchSpace:
    """An ordered list of parameters; optimizers only ever see the unit cube `[0, 1]^d`."""

    parameters: tuple[Parameter, ...]

    @property
    def dim(self) -> int:
        return len(self.parameters)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def decode(self, x: Sequence[float]) -> dict[str, float]:
        """Map a unit-cube point (`d`) to named parameter values."""
        if len(x) != self.dim:
            raise ValueError(f"point has {len(x)} coordinates, the space has {self.dim}")
        return {p.name: p.low + min(max(float(v), 0.0), 1.0) * (p.high - p.low)
                for p, v in zip(self.parameters, x, strict=True)}

    def encode(self, config: Mapping[str, float]) -> list[float]:
        """Map named parameter values back to the unit cube."""
        return [(float(config[p.name]) - p.low) / (p.high - p.low) for p in self.parameters]

    def describe(self) -> str:
        lines = [f"search space: {self.dim} dimensions"]
        lines += [f"  {p.name:<14} [{p.low:g}, {p.high:g}]  {p.description}" for p in self.parameters]
        return "\n".join(lines)


def expert_label(ref: str) -> str:
    """A short name for an expert reference (`bench://digits/rotated` -> `rotated`)."""
    return ref.rstrip("/").rsplit("/", 1)[-1]


def build_space(merge: MergeSpec, experts: Sequence[str]) -> SearchSpace:
    """Whole-model granularity: one weight (and, for TIES, one density) per expert."""
    params: list[Parameter] = []
    for ref in experts:
        label = expert_label(ref)
        params.append(Parameter(f"weight.{label}", merge.weight.low, merge.weight.high,
                                f"weight of {ref} (whole model)"))
    if merge.density is not None:
        for ref in experts:
            label = expert_label(ref)
            params.append(Parameter(f"density.{label}", merge.density.low, merge.density.high,
                                    f"fraction of {ref}'s task vector kept (whole model)"))
    return SearchSpace(tuple(params))
