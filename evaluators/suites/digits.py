"""The built-in benchmark suite ``bench://digits``.

A small MLP is pre-trained on plain digit identity (the shared base); one expert per task is then fine-tuned
from that base, trunk and a task head together. Only the trunk (``trunk.*``) is merged; each task keeps its
expert's head (``head.*``). The tasks pull the trunk in different directions, so an equal-weight
task-arithmetic merge loses accuracy against the experts: that is the trade-off the optimizers search.

Files in a suite directory (see :func:`build`): ``manifest.json``, ``base.safetensors``,
``<task>.safetensors`` per expert and ``data.safetensors`` (validation and test split of every task).
Run ``python -m mergefront.evaluators.suites.digits OUT_DIR [--seed N]`` to build one and print the accuracy table.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.func import functional_call

from mergefront.evaluators.merge import MergeConfig, ResidentMerger
from mergefront.evaluators.suites import cache
from mergefront.evaluators.suites.digits_data import (
    N_DIGITS,
    N_PIXELS,
    SPLITS,
    TASK_DESCRIPTIONS,
    TASKS,
    Split,
    SuiteData,
    data_key,
    pack_held_out,
    prepare,
)

__all__ = [
    "TASKS",
    "VERSION",
    "DigitsEvaluator",
    "DigitsNet",
    "build",
    "ensure_built",
    "load_model",
    "suite_dir",
    "task_arithmetic",
]

VERSION = 1
SUITE = "digits"
MANIFEST = "manifest.json"
BASE_FILE = "base.safetensors"
DATA_FILE = "data.safetensors"
MERGED_PREFIX = "trunk."
HIDDEN_DIMS: tuple[int, ...] = (128, 128)
TRUNK_OUT = 64
BASE_STEPS, BASE_LR = 200, 1e-2  # full-batch Adam on plain digit identity
EXPERT_STEPS, EXPERT_LR = 200, 3e-3  # full-batch Adam, every parameter, starting from the base
LOSS_MARGIN = 0.02  # a merge "loses" on a task when it is this far below the expert


class DigitsNet(nn.Module):
    """MLP trunk `n x 64 -> n x 64` (Linear + ReLU blocks) and a linear head `n x 64 -> n x n_classes`."""

    def __init__(self, n_classes: int, hidden_dims: Sequence[int] = HIDDEN_DIMS, trunk_out: int = TRUNK_OUT):
        super().__init__()
        dims = [N_PIXELS, *hidden_dims, trunk_out]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(d_in, d_out), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(trunk_out, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def suite_dir(cache_root: Path, seed: int = 0) -> Path:
    """Directory of the suite built with `seed` under `cache_root`."""
    return Path(cache_root) / f"{SUITE}-v{VERSION}-seed{seed}"


def _fit(model: DigitsNet, data: Split, steps: int, lr: float, tick: Callable[[], None]) -> DigitsNet:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(data.x), data.y).backward()
        optimizer.step()
        tick()
    return model.eval()


def _task_seed(seed: int, task: str) -> int:
    # Independent of the task's position, so editing TASKS leaves the other experts unchanged.
    return seed * 1_000_003 + zlib.crc32(task.encode())


def _train_models(data: SuiteData, seed: int, tick: Callable[[], None]) -> dict[str, DigitsNet]:
    """Base (key ``"base"``) and one expert per task, each fine-tuned from the base."""
    torch.manual_seed(seed)
    base = _fit(DigitsNet(N_DIGITS), data.plain.train, BASE_STEPS, BASE_LR, tick)
    models = {"base": base}
    for task, task_data in data.tasks.items():
        torch.manual_seed(_task_seed(seed, task))
        expert = DigitsNet(task_data.n_classes)
        expert.trunk.load_state_dict(base.trunk.state_dict())
        if task_data.n_classes == N_DIGITS:  # same label space as the base: keep its head as the start
            expert.head.load_state_dict(base.head.state_dict())
        models[task] = _fit(expert.train(), task_data.train, EXPERT_STEPS, EXPERT_LR, tick)
    return models


def _state(model: DigitsNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _trunk_of(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(MERGED_PREFIX)}


def task_arithmetic(
    base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]], weight: float
) -> dict[str, torch.Tensor]:
    """`base + weight * sum_i (expert_i - base)` over the trunk tensors (the reference merge of the table)."""
    merger = ResidentMerger(base, experts, list(_trunk_of(base)))
    merged = merger.merge(MergeConfig("task_arithmetic", (weight,) * len(experts)))
    return {k: v.clone() for k, v in merged.items()}


class DigitsEvaluator:
    """Held-out accuracy of a trunk on each task, through that task's own expert head.

    Data and heads are loaded onto `device` once; :meth:`evaluate` only runs forward passes. Not thread safe
    (share nothing between threads but the suite files).
    """

    def __init__(
        self, suite: Path, tasks: Sequence[str], split: str = "validation", device: torch.device | str = "cpu"
    ):
        if split not in SPLITS[1:]:
            raise ValueError(f"split must be one of {SPLITS[1:]}, got {split!r}")
        data = load_file(Path(suite) / DATA_FILE)
        heads = {task: load_model(suite, task) for task in tasks}
        held_out = {
            task: Split(data[data_key(task, split, "x")], data[data_key(task, split, "y")]) for task in tasks
        }
        self._setup(heads, held_out, torch.device(device))

    @classmethod
    def _in_memory(
        cls, states: Mapping[str, Mapping[str, torch.Tensor]], held_out: Mapping[str, Split]
    ) -> DigitsEvaluator:
        evaluator = cls.__new__(cls)
        evaluator._setup(states, held_out, torch.device("cpu"))
        return evaluator

    def _setup(
        self,
        states: Mapping[str, Mapping[str, torch.Tensor]],
        held_out: Mapping[str, Split],
        device: torch.device,
    ) -> None:
        if not held_out:
            raise ValueError("DigitsEvaluator needs at least one task")
        self.device = device
        self.tasks: tuple[str, ...] = tuple(held_out)
        with torch.device("meta"):  # structure only: parameters come from the caller, and no RNG is drawn
            self._trunk = DigitsNet(N_DIGITS).trunk
        self._trunk_keys = tuple(MERGED_PREFIX + k for k in self._trunk.state_dict())
        self._data = {t: Split(s.x.to(device), s.y.to(device)) for t, s in held_out.items()}
        self._heads = {
            t: (states[t]["head.weight"].to(device), states[t]["head.bias"].to(device)) for t in held_out
        }

    def _params(self, trunk: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [k for k in self._trunk_keys if k not in trunk]
        if missing:
            raise ValueError(f"trunk is missing tensors {missing}; got keys {sorted(trunk)}")
        cut = len(MERGED_PREFIX)
        return {k[cut:]: trunk[k].to(device=self.device, dtype=torch.float32) for k in self._trunk_keys}

    def evaluate(self, trunk: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """`{task: accuracy in [0, 1]}` of the ``trunk.*`` tensors in `trunk` (other keys are ignored)."""
        params = self._params(trunk)
        accuracy: dict[str, float] = {}
        with torch.inference_mode():
            for task, split in self._data.items():
                features = functional_call(self._trunk, params, (split.x,))  # n x 64
                logits = F.linear(features, *self._heads[task])  # n x n_classes
                accuracy[task] = (logits.argmax(dim=1) == split.y).double().mean().item()
        return accuracy


def load_model(suite: Path, name: str) -> dict[str, torch.Tensor]:
    """State dict (``trunk.*`` and ``head.*``) of ``"base"`` or of the expert of task `name`."""
    manifest = json.loads((Path(suite) / MANIFEST).read_text())
    if name == "base":
        return load_file(Path(suite) / manifest["base"])
    if name not in manifest["tasks"]:
        raise ValueError(
            f"no model {name!r} in suite {suite}; expected 'base' or one of {sorted(manifest['tasks'])}"
        )
    return load_file(Path(suite) / manifest["tasks"][name]["file"])


def _accuracy_table(
    states: Mapping[str, Mapping[str, torch.Tensor]], data: SuiteData, split: str
) -> dict[str, dict[str, float]]:
    evaluator = DigitsEvaluator._in_memory(states, {t: d.split(split) for t, d in data.tasks.items()})
    experts = [states[t] for t in data.tasks]
    return {
        "base": evaluator.evaluate(states["base"]),
        "expert": {t: evaluator.evaluate(states[t])[t] for t in data.tasks},
        "merge_equal": evaluator.evaluate(task_arithmetic(states["base"], experts, 1.0 / len(experts))),
        "merge_sum": evaluator.evaluate(task_arithmetic(states["base"], experts, 1.0)),
    }


def format_table(table: Mapping[str, Mapping[str, float]]) -> str:
    """Rows = tasks; columns = base trunk, expert, equal-weight (1/N) and sum (1.0) task arithmetic."""
    columns = [
        ("base", "base"),
        ("expert", "expert"),
        ("merge_equal", "merge 1/N"),
        ("merge_sum", "merge sum"),
    ]
    lines = [f"{'task':<10}" + "".join(f"{title:>12}" for _, title in columns)]
    for task, expert in table["expert"].items():
        cells = []
        for key, _ in columns:
            value = table[key][task]
            mark = "*" if key.startswith("merge") and value < expert - LOSS_MARGIN else " "
            cells.append(f"{value:>11.3f}{mark}")
        lines.append(f"{task:<10}" + "".join(cells))
    lines.append(f"* merge loses more than {LOSS_MARGIN * 100:.0f} points against the task's expert")
    return "\n".join(lines)


def _manifest(
    data: SuiteData, seed: int, validation: dict[str, dict[str, float]], test: dict[str, dict[str, float]]
) -> dict[str, Any]:
    return {
        "suite": SUITE,
        "version": VERSION,
        "seed": seed,
        "tasks": {
            t: {"n_classes": d.n_classes, "file": f"{t}.safetensors", "description": TASK_DESCRIPTIONS[t]}
            for t, d in data.tasks.items()
        },
        "base": BASE_FILE,
        "base_n_classes": N_DIGITS,
        "data": DATA_FILE,
        "splits": {s: int(data.plain.split(s).y.numel()) for s in SPLITS},
        "architecture": {
            "input_dim": N_PIXELS,
            "hidden_dims": list(HIDDEN_DIMS),
            "trunk_out": TRUNK_OUT,
            "activation": "relu",
            "trunk_linear_indices": [2 * i for i in range(len(HIDDEN_DIMS) + 1)],
        },
        "merged_prefix": MERGED_PREFIX,
        "training": {
            "base_steps": BASE_STEPS,
            "base_lr": BASE_LR,
            "expert_steps": EXPERT_STEPS,
            "expert_lr": EXPERT_LR,
            "optimizer": "adam, full batch",
        },
        "accuracy_split": "validation",
        **_accuracies(validation),
        "test": _accuracies(test),
    }


def _accuracies(table: Mapping[str, dict[str, float]]) -> dict[str, Any]:
    return {
        "expert_accuracy": table["expert"],
        "base_accuracy": table["base"],
        "merge_accuracy": {"equal_weight": table["merge_equal"], "sum": table["merge_sum"]},
    }


@contextmanager
def _deterministic_torch() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state untouched
            yield
    finally:
        torch.set_num_threads(threads)


def build(out_dir: Path, seed: int = 0, *, verbose: bool = True) -> None:
    """Train base and experts and write the suite into `out_dir`; the same seed gives bit-identical files.

    ``manifest.json`` is written last, so its presence means the suite is complete.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _deterministic_torch():
        data = prepare(seed, TASKS)
        with cache.build_progress("digits", BASE_STEPS + len(TASKS) * EXPERT_STEPS, verbose=verbose) as tick:
            states = {name: _state(model) for name, model in _train_models(data, seed, tick).items()}
        validation = _accuracy_table(states, data, "validation")
        test = _accuracy_table(states, data, "test")
    meta = {"format": "pt"}  # one key only: safetensors writes metadata in hash order, breaking byte identity
    save_file(states["base"], str(out_dir / BASE_FILE), metadata=meta)
    for task in TASKS:
        save_file(states[task], str(out_dir / f"{task}.safetensors"), metadata=meta)
    save_file(pack_held_out(data), str(out_dir / DATA_FILE), metadata=meta)
    manifest = _manifest(data, seed, validation, test)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if verbose:
        print(f"bench://digits v{VERSION} seed={seed} built in {time.perf_counter() - started:.1f}s")
        print(format_table(validation))


def ensure_built(cache_root: Path, seed: int = 0, *, verbose: bool = True) -> Path:
    """Return the suite directory for `seed`, building it first (once, across processes) if it is not cached."""
    return cache.ensure_built(suite_dir(cache_root, seed), lambda folder: build(folder, seed, verbose=verbose))





class DigitsSuite:
    """The `mergefront.evaluators.suites.Suite` surface of one built digits suite."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load_model(self, name: str) -> dict[str, torch.Tensor]:
        return load_model(self.path, name)

    def model_path(self, name: str) -> Path:
        return self.path / (BASE_FILE if name == "base" else f"{name}.safetensors")

    def merged_keys(self, base: Mapping[str, torch.Tensor]) -> list[str]:
        return list(_trunk_of(base))

    def evaluator(self, tasks: Sequence[str], split: str, device: torch.device,
                  metrics: Sequence[str] | None = None) -> _AccuracyEvaluator:
        return _AccuracyEvaluator(DigitsEvaluator(self.path, tasks, split=split, device=device))


class _AccuracyEvaluator:
    def __init__(self, inner: DigitsEvaluator) -> None:
        self.inner = inner

    def evaluate(self, merged: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
        return {task: {"accuracy": acc} for task, acc in self.inner.evaluate(merged).items()}


def open_suite(path: Path) -> DigitsSuite:
    return DigitsSuite(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the suite into a directory and print its tables."""
    return cache.build_command("digits", lambda out, seed: build(out, seed, verbose=True), argv)


if __name__ == "__main__":
    raise SystemExit(main())
