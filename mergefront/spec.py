"""The job spec: one pydantic model, validated at the edge (REST, SDK, CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from mergefront.errors import InvalidSpecError
from mergefront.merge_spec import MergeSpec
from mergefront.methods import METHODS
from mergefront.suites import BUILTIN_SUITES, SUITE_METRICS, parse_bench_ref

OptimizerName = Literal["random", "nsga2", "qnehvi", "map", "saea"]


def _check_model_ref(ref: str) -> str:
    if ref.startswith("bench://"):
        parse_bench_ref(ref)
        return ref
    if "://" in ref:
        scheme = ref.split("://", 1)[0]
        raise ValueError(f"model reference scheme {scheme!r}:// is not supported yet; use bench://suite/name")
    raise ValueError(f"{ref!r}: only built-in bench://suite/name models can be evaluated yet")


ModelRef = Annotated[str, Field(min_length=1), AfterValidator(_check_model_ref)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelsSpec(_Strict):
    base: ModelRef
    experts: list[ModelRef] = Field(min_length=1, max_length=64)


class ObjectiveSpec(_Strict):
    task: str = Field(min_length=1)
    metric: Literal["accuracy", "loss"] = "accuracy"
    split: Literal["validation", "test"] = "validation"
    name: str | None = Field(None, min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")

    @property
    def key(self) -> str:
        """The objective's name in stored metrics."""
        return self.name or f"{self.task}_{self.metric}"

    @property
    def maximize(self) -> bool:
        """Accuracies are maximised, losses minimised."""
        return self.metric != "loss"


class OptimizerSpec(_Strict):
    name: OptimizerName = "nsga2"
    budget: int = Field(48, gt=0, le=100_000, description="evaluations, failed ones included")
    batch_size: int = Field(4, gt=0, le=1024)
    seed: int = Field(0, ge=0)
    reference_point: list[float] | None = None
    population_size: int | None = Field(None, ge=4, description="nsga2, saea: default max(8, 2 x dimensions)")
    asynchronous: bool = Field(False, description="ask as workers free up (faster, not reproducible)")
    initial_points: int | None = Field(None, ge=2, le=100_000, description="qnehvi, map: size of the initial design")
    weak_to_strong: bool = Field(False, description="qnehvi: cross candidates with a DE mutant of the best (MM-MO)")
    uncertainty_screening: bool = Field(False, description="qnehvi: keep the candidates the GPs are least sure of")
    bayesian: bool = Field(False, description="map: sample where the surrogates' held-out error is largest")
    screening_factor: int | None = Field(None, ge=1, le=100, description="saea: offspring bred per evaluated one")

    @model_validator(mode="after")
    def _options_match_optimizer(self) -> OptimizerSpec:
        owners = {"initial_points": ("qnehvi", "map"), "weak_to_strong": ("qnehvi",),
                  "uncertainty_screening": ("qnehvi",), "bayesian": ("map",), "screening_factor": ("saea",)}
        for option, names in owners.items():
            if getattr(self, option) not in (None, False) and self.name not in names:
                raise ValueError(f"{option} is an option of {' and '.join(names)}, not of {self.name}")
        return self


class ResourcesSpec(_Strict):
    workers: int = Field(2, gt=0, le=256)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpus_per_worker: float = Field(0.0, ge=0)
    max_retries: int = Field(1, ge=0, le=10)


class JobSpec(_Strict):
    """What to merge, what to search, what to optimize, and with which resources."""

    name: str = Field("merge-search", min_length=1, max_length=200)
    models: ModelsSpec
    merge: MergeSpec
    objectives: list[ObjectiveSpec] = Field(min_length=1, max_length=16)
    optimizer: OptimizerSpec = OptimizerSpec()
    resources: ResourcesSpec = ResourcesSpec()

    @property
    def objective_keys(self) -> list[str]:
        return [o.key for o in self.objectives]

    @property
    def maximize(self) -> list[bool]:
        return [o.maximize for o in self.objectives]

    def default_reference_point(self) -> list[float]:
        """The worst value each objective can take (0 for accuracies; the suite says for losses)."""
        suite, _ = parse_bench_ref(self.models.base)
        return [SUITE_METRICS[suite][o.metric] for o in self.objectives]


def check_spec(spec: JobSpec) -> None:
    """Cross-field checks pydantic cannot place on one field; raise InvalidSpecError naming the field."""
    suite = _common_suite(spec)
    tasks = BUILTIN_SUITES[suite]
    for i, obj in enumerate(spec.objectives):
        if obj.task not in tasks:
            raise InvalidSpecError(f"{obj.task!r} is not a task of suite {suite!r}; known: {list(tasks)}",
                                   ("objectives", i, "task"))
        if obj.metric not in SUITE_METRICS[suite]:
            raise InvalidSpecError(f"suite {suite!r} reports {list(SUITE_METRICS[suite])}, not {obj.metric!r}",
                                   ("objectives", i, "metric"))
    keys = spec.objective_keys
    for i, key in enumerate(keys):
        if keys.index(key) != i:
            raise InvalidSpecError(f"objective name {key!r} is used twice", ("objectives", i, "name"))
    seen: set[str] = set()
    for i, ref in enumerate(spec.models.experts):
        if ref in seen or ref == spec.models.base:
            raise InvalidSpecError(f"{ref!r} is listed twice (or is the base)", ("models", "experts", i))
        seen.add(ref)
    _check_method(spec)
    ref_point = spec.optimizer.reference_point
    if ref_point is not None and len(ref_point) != len(spec.objectives):
        raise InvalidSpecError(f"has {len(ref_point)} values for {len(spec.objectives)} objectives",
                               ("optimizer", "reference_point"))


def _check_method(spec: JobSpec) -> None:
    info, k = METHODS[spec.merge.method], len(spec.models.experts)
    if k < info.min_experts or (info.max_experts is not None and k > info.max_experts):
        most = "" if info.max_experts is None else f" and at most {info.max_experts}"
        raise InvalidSpecError(f"{info.name} merges at least {info.min_experts}{most} experts, got {k}",
                               ("models", "experts"))
    for switch in ("normalize", "rescale"):
        if getattr(spec.merge, switch) is not None and getattr(info, switch) is None:
            raise InvalidSpecError(f"{info.name} has no {switch} switch", ("merge", switch))
    if info.name.startswith("della"):
        density = spec.merge.bounds("density") or (1.0, 1.0)
        eps = (spec.merge.bounds("epsilon") or (info.defaults["epsilon"],) * 2)[1]
        if density[0] < 1.0 and not (density[0] - eps > 0 and density[1] + eps < 1 or density[1] >= 1.0):
            raise InvalidSpecError(f"{info.name} needs density +- epsilon inside (0, 1): density {density}, "
                                   f"epsilon up to {eps}", ("merge", "epsilon"))
    if not spec.merge.searched():
        raise InvalidSpecError(f"nothing to search: give one of {list(info.params)} as a range"
                               if info.params else f"{info.name} has no parameter to search", ("merge", "method"))


def _common_suite(spec: JobSpec) -> str:
    base_suite, base_name = parse_bench_ref(spec.models.base)
    if base_name != "base":
        raise InvalidSpecError(f"the base of suite {base_suite!r} is bench://{base_suite}/base", ("models", "base"))
    for i, ref in enumerate(spec.models.experts):
        suite, name = parse_bench_ref(ref)
        if suite != base_suite or name == "base":
            raise InvalidSpecError(f"{ref!r} is not an expert of suite {base_suite!r}", ("models", "experts", i))
    return base_suite


def parse_spec(data: Any) -> JobSpec:
    """Validate a spec given as a mapping; raise InvalidSpecError naming the first bad field."""
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        # of a union's alternatives (a number or a range), the one whose input had the right type and that got
        # furthest names the field best
        best = max(exc.errors(), key=lambda e: (not e["type"].endswith(("_type", "_parsing")), len(e["loc"])))
        loc = [p for p in best["loc"] if not (isinstance(p, str) and (p in _UNION_TAGS or p.startswith("function-")))]
        raise InvalidSpecError(best["msg"], loc) from exc
    check_spec(spec)
    return spec


_UNION_TAGS = {"float", "Range", "int", "bool", "str"}


def load_spec(path: str | Path) -> JobSpec:
    """Read a YAML or JSON spec file."""
    text = Path(path).read_text()
    return parse_spec(yaml.safe_load(text))
