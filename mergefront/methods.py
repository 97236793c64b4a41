"""What each merge method takes, known without torch (the spec validates against it).

Parameter names, defaults and meanings follow mergekit 0.1.5, so an exported YAML merges the same model:
`weight`, `density`, `gamma`, `epsilon` are set per expert; `lambda` and `t`
once per tensor; `normalize` is a fixed switch. The implementations live in `mergefront.evaluators.methods`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PER_EXPERT = ("weight", "density", "gamma", "epsilon")
GLOBAL = ("lambda", "t")
SEARCHABLE = PER_EXPERT + GLOBAL


@dataclass(frozen=True)
class MethodInfo:
    name: str
    params: tuple[str, ...]
    defaults: dict[str, float] = field(default_factory=dict)
    normalize: bool | None = False  # the default of the `normalize` switch; None: the method has none
    rescale: bool | None = None  # the default of `rescale` (keep each sparsified task vector's L1 norm)
    min_experts: int = 1
    max_experts: int | None = None
    random: bool = False  # draws random masks, reproducible from the candidate's seed
    summary: str = ""


def _info(name: str, params: tuple[str, ...], summary: str, **kwargs: object) -> MethodInfo:
    defaults = {"weight": 1.0, "density": 1.0, "gamma": 0.01, "epsilon": 0.15, "lambda": 1.0, "t": 0.5}
    return MethodInfo(name, params, {p: defaults[p] for p in params}, summary=summary, **kwargs)  # type: ignore[arg-type]


METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    _info("linear", ("weight",), "weighted mean of the experts", normalize=True),
    _info("task_arithmetic", ("weight", "lambda"), "base + lambda * sum of weighted task vectors", rescale=False),
    _info("ties", ("weight", "density", "lambda"), "trim by magnitude, elect signs, disjoint mean", normalize=True,
          rescale=False),
    _info("dare_ties", ("weight", "density", "lambda"), "random drop and rescale, then TIES sign election",
          rescale=True, random=True),
    _info("dare_linear", ("weight", "density", "lambda"), "random drop and rescale, weighted sum", rescale=True,
          random=True),
    _info("breadcrumbs", ("weight", "density", "gamma", "lambda"), "drop the largest and the smallest entries",
          rescale=False),
    _info("breadcrumbs_ties", ("weight", "density", "gamma", "lambda"), "breadcrumbs then TIES sign election",
          rescale=False),
    _info("della", ("weight", "density", "epsilon", "lambda"), "magnitude-ranked random drop, TIES sign election",
          normalize=True, rescale=True, random=True),
    _info("della_linear", ("weight", "density", "epsilon", "lambda"), "magnitude-ranked random drop, weighted sum",
          rescale=True, random=True),
    _info("slerp", ("t",), "spherical interpolation from the base (t=0) to one expert (t=1)", normalize=None,
          max_experts=1),
    _info("model_stock", (), "Model Stock: interpolate the expert mean toward the base by their geometry",
          normalize=None, min_experts=2),
)}
