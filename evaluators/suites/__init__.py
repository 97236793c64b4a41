"""Built-in benchmark suites: small real models trained here, cached on disk.

Every suite offers the same small surface (`Suite`): load a model of the suite by name, say which tensors are
merged, and make an evaluator that scores merged tensors on some of its tasks. `open_suite` returns it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch


class TaskEvaluator(Protocol):
    """Scores merged tensors on a fixed set of tasks; data and heads stay resident on one device."""

    def evaluate(self, merged: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
        """`{task: {metric: value}}` of the model whose merged tensors are `merged`."""
        ...


class Suite(Protocol):
    def load_model(self, name: str) -> dict[str, torch.Tensor]:
        """The state dict of model `name` ("base" or a task's expert)."""
        ...

    def model_path(self, name: str) -> Path:
        """The file or Hugging Face directory holding model `name`."""
        ...

    def merged_keys(self, base: Mapping[str, torch.Tensor]) -> list[str]:
        """The tensors of the base that merging changes (task heads, if any, are not merged)."""
        ...

    def evaluator(self, tasks: Sequence[str], split: str, device: torch.device,
                  metrics: Sequence[str] | None = None) -> TaskEvaluator:
        """An evaluator of `tasks` on `split`; `metrics` (None: all the suite reports) may spare it work."""
        ...


def ensure_suite(name: str, cache_root: Path, seed: int = 0, *, verbose: bool = True) -> Path:
    """Build the named suite into `cache_root` unless it is cached; return its folder."""
    return _module(name).ensure_built(cache_root, seed, verbose=verbose)


def built_suite(name: str, cache_root: Path, seed: int = 0) -> Path:
    """The named suite's folder in `cache_root` if it is built; NotFoundError (nothing is built) if not."""
    from mergefront.errors import NotFoundError
    from mergefront.evaluators.suites.cache import MANIFEST

    folder: Path = _module(name).suite_dir(cache_root, seed)
    if not (folder / MANIFEST).is_file():
        raise NotFoundError(f"suite {name!r} is built when the job starts")
    return folder


def open_suite(name: str, path: Path) -> Suite:
    """The built suite `name` at `path`."""
    suite: Suite = _module(name).open_suite(path)
    return suite


def _module(name: str):  # type: ignore[no-untyped-def]
    if name == "digits":
        from mergefront.evaluators.suites import digits

        return digits
    if name == "tinylm":
        from mergefront.evaluators.suites import tinylm

        return tinylm
    raise ValueError(f"unknown built-in suite {name!r}")
