"""The ``lm_eval`` evaluator: lm-evaluation-harness tasks run on the resident merged model (extra: mergefront[lmeval]).

Tasks are named as the harness names them: tasks of your own, YAML files in the harness's format under
``include_path``, or its built-in ones. The harness's catalogue of built-in tasks (about 15,000, some seconds to
index) is read only when a named task is not found under ``include_path``. Tasks, their data and their few-shot
settings are loaded once per worker; each candidate then costs the harness's forward passes only.

Nothing is downloaded: ``HF_DATASETS_OFFLINE=1`` is set when this module is imported, unless the environment sets
it already, so a built-in task runs only when its data is in the Hugging Face datasets cache (set
``HF_DATASETS_OFFLINE=0`` on the workers to let the harness fetch it).

Metrics are named ``TASK/METRIC`` (``my_task/acc``, ``my_task/exact_match``; a group's aggregate is
``GROUP/METRIC``). The harness names each metric after the filter that produced it; its default filter ``none`` is
dropped, another one is kept as the harness writes it: ``gsm8k/exact_match,strict-match``. Standard errors and
non-numeric entries are left out.
"""

from __future__ import annotations

import difflib
import logging
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mergefront.errors import EvaluationFailedError, InvalidSpecError
from mergefront.objectives import LMEvalSettings

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # read when `datasets` is imported, which lm_eval does

try:
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
except ImportError as exc:
    raise ImportError(f"the lm_eval evaluator needs lm-evaluation-harness ({exc}): "
                      "pip install 'mergefront[lmeval]'") from exc

__all__ = ["LMEvalObjective", "metrics_of"]

#: the harness's own default seeds (python, numpy and torch; few-shot sampling)
RANDOM_SEED, OTHER_SEED = 0, 1234
DEFAULT_FILTER = "none"


class _ResidentLM(HFLM):  # type: ignore[misc]
    """The harness's Hugging Face wrapper around a model already in memory, without progress bars."""

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = True) -> list[tuple[float, bool]]:
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)  # type: ignore[no-any-return]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = True) -> list[float]:
        return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)  # type: ignore[no-any-return]

    def generate_until(self, requests: list[Any], disable_tqdm: bool = True) -> list[str]:
        return super().generate_until(requests, disable_tqdm=disable_tqdm)  # type: ignore[no-any-return]


class LMEvalObjective:
    """Scores the resident model on lm-evaluation-harness tasks; made once per worker. Not thread safe.

    The model is wrapped as it is (never copied, written or reloaded); the wrapper is kept while the same model
    object comes back, so weights overwritten in place between calls are what each call scores. Calls seed
    python, numpy and torch with the harness's defaults (restoring the caller's random states afterwards) and
    draw the same few-shot examples every time, so equal weights give equal numbers.

    Raises `InvalidSpecError` for a task name the harness does not know and `EvaluationFailedError` when the
    tasks cannot be loaded (their data is not on disk, say) or the model is not a Hugging Face model.
    """

    def __init__(self, settings: LMEvalSettings, *, tokenizer: Any, device: torch.device) -> None:
        if logging.getLogger("lm_eval").level == logging.NOTSET:
            logging.getLogger("lm_eval").setLevel(logging.WARNING)
        self.settings = settings
        self.tokenizer = tokenizer
        self.device = device  # the harness runs the model where it is; kept to fork the right random states
        self._loaded = _load_tasks(settings)  # {"tasks": {name: Task}, "groups": {name: Group}, "group_map": ...}
        self.tasks: dict[str, Any] = self._loaded["tasks"]
        self._wrapped: tuple[torch.nn.Module, Any, Any] | None = None  # (model, tokenizer, its harness wrapper)

    def __call__(self, model: torch.nn.Module, tokenizer: Any) -> dict[str, float]:
        lm = self._wrap(model, tokenizer if tokenizer is not None else self.tokenizer)
        model.eval()
        for task in self.tasks.values():
            task.set_fewshot_seed(seed=OTHER_SEED)
        with _fixed_seeds(self.device):
            results = evaluate(lm=lm, task_dict=self._loaded, limit=self.settings.limit, bootstrap_iters=0,
                               log_samples=False)
        return metrics_of(results)

    def _wrap(self, model: torch.nn.Module, tokenizer: Any) -> Any:
        """The harness's wrapper of `model`, made on the first call and again only for another model object."""
        if self._wrapped is not None and self._wrapped[0] is model and self._wrapped[1] is tokenizer:
            return self._wrapped[2]
        from transformers import PreTrainedModel

        if not isinstance(model, PreTrainedModel):
            raise EvaluationFailedError(f"lm_eval runs Hugging Face models only, not a {type(model).__name__}")
        if tokenizer is None:
            raise EvaluationFailedError("lm_eval needs a tokenizer, and the base model has none")
        lm = _ResidentLM(pretrained=model, tokenizer=tokenizer, batch_size=self.settings.batch_size)
        self._wrapped = (model, tokenizer, lm)
        return lm


def _load_tasks(settings: LMEvalSettings) -> dict[str, Any]:
    """The harness's `TaskManager.load` of the named tasks, with their few-shot counts set."""
    loaded = _own_tasks(settings)
    if loaded is None:
        manager = TaskManager(include_path=settings.include_path)
        _check_names(settings, manager.all_tasks)
        loaded = _load(manager, settings.tasks)
    for task in loaded["tasks"].values():
        _set_fewshot(task, settings.num_fewshot)
    return loaded


def _own_tasks(settings: LMEvalSettings) -> dict[str, Any] | None:
    """The named tasks loaded from `include_path` alone; None when some need the harness's built-in tasks."""
    if settings.include_path is None:
        return None
    manager = TaskManager(include_path=settings.include_path, include_defaults=False)
    if not set(settings.tasks) <= set(manager.all_tasks):
        return None
    try:
        return manager.load(list(settings.tasks))  # type: ignore[no-any-return]
    except KeyError:  # a group of your own that lists built-in tasks
        return None
    except Exception as exc:  # the harness raises what its dataset loader raises
        raise _load_failed(settings.tasks, exc) from exc


def _check_names(settings: LMEvalSettings, known: Sequence[str]) -> None:
    for name in settings.tasks:
        if name in known or (name.endswith((".yaml", ".yml")) and Path(name).is_file()):
            continue
        close = difflib.get_close_matches(name, known, n=3)
        where = f"under include_path {settings.include_path!r}" if settings.include_path else \
            "(tasks of your own: set include_path to a folder of their YAML files)"
        hint = f"; did you mean {close}?" if close else ""
        raise InvalidSpecError(f"lm-evaluation-harness has no task {name!r}, neither built in nor {where}{hint}",
                               ("settings", "tasks"))


def _load(manager: Any, names: Sequence[str]) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = manager.load(list(names))
    except Exception as exc:  # the harness raises what its dataset loader raises
        raise _load_failed(names, exc) from exc
    return loaded


def _load_failed(names: Sequence[str], exc: Exception) -> EvaluationFailedError:
    hint = "; workers download nothing: put the data in the Hugging Face datasets cache or set " \
           "HF_DATASETS_OFFLINE=0" if isinstance(exc, ConnectionError) else ""
    return EvaluationFailedError(f"cannot load lm-evaluation-harness tasks {list(names)}: "
                                 f"{type(exc).__name__}: {exc}{hint}")


def _set_fewshot(task: Any, num_fewshot: int | None) -> None:
    """As the harness's own `simple_evaluate` does: a task whose config fixes 0 shots keeps 0; no count means 0."""
    configured = task.get_config("num_fewshot")
    if num_fewshot is not None and configured != 0:
        task.set_config(key="num_fewshot", value=num_fewshot)
    elif configured is None:
        task.set_config(key="num_fewshot", value=0)


@contextmanager
def _fixed_seeds(device: torch.device) -> Iterator[None]:
    """Python, numpy and torch seeded as the harness seeds them; the caller's states are restored afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        random.seed(RANDOM_SEED)
        np.random.seed(OTHER_SEED)
        torch.manual_seed(OTHER_SEED)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def metrics_of(results: Mapping[str, Any]) -> dict[str, float]:
    """`{"TASK/METRIC": value}` of the harness's results (its ``results`` and ``groups`` tables)."""
    metrics: dict[str, float] = {}
    for table in ("results", "groups"):
        for task, entries in results.get(table, {}).items():
            for key, value in entries.items():
                metric, comma, filter_name = key.partition(",")
                if not comma or metric.endswith("_stderr") or isinstance(value, bool) \
                        or not isinstance(value, int | float):
                    continue
                suffix = "" if filter_name == DEFAULT_FILTER else f",{filter_name}"
                metrics[f"{task}/{metric}{suffix}"] = float(value)
    return metrics
