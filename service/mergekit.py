"""An evaluation as a mergekit YAML.

The YAML states every value the candidate used, per tensor where granularity is finer than the whole model,
through mergekit's name filters (a filter is a substring of tensor names; the first match wins). Filters are
chosen so that each matches exactly the tensors of its group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from mergefront.granularity import Granularity
from mergefront.methods import METHODS, PER_EXPERT
from mergefront.optimizers import SearchSpace
from mergefront.service.space import ModelFiles
from mergefront.spec import JobSpec


def mergekit_config(spec: JobSpec, space: SearchSpace, params: Mapping[str, float], files: ModelFiles,
                    refs: Sequence[str] | None = None) -> dict:
    """The mergekit configuration of one evaluated candidate; `refs` name the base and experts (default: the
    paths of `files`)."""
    per_expert, shared = _settings(spec, space, params, files)
    method = spec.merge.method
    base, *experts = refs or [str(files.base), *(str(p) for p in files.experts)]
    models = [{"model": ref, **({"parameters": p} if p else {})} for ref, p in zip(experts, per_expert, strict=True)]
    config: dict[str, Any] = {"merge_method": method, "dtype": files.dtype}
    if method == "slerp":
        models.insert(0, {"model": base})
    if method != "linear":
        config["base_model"] = base
    config["models"] = models
    info = METHODS[method]  # switches are written out, so the YAML means the same whatever mergekit's defaults
    if info.normalize is not None:
        shared["normalize"] = info.normalize if spec.merge.normalize is None else spec.merge.normalize
    if info.rescale is not None:
        shared["rescale"] = info.rescale if spec.merge.rescale is None else spec.merge.rescale
    if shared:
        config["parameters"] = shared
    return config


def mergekit_yaml(spec: JobSpec, space: SearchSpace, params: Mapping[str, float], files: ModelFiles,
                  refs: Sequence[str] | None = None) -> str:
    header = f"# mergekit configuration of a mergefront candidate ({spec.name}); run: mergekit-yaml THIS OUT_DIR\n"
    return header + yaml.safe_dump(mergekit_config(spec, space, params, files, refs), sort_keys=False)


def _settings(spec: JobSpec, space: SearchSpace, params: Mapping[str, float], files: ModelFiles
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    k = len(spec.models.experts)
    per_expert: list[dict[str, Any]] = [{} for _ in range(k)]
    shared: dict[str, Any] = {}
    for kind, value in spec.merge.fixed().items():
        for target in (per_expert if kind in PER_EXPERT else [shared]):
            target[kind] = value
    by_kind: dict[tuple[str, int | None], dict[str, float]] = {}
    granularity: dict[str, Granularity] = {}
    for p in space.parameters:
        by_kind.setdefault((p.kind, p.expert), {})[p.group] = float(params[p.name])
        granularity[p.kind] = p.granularity
    for inert in space.inert:  # groups no expert changes: the value the service merged them with
        for i in range(k) if inert.per_expert else [None]:
            by_kind.setdefault((inert.kind, i), {})[inert.group] = inert.value
        granularity[inert.kind] = inert.granularity
    for (kind, expert), groups in by_kind.items():
        setting = _setting(groups, granularity[kind], files.merged_keys)
        (per_expert[expert] if expert is not None else shared)[kind] = setting
    return per_expert, shared


def _setting(groups: Mapping[str, float], granularity: Granularity, names: Sequence[str]) -> Any:
    """A scalar when every group has the same value, else mergekit filters that reproduce the groups."""
    if len(set(groups.values())) == 1:
        return next(iter(groups.values()))
    member = {n: granularity.group_of(n, names) for n in names}
    default_group = max(groups, key=lambda g: sum(1 for n in names if member[n] == g))
    entries: list[dict[str, Any]] = []
    for group, value in groups.items():
        if group != default_group:
            entries += [{"filter": f, "value": value} for f in exact_filters(group, member)]
    entries.append({"value": groups[default_group]})
    return entries


def exact_filters(group: str, member: Mapping[str, str]) -> list[str]:
    """Substrings that together match exactly the tensor names of `group` (greedy cover, full names last)."""
    inside = [n for n, g in member.items() if g == group]
    outside = [n for n, g in member.items() if g != group]
    candidates = sorted({c for n in inside for c in _substrings(n)}, key=len)
    exact = [c for c in candidates if not any(c in n for n in outside)]
    chosen: list[str] = []
    remaining = set(inside)
    while remaining:
        best = max(exact, key=lambda c: (sum(1 for n in remaining if c in n), -len(c)), default=None)
        if best is None or not any(best in n for n in remaining):
            chosen += sorted(remaining)  # a full name matches itself and, with its dots, nothing longer
            break
        chosen.append(best)
        remaining = {n for n in remaining if best not in n}
    return chosen


def _substrings(name: str) -> set[str]:
    """Dot-delimited pieces of a tensor name, with their dots, so `layers.1.` never matches `layers.11.`."""
    parts = name.split(".")
    out = set()
    for i in range(len(parts)):
        for j in range(i + 1, len(parts) + 1):
            piece = ".".join(parts[i:j])
            out.add(("." if i else "") + piece + ("." if j < len(parts) else ""))
    return out
