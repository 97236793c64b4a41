"""The `merge` part of a job spec: the method, and for each of its parameters a fixed value or a searched range.

Parameter names are mergekit's (`weight`, `density`, `gamma`, `epsilon`, `lambda`, `t`, `normalize`); each
searched range has its own granularity, so a spec can mix them (weights per component, densities per layer group).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from mergefront.bounds import CleanModel
from mergefront.granularity import Granularity
from mergefront.methods import METHODS, SEARCHABLE

MergeMethod = Literal["linear", "task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs",
                      "breadcrumbs_ties", "della", "della_linear", "slerp", "model_stock"]

#: the values each parameter may take: (lowest, highest, whether the lowest is allowed)
BOUNDS: dict[str, tuple[float, float, bool]] = {
    "weight": (-10.0, 10.0, True), "density": (0.0, 1.0, False), "gamma": (0.0, 1.0, True),
    "epsilon": (0.0, 1.0, True), "lambda": (-10.0, 10.0, True), "t": (0.0, 1.0, True),
}
#: what is searched when a spec names a method but not its parameter
DEFAULT_SEARCH: dict[str, tuple[float, float]] = {"weight": (0.0, 1.0), "density": (0.1, 1.0), "t": (0.0, 1.0)}


def _granularity(value: Any) -> Any:
    """Accept `model`, `component`, `{layers: k}` and `{filters: [...]}` as well as the full form."""
    if isinstance(value, str):
        return {"kind": value}
    if isinstance(value, dict) and "kind" not in value:
        if set(value) == {"layers"}:
            return {"kind": "layers", "groups": value["layers"]}
        if set(value) == {"filters"}:
            return {"kind": "filters", "filters": value["filters"]}
    return value


class Range(CleanModel):
    """A closed interval searched for one merge parameter, with the granularity it is searched at."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float
    granularity: Granularity = Granularity()

    @field_validator("granularity", mode="before")
    @classmethod
    def _short_granularity(cls, value: Any) -> Any:
        return _granularity(value)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.granularity.kind == "filters" and not self.granularity.filters:
            raise ValueError("granularity filters needs at least one name filter")
        return self


class MergeSpec(CleanModel):
    """The merge method and, per parameter, a fixed number or a searched `Range`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    method: MergeMethod
    weight: float | Range | None = Field(None, description="per expert")
    density: float | Range | None = Field(None, description="per expert: fraction of the task vector kept")
    gamma: float | Range | None = Field(None, description="per expert, breadcrumbs: largest fraction dropped")
    epsilon: float | Range | None = Field(None, description="per expert, della: keep probabilities run from "
                                          "density - epsilon to density + epsilon")
    lambda_: float | Range | None = Field(None, alias="lambda", description="scale of the merged task vector")
    t: float | Range | None = Field(None, description="slerp: 0 is the base, 1 the expert")
    normalize: bool | None = Field(None, description="divide by the sum of weights (default: mergekit's)")
    rescale: bool | None = Field(None, description="keep each sparsified task vector's L1 norm (default: mergekit's)")

    @field_validator("weight", "density", "gamma", "epsilon", "lambda_", "t")
    @classmethod
    def _belongs_to_method(cls, value: float | Range | None, info: ValidationInfo) -> float | Range | None:
        name = "lambda" if info.field_name == "lambda_" else str(info.field_name)
        method = info.data.get("method")
        if value is None or method is None:
            return value
        if name not in METHODS[method].params:
            raise ValueError(f"{name} is not a parameter of {method}; it takes {list(METHODS[method].params)}")
        low, high, low_ok = BOUNDS[name]
        ends = (value.low, value.high) if isinstance(value, Range) else (value, value)
        if any(v > high or v < low or (v == low and not low_ok) for v in ends):
            raise ValueError(f"{name} must lie in {'[' if low_ok else '('}{low:g}, {high:g}], got {value}")
        return value

    @model_validator(mode="after")
    def _search_defaults(self) -> MergeSpec:
        missing = {name: Range(low=lo, high=hi) for name, (lo, hi) in DEFAULT_SEARCH.items()
                   if name in METHODS[self.method].params and self.value(name) is None}
        if not missing:
            return self
        return self.model_copy(update={("lambda_" if k == "lambda" else k): v for k, v in missing.items()})

    def bounds(self, name: str) -> tuple[float, float] | None:
        """The lowest and highest value parameter `name` can take in this search (None if it is not set)."""
        value = self.value(name)
        if value is None:
            return None
        return (value.low, value.high) if isinstance(value, Range) else (float(value), float(value))

    def value(self, name: str) -> float | Range | None:
        """The setting of parameter `name` (mergekit's name: `lambda`, not `lambda_`)."""
        value: float | Range | None = getattr(self, "lambda_" if name == "lambda" else name)
        return value

    def searched(self) -> list[tuple[str, Range]]:
        """The searched parameters, in a fixed order."""
        return [(name, r) for name in SEARCHABLE if isinstance(r := self.value(name), Range)]

    def fixed(self) -> dict[str, float]:
        return {name: float(v) for name in SEARCHABLE if isinstance(v := self.value(name), int | float)}
