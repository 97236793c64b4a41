"""Search-space encoding: named merge parameters <-> points of the unit cube."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mergefront.granularity import Granularity
from mergefront.merge_spec import MergeSpec
from mergefront.methods import PER_EXPERT
from mergefront.report import format_space


@dataclass(frozen=True)
class Parameter:
    """One searched number, e.g. the weight of expert 2 on the attention tensors.

    `kind` is the merge parameter (`weight`, `density`, ...), `expert` its expert's index (None for a parameter
    set once, such as `lambda`), `group` the group of tensors it applies to under `granularity`.
    """

    name: str
    low: float
    high: float
    description: str
    kind: str = ""
    expert: int | None = None
    group: str = "all"
    granularity: Granularity = Granularity()


@dataclass(frozen=True)
class InertGroup:
    """A group of tensors that no expert changes (every task vector in it is zero), so it is not searched.

    The merge still needs a value for it: `value`, the top of the range (the merge is the base's tensors whatever
    it is).
    """

    kind: str
    group: str
    granularity: Granularity
    value: float
    per_expert: bool


@dataclass(frozen=True)
class SearchSpace:
    """An ordered list of parameters; optimizers only ever see the unit cube `[0, 1]^d`.

    `inert` lists the groups left out because no expert changes their tensors.
    """

    parameters: tuple[Parameter, ...]
    inert: tuple[InertGroup, ...] = ()

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
        text = format_space([(p.name, p.low, p.high, p.description) for p in self.parameters])
        return "\n".join([text, *self.inert_lines()])

    def inert_lines(self) -> list[str]:
        """One line per group left out of the space, saying why."""
        groups: dict[str, list[str]] = {}
        for g in self.inert:
            groups.setdefault(g.group, []).append(g.kind)
        return [f"  dropped: {', '.join(kinds)} of group {group!r}: every expert's task vector there is zero "
                "(its tensors equal the base's), so no value changes the merge" for group, kinds in groups.items()]


def expert_label(ref: str) -> str:
    """A short name for an expert reference (`bench://digits/rotated` -> `rotated`)."""
    return ref.rstrip("/").rsplit("/", 1)[-1].removesuffix(".safetensors")


def build_space(merge: MergeSpec, experts: Sequence[str], tensor_names: Sequence[str] = (),
                inert: Callable[[Granularity, str], bool] | None = None) -> SearchSpace:
    """One parameter per searched kind, per group of its granularity, and per expert where it is per expert.

    `tensor_names` are the merged tensors; they decide which groups exist (only `model` granularity
    needs none). `inert(granularity, group)` says whether no expert changes a group's tensors; such groups are
    left out (a whole-model group never is).
    """
    labels = _unique_labels(experts)
    params: list[Parameter] = []
    dropped: list[InertGroup] = []
    for kind, rng in merge.searched():
        groups = ["all"] if rng.granularity.kind == "model" else rng.granularity.labels(tensor_names)
        if not groups:
            raise ValueError(f"{kind}: granularity {rng.granularity.kind} needs the model's tensor names")
        for group in groups:
            if inert is not None and rng.granularity.kind != "model" and inert(rng.granularity, group):
                dropped.append(InertGroup(kind, group, rng.granularity, rng.high, kind in PER_EXPERT))
                continue
            suffix = "" if rng.granularity.kind == "model" else f".{group}"
            where = _where(rng.granularity, group)
            if kind not in PER_EXPERT:
                params.append(Parameter(f"{kind}{suffix}", rng.low, rng.high, f"{kind} ({where})", kind, None,
                                        group, rng.granularity))
                continue
            for i, (ref, label) in enumerate(zip(experts, labels, strict=True)):
                params.append(Parameter(f"{kind}.{label}{suffix}", rng.low, rng.high, f"{kind} of {ref} ({where})",
                                        kind, i, group, rng.granularity))
    return SearchSpace(tuple(params), tuple(dropped))


def _where(granularity: Granularity, group: str) -> str:
    if granularity.kind == "model":
        return "whole model"
    if granularity.kind == "layers":
        return "tensors outside the layers" if group == "non_layer" else group.replace("_", " ")
    if granularity.kind == "component":
        return f"{group} tensors"
    return "tensors no filter matches" if group == "rest" else f"tensors matching {group!r}"


def _unique_labels(experts: Sequence[str]) -> list[str]:
    labels = [expert_label(ref) for ref in experts]
    return [lb if labels.count(lb) == 1 else f"{lb}{i}" for i, lb in enumerate(labels)]
