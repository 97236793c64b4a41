"""Data preparation for the ``bench://digits`` suite.

Every task sees the same samples of scikit-learn's bundled 8x8 digits (no download), split once from the
seed into train / validation / test; a task changes the inputs (rotation, inversion, noise) or the label
(parity, digit mod 3). Inputs are `n x 64` float32 in [0, 1]; labels are `n` int64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

TASKS: tuple[str, ...] = ("rotated", "inverted", "noisy", "parity", "mod3")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
N_PIXELS = 64
N_DIGITS = 10
NOISE_STD = 0.3  # on the [0, 1] pixel scale; clipped back into [0, 1]
VALIDATION_FRACTION = 0.2
TEST_FRACTION = 0.2

TASK_DESCRIPTIONS: dict[str, str] = {
    "rotated": "digit identity on images rotated 90 degrees",
    "inverted": "digit identity on inverted images (1 - pixel)",
    "noisy": f"digit identity under fixed per-sample gaussian noise (std {NOISE_STD}, clipped)",
    "parity": "even / odd of the digit on plain images",
    "mod3": "digit mod 3 on plain images",
}


@dataclass(frozen=True)
class Split:
    """One split of one task: `x` is `n x 64` float32 in [0, 1], `y` is `n` int64 class ids."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class TaskData:
    """A task's classes and its three splits (the same samples for every task)."""

    name: str
    n_classes: int
    train: Split
    validation: Split
    test: Split

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        split: Split = getattr(self, name)
        return split


@dataclass(frozen=True)
class SuiteData:
    """Plain digit identity (the base model's pre-training task) and every task's data."""

    plain: TaskData
    tasks: Mapping[str, TaskData]


def _rotate(images: np.ndarray, seed: int) -> np.ndarray:
    squares = images.reshape(-1, 8, 8)  # n x 8 x 8
    return np.ascontiguousarray(np.rot90(squares, k=1, axes=(1, 2))).reshape(-1, N_PIXELS)


def _invert(images: np.ndarray, seed: int) -> np.ndarray:
    return 1.0 - images


def _add_noise(images: np.ndarray, seed: int) -> np.ndarray:
    # One draw for the whole set: each sample's noise is fixed by the seed and its index.
    noise = np.random.default_rng([seed, 0xD161]).normal(0.0, NOISE_STD, size=images.shape)
    return np.clip(images + noise, 0.0, 1.0)


def _identity(images: np.ndarray, seed: int) -> np.ndarray:
    return images


_INPUTS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "rotated": _rotate,
    "inverted": _invert,
    "noisy": _add_noise,
    "parity": _identity,
    "mod3": _identity,
}
_LABELS: dict[str, tuple[int, Callable[[np.ndarray], np.ndarray]]] = {
    "rotated": (N_DIGITS, lambda d: d),
    "inverted": (N_DIGITS, lambda d: d),
    "noisy": (N_DIGITS, lambda d: d),
    "parity": (2, lambda d: d % 2),
    "mod3": (3, lambda d: d % 3),
}


def n_classes(task: str) -> int:
    """Number of classes of `task`; raises ValueError for an unknown task."""
    if task not in _LABELS:
        raise ValueError(f"unknown digits task {task!r}; expected one of {TASKS}")
    return _LABELS[task][0]


def split_indices(digits: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Stratified train / validation / test sample indices (60 / 20 / 20), fixed by `seed`."""
    index = np.arange(len(digits))
    held_out = VALIDATION_FRACTION + TEST_FRACTION
    train, rest = train_test_split(index, test_size=held_out, random_state=seed, stratify=digits)
    validation, test = train_test_split(
        rest, test_size=TEST_FRACTION / held_out, random_state=seed, stratify=digits[rest]
    )
    return {"train": np.sort(train), "validation": np.sort(validation), "test": np.sort(test)}


def _task_data(
    name: str, classes: int, x: np.ndarray, y: np.ndarray, index: dict[str, np.ndarray]
) -> TaskData:
    def take(split: str) -> Split:
        rows = index[split]
        return Split(
            x=torch.from_numpy(np.ascontiguousarray(x[rows], dtype=np.float32)),
            y=torch.from_numpy(np.ascontiguousarray(y[rows], dtype=np.int64)),
        )

    return TaskData(name, classes, take("train"), take("validation"), take("test"))


def prepare(seed: int, tasks: tuple[str, ...] = TASKS) -> SuiteData:
    """Load the bundled digits and derive every task's splits; deterministic in `seed`."""
    bunch = load_digits()
    images = bunch.data.astype(np.float64) / 16.0  # n x 64, in [0, 1]
    digits = bunch.target.astype(np.int64)  # n
    index = split_indices(digits, seed)
    plain = _task_data("plain", N_DIGITS, images, digits, index)
    out: dict[str, TaskData] = {}
    for task in tasks:
        classes, relabel = n_classes(task), _LABELS[task][1]
        out[task] = _task_data(task, classes, _INPUTS[task](images, seed), relabel(digits), index)
    return SuiteData(plain=plain, tasks=out)


def data_key(task: str, split: str, field: str) -> str:
    """Key of one tensor in ``data.safetensors``, e.g. ``rotated/validation/x``."""
    return f"{task}/{split}/{field}"


def pack_held_out(data: SuiteData) -> dict[str, torch.Tensor]:
    """The validation and test tensors of every task, keyed by :func:`data_key`, for ``data.safetensors``."""
    packed: dict[str, torch.Tensor] = {}
    for task, task_data in data.tasks.items():
        for split in ("validation", "test"):
            part = task_data.split(split)
            packed[data_key(task, split, "x")] = part.x.contiguous()
            packed[data_key(task, split, "y")] = part.y.contiguous()
    return packed
