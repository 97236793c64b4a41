"""The job spec: one pydantic model, validated at the edge (REST, SDK, CLI)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ByteSize, ConfigDict, Field, ValidationError, model_validator

from mergefront.bounds import CleanModel, Metric
from mergefront.errors import InvalidSpecError
from mergefront.merge_spec import MergeSpec
from mergefront.methods import METHODS
from mergefront.objectives import BUILTIN, EXTERNAL, Direction, check_settings
from mergefront.spec_file import read_spec_file
from mergefront.suites import BENCH_SCHEME, BUILTIN_SUITES, HF_SUITES, SUITE_METRICS, parse_bench_ref

OptimizerName = Literal["auto", "random", "nsga2", "qnehvi", "map", "hybrid", "saea"]


HF_SCHEME = "hf://"


def _check_model_ref(ref: str) -> str:
    if ref.startswith(BENCH_SCHEME):
        parse_bench_ref(ref)
        return ref
    if ref.startswith(HF_SCHEME):
        repo = ref[len(HF_SCHEME):].partition("@")[0]
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ValueError(f"{ref!r} is not of the form hf://org/name[@revision]")
        return ref
    if "://" in ref:
        scheme = ref.split("://", 1)[0]
        raise ValueError(f"model reference scheme {scheme!r}:// is not supported; use a local path, "
                         "hf://org/name or bench://suite/name")
    return ref  # a local Hugging Face directory or .safetensors file; check_spec checks it exists


ModelRef = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_check_model_ref)]


class _Strict(CleanModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelsSpec(_Strict):
    base: ModelRef
    experts: list[ModelRef] = Field(min_length=1, max_length=64)


class ObjectiveSpec(_Strict):
    """One objective: a task of the built-in suite the models come from, or an evaluator with its settings."""

    task: str | None = Field(None, min_length=1, max_length=200,
                             description="a task of the bench:// suite the models come from")
    evaluator: str | None = Field(None, min_length=1, max_length=500,
                                  description="a built-in evaluator (causal_lm, generation, classification, lm_eval, "
                                  "sparsity, storage), package.module:function, or external")
    settings: dict[str, Any] = Field(default_factory=dict, description="the evaluator's settings")
    metric: str | None = Field(None, min_length=1, max_length=200,
                               description="which of the reported metrics is the objective")
    direction: Direction | None = Field(None, description="required for functions and external objectives")
    split: Literal["validation", "test"] = "validation"
    name: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")

    @model_validator(mode="after")
    def _one_source(self) -> ObjectiveSpec:
        if (self.task is None) == (self.evaluator is None):
            raise ValueError("give either task (a task of a bench:// suite) or evaluator")
        if self.task is not None and self.settings:
            raise ValueError("settings go with an evaluator, not with a suite task")
        return self

    @property
    def metric_name(self) -> str:
        """The metric this objective reads ("" for a function that returns a single number)."""
        if self.metric is not None:
            return self.metric
        if self.task is not None:
            return "accuracy"
        info = BUILTIN.get(self.evaluator or "")
        return info.default_metric if info is not None else ""

    @property
    def key(self) -> str:
        """The objective's name in stored metrics."""
        if self.name:
            return self.name
        metric = re.sub(r"[^A-Za-z0-9_.\-]", "_", self.metric_name)
        if self.task is not None:
            return f"{self.task}_{metric}"
        source = (self.evaluator or "").rpartition(":")[2].rpartition(".")[2]
        return f"{source}_{metric}" if metric else source

    @property
    def maximize(self) -> bool:
        """Accuracies are maximised, losses minimised; functions and external objectives say which."""
        if self.direction is not None:
            return self.direction == "maximize"
        if self.task is not None:
            return self.metric_name != "loss"
        info = BUILTIN.get(self.evaluator or "")
        return info.metric(self.metric_name).maximize if info is not None else True

    @property
    def worst(self) -> float | None:
        """The objective's worst useful value, the default reference point (None: inferred from the first batch)."""
        if self.task is not None:
            return None
        info = BUILTIN.get(self.evaluator or "")
        return info.metric(self.metric_name).worst if info is not None else None


class OptimizerSpec(_Strict):
    name: OptimizerName = Field("auto", description="auto: the optimizer the sample-efficiency benchmark shows best "
                                "for the job's dimensions, objectives, budget and noise (see docs/optimizers.md)")
    budget: int = Field(48, gt=0, le=100_000, description="evaluations, failed ones included")
    batch_size: int = Field(4, gt=0, le=1024)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    reference_point: list[Metric | None] | None = Field(
        None, max_length=16,
        description="per objective, its worst useful value; null entries are inferred from the first batch")
    population_size: int | None = Field(None, ge=4, le=100_000, description="nsga2, saea: default max(8, 2 x "
                                        "dimensions), at most a quarter of the budget")
    asynchronous: bool = Field(False, description="ask as workers free up (faster, not reproducible)")
    initial_points: int | None = Field(None, ge=2, le=100_000, description="qnehvi, map, hybrid: size of the initial "
                                       "design (default: scaled to the space, at most a quarter of the budget)")
    weak_to_strong: bool = Field(False, description="qnehvi: cross candidates with a DE mutant of the best (MM-MO)")
    uncertainty_screening: bool = Field(False, description="qnehvi: keep the candidates the GPs are least sure of")
    bayesian: bool = Field(False, description="map: sample where the surrogates' held-out error is largest")
    nested: bool = Field(False, description="map: merge pairs of experts, then merge the merges (Nested MAP)")
    screening_factor: int | None = Field(None, ge=1, le=100, description="saea: offspring bred per evaluated one")
    refine: float = Field(0.0, ge=0.0, le=1.0, description="hybrid: share of the points after the initial design "
                          "proposed inside small boxes around the ends of the evaluated front (0: none)")
    refine_radius: float | None = Field(None, gt=0.0, le=0.5, description="hybrid: half-width of a refinement's "
                                        "box in the unit cube (default 0.1)")
    refine_means: bool = Field(False, description="hybrid: choose the refinements' anchors on the GPs' posterior "
                               "means instead of single (noisy) evaluations")
    outcome_warp: Literal["logit"] | None = Field(
        None, description="hybrid: fit each GP to the logit of an objective known to lie in [0, 1], such as an "
        "accuracy; the acquisition stays on the objective's scale (default: the values themselves)")
    reevaluate: float = Field(0.0, ge=0.0, le=0.5, description="share of the budget spent evaluating front members "
                              "again with new mask seeds (0: none; at most 0.5); the front is then taken on each "
                              "point's mean, with its spread and number of evaluations")

    @model_validator(mode="after")
    def _options_match_optimizer(self) -> OptimizerSpec:
        owners = {"initial_points": ("qnehvi", "map", "hybrid", "auto"), "weak_to_strong": ("qnehvi",),
                  "uncertainty_screening": ("qnehvi",), "bayesian": ("map",), "nested": ("map",),
                  "screening_factor": ("saea",), "refine": ("hybrid",), "refine_radius": ("hybrid",),
                  "refine_means": ("hybrid",), "outcome_warp": ("hybrid",)}
        for option, names in owners.items():
            if getattr(self, option) not in (None, False) and self.name not in names:
                raise ValueError(f"{option} is an option of {' and '.join(names)}, not of {self.name}")
        return self


def _check_memory(value: ByteSize) -> ByteSize:
    if not MIN_MEMORY <= value <= MAX_MEMORY:
        raise ValueError(f"{value} bytes is outside [1 MB, 1 PiB]; write e.g. 80GB or 24GiB")
    return value


MIN_MEMORY, MAX_MEMORY = 10**6, 2**50
MemorySize = Annotated[ByteSize, AfterValidator(_check_memory)]


class ResourcesSpec(_Strict):
    workers: int = Field(2, gt=0, le=256)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpus_per_worker: float = Field(0.0, ge=0, le=1024, description="GPUs each worker holds (a fraction shares a GPU)")
    max_retries: int = Field(1, ge=0, le=10)
    device_memory: MemorySize | None = Field(None, description="memory each worker may use on its device (80GB, "
                                             "24GiB, or bytes); default: what the device has free at worker start")
    host_memory: MemorySize | None = Field(None, description="host memory each worker may use (pinned task "
                                           "vectors, loading); default: what the host has available at worker start")
    placement: Literal["auto", "resident", "stream", "mmap"] = Field(
        "auto", description="where task vectors live: auto (the fastest that fits), resident on the device, "
        "streamed from pinned host memory, or memory-mapped from disk")
    ask_timeout: float = Field(3600.0, gt=0, le=30 * 86400,
                               description="external jobs: seconds a fetched candidate waits for its tell before it "
                               "goes back to the optimizer (at most 30 days)")


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

    @property
    def external(self) -> bool:
        """Whether candidates are evaluated outside mergefront and told through the ask/tell API."""
        return any(o.evaluator == EXTERNAL for o in self.objectives)

    @property
    def noisy(self) -> bool:
        """Whether the merge method draws random masks, so a merge scores differently with each candidate's seed."""
        return METHODS[self.merge.method].random

    @property
    def suite(self) -> str | None:
        """The built-in suite the models come from, or None for the user's own models."""
        return parse_bench_ref(self.models.base)[0] if self.models.base.startswith(BENCH_SCHEME) else None

    def default_reference_point(self) -> list[float | None]:
        """Each objective's worst useful value: the spec's, else the metric's (0 for accuracies, 1 for kept
        fractions, the suite's for its losses); None where neither is known (inferred from the first batch)."""
        given = self.optimizer.reference_point or [None] * len(self.objectives)
        out: list[float | None] = []
        for value, obj in zip(given, self.objectives, strict=True):
            if value is None and obj.task is not None and self.suite is not None:
                value = SUITE_METRICS[self.suite].get(obj.metric_name)
            out.append(value if value is not None else obj.worst)
        return out


def check_spec(spec: JobSpec) -> None:
    """Cross-field checks pydantic cannot place on one field; raise InvalidSpecError naming the field.

    Local model paths, data files and import paths are checked here, on the machine that validates the spec
    (the server, for a job submitted through REST).
    """
    suite = _check_models(spec)
    for i, obj in enumerate(spec.objectives):
        _check_objective(spec, suite, i, obj)
    keys = spec.objective_keys
    for i, key in enumerate(keys):
        if keys.index(key) != i:
            raise InvalidSpecError(f"objective name {key!r} is used twice; give the objectives names",
                                   ("objectives", i, "name"))
    if spec.external and not all(o.evaluator == EXTERNAL for o in spec.objectives):
        first = next(i for i, o in enumerate(spec.objectives) if o.evaluator != EXTERNAL)
        raise InvalidSpecError("a job with external objectives is evaluated outside mergefront: every objective "
                               "must be external", ("objectives", first, "evaluator"))
    _check_method(spec)
    ref_point = spec.optimizer.reference_point
    if ref_point is not None and len(ref_point) != len(spec.objectives):
        raise InvalidSpecError(f"has {len(ref_point)} values for {len(spec.objectives)} objectives",
                               ("optimizer", "reference_point"))
    if suite is None and not spec.models.base.startswith(HF_SCHEME):  # the merge must fit the memory given
        from mergefront.evaluators.headers import merged_tensor_names
        from mergefront.memory_plan import check_fits

        base = Path(spec.models.base).expanduser()
        check_fits(spec, base, merged_tensor_names(base))


def _check_objective(spec: JobSpec, suite: str | None, i: int, obj: ObjectiveSpec) -> None:
    loc: tuple[Any, ...] = ("objectives", i)
    if obj.task is not None:
        if suite is None:
            raise InvalidSpecError("suite tasks score bench:// models; for your own models name an evaluator",
                                   (*loc, "task"))
        tasks = BUILTIN_SUITES[suite]
        if obj.task not in tasks:
            raise InvalidSpecError(f"{obj.task!r} is not a task of suite {suite!r}; known: {list(tasks)}",
                                   (*loc, "task"))
        if obj.metric_name not in SUITE_METRICS[suite]:
            raise InvalidSpecError(f"suite {suite!r} reports {list(SUITE_METRICS[suite])}, not {obj.metric_name!r}",
                                   (*loc, "metric"))
        return
    evaluator = obj.evaluator or ""
    check_settings(evaluator, obj.settings, loc)
    info = BUILTIN.get(evaluator)
    if info is None:  # a function or external: only they know their metric and its direction
        if obj.direction is None:
            raise InvalidSpecError(f"say whether {evaluator} is to be maximized or minimized", (*loc, "direction"))
        return
    if not obj.metric_name:
        raise InvalidSpecError(f"{evaluator} reports metrics named by its tasks, e.g. TASK/acc: name one",
                               (*loc, "metric"))
    try:
        metric = info.metric(obj.metric_name)
    except KeyError:
        raise InvalidSpecError(f"{evaluator} reports {list(info.metrics)}, not {obj.metric_name!r}",
                               (*loc, "metric")) from None
    if obj.direction is not None and (obj.direction == "maximize") != metric.maximize:
        raise InvalidSpecError(f"{evaluator}'s {obj.metric_name} is "
                               f"{'maximized' if metric.maximize else 'minimized'}", (*loc, "direction"))
    if info.runs_model and suite is not None and suite not in HF_SUITES:
        raise InvalidSpecError(f"{evaluator} runs a Hugging Face model; suite {suite!r} has none "
                               f"(suites with one: {sorted(HF_SUITES)})", (*loc, "evaluator"))
    if info.runs_model and suite is None:
        _check_hf_directory(spec.models.base, needs_tokenizer=info.needs_tokenizer, loc=(*loc, "evaluator"))


def _check_hf_directory(ref: str, *, needs_tokenizer: bool, loc: tuple[Any, ...]) -> None:
    if ref.startswith(HF_SCHEME):
        return  # fetched when the job starts
    path = Path(ref).expanduser()
    if not (path / "config.json").is_file():
        raise InvalidSpecError(f"this evaluator runs the model: the base {ref!r} must be a Hugging Face directory "
                               "with a config.json", loc)
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt", "vocab.json")
    if needs_tokenizer and not any((path / f).is_file() for f in tokenizer_files):
        raise InvalidSpecError(f"this evaluator needs a tokenizer, and the base {ref!r} has no tokenizer files", loc)


def _check_models(spec: JobSpec) -> str | None:
    """Check the models; return their built-in suite, or None when they are the user's own."""
    refs: list[tuple[tuple[str | int, ...], str]] = [
        (("base",), spec.models.base), *((("experts", i), ref) for i, ref in enumerate(spec.models.experts))]
    bench = [ref.startswith(BENCH_SCHEME) for _, ref in refs]
    if any(bench) and not all(bench):
        odd = bench[0] != bench[1] and (len(bench) == 2 or bench[1] == bench[2])  # the base is the odd one
        at = ("base",) if odd else next(loc for (loc, _), b in zip(refs, bench, strict=True) if b != bench[0])
        raise InvalidSpecError("bench:// models cannot be merged with other models", ("models", *at))
    seen: set[str] = set()
    for i, ref in enumerate(spec.models.experts):
        if ref in seen or ref == spec.models.base:
            raise InvalidSpecError(f"{ref!r} is listed twice (or is the base)", ("models", "experts", i))
        seen.add(ref)
    if bench[0]:
        return _common_suite(spec)
    for loc, ref in refs:
        if not ref.startswith(HF_SCHEME) and not Path(ref).expanduser().exists():
            raise InvalidSpecError(f"checkpoint {ref!r} does not exist (paths are read on the machine that runs "
                                   "the job)", ("models", *loc))
    _check_shapes(spec)
    return None


def _check_shapes(spec: JobSpec) -> None:
    """Every local expert must have each of the base's floating tensors, in the same shape (headers only)."""
    from mergefront.evaluators.headers import check_compatible, merged_tensor_names, tensor_shapes

    if spec.models.base.startswith(HF_SCHEME):
        return
    try:
        base = tensor_shapes(Path(spec.models.base).expanduser())
        keys = merged_tensor_names(Path(spec.models.base).expanduser())
    except InvalidSpecError as exc:
        raise InvalidSpecError(exc.message, ("models", "base")) from exc
    for i, ref in enumerate(spec.models.experts):
        if ref.startswith(HF_SCHEME):
            continue
        try:
            check_compatible(base, tensor_shapes(Path(ref).expanduser()), f"expert {ref!r}", keys)
        except InvalidSpecError as exc:
            raise InvalidSpecError(exc.message, ("models", "experts", i)) from exc


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
    """Read a YAML or JSON spec file; relative model and data paths in it are relative to the file's folder.

    Evaluator functions given by import path are imported with the spec's folder first on `sys.path`, then the
    current directory (so a module next to the spec wins over an installed package of the same name).
    """
    path = Path(path)
    for folder in (os.getcwd(), str(path.resolve().parent)):
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    data = read_spec_file(path)
    try:
        return parse_spec(data)
    except InvalidSpecError as exc:  # say which file the field is in
        raise InvalidSpecError(f"{exc.message} (in {path})", exc.loc, exc.errors[1:]) from None
