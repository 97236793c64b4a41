"""The evaluators an objective can name, known without importing torch: their settings and the metrics they report.

An objective names an evaluator in one of three ways:

- a built-in one by its registry name (`BUILTIN`): ``causal_lm``, ``generation``, ``classification`` (Hugging Face
  models scored on a local JSONL / CSV / Parquet file), ``lm_eval`` (lm-evaluation-harness tasks), and the cost
  objectives ``sparsity`` and ``storage``, computed from the merged tensors without running the model;
- a user function by import path, ``package.module:function``, called on the worker as
  ``function(model, tokenizer, settings)`` or ``function(model, tokenizer, **settings)`` (`call_style` says
  which, from its signature; see `mergefront.evaluators.objectives`); it returns a number or a mapping of named
  numbers;
- ``external``: nothing runs on the workers; candidates are fetched and told through the ask/tell API.

The worker side of each built-in lives in `mergefront.evaluators.objectives`; a test checks both sides list the
same names.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mergefront.errors import InvalidSpecError

EXTERNAL = "external"
#: built-in metrics that live in [0, 1] (MAP's surrogates warp them onto it)
UNIT_METRICS = frozenset({"accuracy", "exact_match", "sparsity", "kept_fraction", "fraction"})
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(_Settings):
    """A local table of examples and how much of it to score per candidate."""

    data: str = Field(min_length=1, description="a .jsonl, .json (list of records), .csv or .parquet file")
    limit: int | None = Field(None, ge=1, description="score only the first `limit` examples (cheaper, noisier)")
    batch_size: int = Field(8, ge=1, le=4096, description="examples per forward pass")

    @field_validator("data")
    @classmethod
    def _known_suffix(cls, value: str) -> str:
        if not value.endswith(DATA_SUFFIXES):
            raise ValueError(f"{value!r}: the data file must end with one of {list(DATA_SUFFIXES)}")
        return value


class CausalLMSettings(DataSettings):
    text_column: str = Field("text", min_length=1)
    prompt_column: str | None = Field(None, min_length=1, description="score only the text, given this prompt")
    max_length: int = Field(512, ge=2, le=131_072, description="tokens per example; longer texts are cut")


class GenerationSettings(DataSettings):
    prompt_column: str = Field("prompt", min_length=1)
    answer_column: str = Field("answer", min_length=1)
    max_new_tokens: int = Field(32, ge=1, le=4096, description="greedy decoding stops here or at end of sequence")
    case_sensitive: bool = True


class ClassificationSettings(DataSettings):
    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)
    labels: list[str] | None = Field(None, min_length=2, description="label names in class-index order; default: "
                                     "integer labels, or the names in the model's config.id2label")
    max_length: int = Field(512, ge=2, le=131_072)


class LMEvalSettings(_Settings):
    tasks: list[str] = Field(min_length=1, description="lm-evaluation-harness task names")
    include_path: str | None = Field(None, description="a folder of task YAML files of your own")
    limit: int | None = Field(None, ge=1, description="examples per task")
    batch_size: int = Field(8, ge=1, le=4096)
    num_fewshot: int | None = Field(None, ge=0)


class CostSettings(_Settings):
    pass


@dataclass(frozen=True)
class Metric:
    """A number an evaluator reports: its direction, and its worst useful value (None: not known beforehand)."""

    maximize: bool
    worst: float | None


@dataclass(frozen=True)
class EvaluatorInfo:
    name: str
    description: str
    settings: type[_Settings]
    metrics: dict[str, Metric]
    default_metric: str
    runs_model: bool = True  # False: a cost objective, computed from the merged tensors alone
    needs_tokenizer: bool = True
    any_metric: bool = False  # True: reports metrics named by its settings (lm_eval), so any name is accepted

    def metric(self, name: str) -> Metric:
        if name in self.metrics:
            return self.metrics[name]
        if self.any_metric:
            return Metric(maximize=not name.endswith(("loss", "perplexity", "stderr")), worst=None)
        raise KeyError(name)


BUILTIN: dict[str, EvaluatorInfo] = {info.name: info for info in (
    EvaluatorInfo("causal_lm", "mean next-token loss of a causal LM on a text column", CausalLMSettings,
                  {"loss": Metric(False, None), "perplexity": Metric(False, None)}, "loss"),
    EvaluatorInfo("generation", "exact match of greedy answers to a reference column", GenerationSettings,
                  {"exact_match": Metric(True, 0.0)}, "exact_match"),
    EvaluatorInfo("classification", "accuracy of a sequence-classification model on a labelled column",
                  ClassificationSettings, {"accuracy": Metric(True, 0.0)}, "accuracy"),
    EvaluatorInfo("lm_eval", "lm-evaluation-harness tasks on the resident model (extra: mergefront[lmeval]); "
                  "metrics are named TASK/METRIC, e.g. my_task/acc", LMEvalSettings, {}, "", any_metric=True),
    EvaluatorInfo("sparsity", "fraction of the merged task vector's entries that are zero (MM-MO)", CostSettings,
                  {"sparsity": Metric(True, 0.0), "kept_fraction": Metric(False, 1.0)}, "sparsity",
                  runs_model=False, needs_tokenizer=False),
    EvaluatorInfo("storage", "size of the merged result stored as a sparse difference from the base (MERGE)",
                  CostSettings, {"megabytes": Metric(False, None), "fraction": Metric(False, 1.0)}, "megabytes",
                  runs_model=False, needs_tokenizer=False),
)}


def is_import_path(name: str) -> bool:
    return ":" in name


def runs_model(evaluator: str) -> bool:
    """Whether an evaluator needs the merged model (user functions and built-ins but the cost objectives)."""
    info = BUILTIN.get(evaluator)
    return evaluator != EXTERNAL and (info is None or info.runs_model)


def load_function(path: str) -> Callable[..., Any]:
    """The callable that `package.module:function` names; raise ValueError saying what is wrong (and which file
    was imported, since a module of the same name elsewhere on the import path may have won)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not an import path of the form package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own error while importing
        raise ValueError(f"cannot import {module_name!r} (from {path!r}): {type(exc).__name__}: {exc}") from exc
    where = f"module {module_name!r} (imported from {getattr(module, '__file__', None) or 'a namespace package'})"
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{where} has no {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{path!r} in {where} is not callable")
    return target  # type: ignore[no-any-return]


CallStyle = Literal["mapping", "keywords"]


def call_style(function: Callable[..., Any], settings: dict[str, Any], path: str) -> CallStyle:
    """How a user function takes its settings: `function(model, tokenizer, settings)` ("mapping": it has a
    parameter named `settings`, or a third positional one and no setting matches its parameters) or
    `function(model, tokenizer, **settings)` ("keywords"). ValueError saying how it is called when neither binds."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return "mapping"  # a builtin or C function: called as documented
    attempts: list[tuple[CallStyle, tuple[Any, ...], dict[str, Any]]] = [("keywords", (None, None), settings)]
    if "settings" in signature.parameters:
        attempts.insert(0, ("mapping", (None, None, settings), {}))
    elif not set(settings) & set(signature.parameters):  # no setting is one of its parameters
        attempts.append(("mapping", (None, None, settings), {}))
    problems = []
    for style, args, kwargs in attempts:
        try:
            signature.bind(*args, **kwargs)
            return style
        except TypeError as exc:
            problems.append(str(exc))
    raise ValueError(f"{path} cannot be called with these settings: mergefront calls it as function(model, "
                     "tokenizer, **settings) or function(model, tokenizer, settings), and its signature "
                     f"{signature} takes neither ({'; '.join(problems)}); define it as def f(model, tokenizer, "
                     "settings) or with one keyword parameter per setting")


def check_settings(evaluator: str, settings: dict[str, Any], loc: tuple[Any, ...]) -> dict[str, Any]:
    """Validate an objective's settings for its evaluator; return them with defaults filled in."""
    if evaluator == EXTERNAL:
        if settings:
            raise InvalidSpecError("the external evaluator takes no settings", (*loc, "settings"))
        return {}
    if is_import_path(evaluator):
        try:
            function = load_function(evaluator)
        except ValueError as exc:
            raise InvalidSpecError(str(exc), (*loc, "evaluator")) from exc
        schema = getattr(function, "settings_model", None)  # an optional pydantic model the function declares
        values = _validate(schema, settings, loc) if isinstance(schema, type) and issubclass(schema, BaseModel) \
            else dict(settings)
        try:
            call_style(function, values, evaluator)
        except ValueError as exc:
            raise InvalidSpecError(str(exc), (*loc, "settings")) from exc
        return values
    info = BUILTIN.get(evaluator)
    if info is None:
        raise InvalidSpecError(f"unknown evaluator {evaluator!r}; built-in: {sorted(BUILTIN)}, "
                               f"{EXTERNAL!r}, or an import path package.module:function", (*loc, "evaluator"))
    values = _validate(info.settings, settings, loc)
    model = info.settings.model_validate(values)
    if isinstance(model, DataSettings):
        _check_data_file(model, (*loc, "settings"))
    if isinstance(model, LMEvalSettings) and model.include_path is not None and not Path(model.include_path).is_dir():
        raise InvalidSpecError(f"{model.include_path!r} is not a folder", (*loc, "settings", "include_path"))
    return values


def _validate(schema: type[BaseModel], settings: dict[str, Any], loc: tuple[Any, ...]) -> dict[str, Any]:
    try:
        return schema.model_validate(settings).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidSpecError(first["msg"], (*loc, "settings", *first["loc"])) from exc


def _check_data_file(settings: DataSettings, loc: tuple[Any, ...]) -> None:
    path = Path(settings.data)
    if not path.is_file():
        raise InvalidSpecError(f"data file {settings.data!r} does not exist", (*loc, "data"))
    try:
        columns = read_columns(path)
    except Exception as exc:  # a malformed file: say so now rather than fail every evaluation
        raise InvalidSpecError(f"cannot read {settings.data!r}: {type(exc).__name__}: {exc}", (*loc, "data")) from exc
    for field in type(settings).model_fields:
        name = getattr(settings, field)
        if field.endswith("_column") and name is not None and name not in columns:
            raise InvalidSpecError(f"{settings.data!r} has no column {name!r}; it has {sorted(columns)}",
                                   (*loc, field))


def read_columns(path: Path) -> set[str]:
    """The column names of a data file, from its first record (JSONL / JSON), header (CSV) or schema (Parquet)."""
    suffix = path.suffix
    if suffix == ".jsonl":
        with path.open() as handle:
            for line in handle:
                if line.strip():
                    return set(json.loads(line))
        raise ValueError("the file has no records")
    if suffix == ".json":
        records = json.loads(path.read_text())
        if not isinstance(records, list) or not records or not isinstance(records[0], dict):
            raise ValueError("a .json data file must hold a non-empty list of records")
        return set(records[0])
    if suffix == ".csv":
        with path.open(newline="") as handle:
            return set(next(csv.reader(handle)))
    import pyarrow.parquet as pq

    return set(pq.read_schema(path).names)


def read_records(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` records (all when None) of a JSONL / JSON / CSV / Parquet file."""
    suffix = path.suffix
    if suffix == ".jsonl":
        records = []
        with path.open() as handle:
            for line in handle:
                if line.strip():
                    records.append(json.loads(line))
                    if limit is not None and len(records) >= limit:
                        break
        return records
    if suffix == ".json":
        return list(json.loads(path.read_text()))[:limit]
    if suffix == ".csv":
        with path.open(newline="") as handle:
            return [dict(row) for row in itertools.islice(csv.DictReader(handle), limit)]
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table.slice(0, limit).to_pylist() if limit is not None else table.to_pylist()


Direction = Literal["maximize", "minimize"]
