"""Training batches and held-out sets of ``bench://tinylm``, all generated from a seed.

The base is pre-trained on a mixture of every task at every input length from 1 to the task's evaluation length;
each expert is fine-tuned on its own task at the evaluation length. Held-out sets (validation, test) use the
evaluation length, and are drawn from streams of their own, so they do not depend on how long anything trained.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from mergefront.evaluators.suites.tinylm_tasks import IGNORE, PAD, TASKS, Examples, example_seed, sample

__all__ = [
    "EVAL_DIGITS",
    "HELD_OUT_SPLITS",
    "Batch",
    "BatchSampler",
    "held_out",
    "load_held_out",
    "mixture_sampler",
    "pack_held_out",
    "task_sampler",
]

#: input length (digits per number) of each task at evaluation and expert fine-tuning
EVAL_DIGITS: dict[str, int] = {"copy": 6, "reverse": 6, "sort": 6, "add": 3}
HELD_OUT_SPLITS: tuple[str, ...] = ("validation", "test")
HELD_OUT_SIZE = 256  # examples per task and split

Batch = tuple[torch.Tensor, torch.Tensor]  # token ids `b x T`, labels `b x T` (IGNORE off the answers)
BatchSampler = Callable[[], Batch]


def _collate(groups: Sequence[Examples]) -> Batch:
    """Right-pad full sequences to one length; only answer tokens carry labels."""
    ids, labels = [], []
    for examples in groups:
        full = torch.cat([examples.prompt, examples.answer], dim=1)  # n x (P + A)
        label = full.clone()
        label[:, : examples.prompt.shape[1]] = IGNORE
        ids.append(full)
        labels.append(label)
    length = max(t.shape[1] for t in ids)
    return (
        torch.cat([F.pad(t, (0, length - t.shape[1]), value=PAD) for t in ids]),
        torch.cat([F.pad(t, (0, length - t.shape[1]), value=IGNORE) for t in labels]),
    )


def mixture_sampler(seed: int, batch_size: int) -> BatchSampler:
    """Pre-training batches: an equal share of every task, each share at a random length up to the task's."""
    generator = torch.Generator().manual_seed(example_seed(seed, "train", "mixture"))
    share = batch_size // len(TASKS)

    def draw() -> Batch:
        groups = []
        for task in TASKS:
            n_digits = int(torch.randint(1, EVAL_DIGITS[task] + 1, (1,), generator=generator))
            groups.append(sample(task, share, n_digits, generator))
        return _collate(groups)

    return draw


def task_sampler(task: str, seed: int, batch_size: int) -> BatchSampler:
    """Fine-tuning batches of one task at its evaluation length."""
    generator = torch.Generator().manual_seed(example_seed(seed, "train", task))
    return lambda: _collate([sample(task, batch_size, EVAL_DIGITS[task], generator)])


def held_out(seed: int, task: str, split: str) -> Examples:
    """The `split` set of `task` (`HELD_OUT_SIZE` examples at the evaluation length)."""
    if split not in HELD_OUT_SPLITS:
        raise ValueError(f"split must be one of {HELD_OUT_SPLITS}, got {split!r}")
    generator = torch.Generator().manual_seed(example_seed(seed, split, task))
    return sample(task, HELD_OUT_SIZE, EVAL_DIGITS[task], generator)


def _key(task: str, split: str, part: str) -> str:
    return f"{task}/{split}/{part}"


def pack_held_out(sets: Mapping[tuple[str, str], Examples]) -> dict[str, torch.Tensor]:
    """`{(task, split): examples}` as flat tensors for one safetensors file."""
    packed: dict[str, torch.Tensor] = {}
    for (task, split), examples in sets.items():
        packed[_key(task, split, "prompt")] = examples.prompt.contiguous()
        packed[_key(task, split, "answer")] = examples.answer.contiguous()
    return packed


def load_held_out(path: Path, tasks: Sequence[str], split: str) -> dict[str, Examples]:
    """The `split` examples of `tasks` from a file written with :func:`pack_held_out`."""
    data = load_file(str(path))
    missing = [t for t in tasks if _key(t, split, "prompt") not in data]
    if missing:
        raise ValueError(f"no {split!r} examples of tasks {missing} in {path}")
    return {t: Examples(data[_key(t, split, "prompt")], data[_key(t, split, "answer")]) for t in tasks}
