"""Objectives as a worker computes them, for each merged candidate.

The user-facing protocol is one function: ``evaluate(model, tokenizer, settings) -> float | Mapping[str, float]``.
`model` is the merged model, resident on the worker's device (its weights are the merge's output buffer, so
nothing is copied or written to disk); `tokenizer` is the base's tokenizer, or None when it has none; `settings`
is the objective's ``settings`` mapping from the job spec. A job names such a function by import path,
``package.module:function``; if the function has a ``settings_model`` attribute (a pydantic model), the settings
are validated against it when the job is submitted.

Built-in evaluators (`mergefront.objectives.BUILTIN` lists them) are classes made once per worker,
``Objective(settings, tokenizer=..., device=...)``, that load and tokenize their data up front and are then called
with ``(model, tokenizer)``. Cost objectives (sparsity, storage) never run the model: they are called with the
`ResidentMerger` holding the merge.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch

from mergefront.objectives import BUILTIN, call_style, check_settings, load_function

#: built-in evaluator name -> "module:Class" of its worker side
REGISTRY: dict[str, str] = {
    "causal_lm": "mergefront.evaluators.objectives.hf:CausalLMObjective",
    "generation": "mergefront.evaluators.objectives.hf:GenerationObjective",
    "classification": "mergefront.evaluators.objectives.hf:ClassificationObjective",
    "lm_eval": "mergefront.evaluators.objectives.lm_eval:LMEvalObjective",
    "sparsity": "mergefront.evaluators.objectives.cost:SparsityObjective",
    "storage": "mergefront.evaluators.objectives.cost:StorageObjective",
}

Metrics = Mapping[str, float]


class Evaluator(Protocol):
    """A user's evaluator: scores the merged model."""

    def __call__(self, model: torch.nn.Module, tokenizer: Any, settings: Mapping[str, Any]) -> float | Metrics: ...


class ModelObjective(Protocol):
    """A built-in evaluator, made once per worker."""

    def __call__(self, model: torch.nn.Module, tokenizer: Any) -> Metrics: ...


class FunctionObjective:
    """A user function given by import path, with its settings bound."""

    def __init__(self, path: str, settings: Mapping[str, Any]) -> None:
        self.function: Callable[..., float | Metrics] = load_function(path)
        # as at submission: validated against the function's `settings_model` if it has one, defaults filled in
        self.settings = check_settings(path, dict(settings), ())
        self.keywords = call_style(self.function, self.settings, path) == "keywords"

    def __call__(self, model: torch.nn.Module, tokenizer: Any) -> Metrics:
        if self.keywords:
            result = self.function(model, tokenizer, **self.settings)
        else:
            result = self.function(model, tokenizer, self.settings)
        if isinstance(result, Mapping):
            return {str(k): float(v) for k, v in result.items()}
        return {"": float(result)}


def make_objective(evaluator: str, settings: Mapping[str, Any], *, tokenizer: Any,
                   device: torch.device) -> Callable[..., Metrics]:
    """The worker side of one objective's evaluator."""
    if evaluator not in BUILTIN:
        return FunctionObjective(evaluator, settings)
    module_name, _, cls_name = REGISTRY[evaluator].partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    parsed = BUILTIN[evaluator].settings.model_validate(dict(settings))
    objective: Callable[..., Metrics] = cls(parsed, tokenizer=tokenizer, device=device)
    return objective


def pick_metric(reported: Metrics, metric: str, label: str) -> float:
    """The objective's value among what its evaluator reported; a clear error when it is missing or not finite."""
    if metric in reported:
        value = float(reported[metric])
    elif not metric and len(reported) == 1:
        value = float(next(iter(reported.values())))
    else:
        known = sorted(k for k in reported if k)
        hint = "name one as the objective's metric" if not metric else f"it reported {known}"
        raise ValueError(f"{label}: no metric {metric!r} among what the evaluator reported; {hint}"
                         if metric else f"{label}: the evaluator reported {known}; {hint}")
    if not math.isfinite(value):
        raise ValueError(f"{label}: the evaluator reported {metric or 'its value'} = {value}")
    return value
