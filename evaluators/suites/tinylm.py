"""The built-in benchmark suite ``bench://tinylm``: a tiny Llama causal LM and four sequence-task experts.

A 2-layer Llama (`ARCHITECTURE`) is pre-trained on a mixture of generated sequence tasks (see
`mergefront.evaluators.suites.tinylm_tasks`: copy, reverse, sort, add), then one expert per task is fine-tuned
from it on that task alone. Every tensor is merged (no task heads): a task token in the prompt tells the tasks
apart. The experts pull the shared weights apart, so an equal-weight task-arithmetic merge loses against them.

Files in a suite directory (see :func:`build`): ``base/`` and ``<task>/`` are Hugging Face model directories
(``config.json``, ``generation_config.json``, ``model.safetensors``, the tokenizer files) that
``AutoModelForCausalLM`` and ``AutoTokenizer`` load offline; ``data.safetensors`` holds the held-out validation and
test examples of every task; ``manifest.json`` (written last) the tasks, metrics and merge table.
Run ``python -m mergefront.evaluators.suites.tinylm OUT_DIR [--seed N]`` to build one and print its tables.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from mergefront.evaluators.merge import MergeConfig, ResidentMerger
from mergefront.evaluators.suites import cache
from mergefront.evaluators.suites.tinylm_data import (
    EVAL_DIGITS,
    HELD_OUT_SPLITS,
    BatchSampler,
    held_out,
    load_held_out,
    mixture_sampler,
    pack_held_out,
    task_sampler,
)
from mergefront.evaluators.suites.tinylm_tasks import (
    BOS,
    EOS,
    IGNORE,
    PAD,
    TASK_DESCRIPTIONS,
    TASKS,
    VOCAB,
    Examples,
    example_seed,
    save_tokenizer,
)

__all__ = [
    "TASKS",
    "VERSION",
    "TinyLMEvaluator",
    "TinyLMSuite",
    "Training",
    "build",
    "ensure_built",
    "open_suite",
    "suite_dir",
]

VERSION = 2  # 2: config.json names its architecture (same weights as 1)
SUITE = "tinylm"
MANIFEST = "manifest.json"
DATA_FILE = "data.safetensors"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32,
    "tie_word_embeddings": False,  # every tensor is its own: the merged state dict is the whole model
}
WARMUP_STEPS = 50
LOSS_MARGIN = 0.02  # a merge "loses" on a task when its accuracy is this far below the expert's
METRICS = ("accuracy", "loss")


@dataclass(frozen=True)
class Training:
    """Steps and learning rates (AdamW, `WARMUP_STEPS` warm-up steps then linear decay to 0)."""

    base_steps: int = 400
    base_lr: float = 3e-3
    expert_steps: int = 400
    expert_lr: float = 3e-3
    batch_size: int = 64


def suite_dir(cache_root: Path, seed: int = 0) -> Path:
    """Directory of the suite built with `seed` under `cache_root`."""
    return Path(cache_root) / f"{SUITE}-v{VERSION}-seed{seed}"


def model_config() -> LlamaConfig:
    """The configuration every model of the suite shares; `architectures` names the model class, which
    `mergekit-yaml` reads to know the checkpoint's tensors."""
    return LlamaConfig(
        vocab_size=len(VOCAB), bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
        architectures=["LlamaForCausalLM"], **ARCHITECTURE
    )


def _train(model: LlamaForCausalLM, batches: BatchSampler, steps: int, lr: float,
           tick: Callable[[], None]) -> LlamaForCausalLM:
    """Next-token cross-entropy on the answer tokens of `steps` batches (`tick` after each); returns `model` in
    eval mode."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS) * (1.0 - step / steps)
    )
    model.train()
    for _ in range(steps):
        ids, labels = batches()  # b x T each
        logits = model(input_ids=ids).logits[:, :-1]  # b x (T - 1) x V, predicts tokens 1..T-1
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        tick()
    return model.eval()


def _state(model: LlamaForCausalLM) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _train_models(seed: int, training: Training, tick: Callable[[], None]) -> dict[str, dict[str, torch.Tensor]]:
    """State dicts of the base (key ``"base"``) and of one expert per task, each fine-tuned from the base."""
    torch.manual_seed(seed)
    batches = mixture_sampler(seed, training.batch_size)
    model = _train(LlamaForCausalLM(model_config()), batches, training.base_steps, training.base_lr, tick)
    states = {"base": _state(model)}
    for task in TASKS:
        torch.manual_seed(example_seed(seed, "expert", task))
        model.load_state_dict(states["base"])
        _train(model, task_sampler(task, seed, training.batch_size), training.expert_steps, training.expert_lr,
               tick)
        states[task] = _state(model)
    return states


class TinyLMEvaluator:
    """Exact-match accuracy (greedy decoding) and answer-token loss of merged weights on held-out tasks.

    One `LlamaForCausalLM` and the examples stay resident on one device; :meth:`evaluate` copies the merged
    tensors into the model's parameters (about 130k numbers, so a copy costs microseconds) and runs forward
    passes only. `metrics` limits what is computed: without "accuracy" no answer is decoded (a third of the
    time). Not thread safe.
    """

    def __init__(self, model: LlamaForCausalLM, examples: Mapping[str, Examples], device: torch.device | str,
                 metrics: Sequence[str] | None = None):
        unknown = sorted(set(metrics or METRICS) - set(METRICS))
        if unknown:
            raise ValueError(f"tinylm reports {list(METRICS)}, not {unknown}")
        self.metrics = tuple(m for m in METRICS if metrics is None or m in metrics)
        if not examples:
            raise ValueError("TinyLMEvaluator needs at least one task")
        self.device = torch.device(device)
        self.model = model.eval()
        self.model.to(device=self.device)
        self._params = self.model.state_dict()
        self._examples = {t: Examples(e.prompt.to(self.device), e.answer.to(self.device)) for t, e in examples.items()}
        self.tasks: tuple[str, ...] = tuple(examples)

    @classmethod
    def from_suite(cls, suite: Path, tasks: Sequence[str], split: str, device: torch.device | str,
                   metrics: Sequence[str] | None = None) -> TinyLMEvaluator:
        """Read the base model and the `split` examples of `tasks` once; later merges touch no file."""
        if split not in HELD_OUT_SPLITS:
            raise ValueError(f"split must be one of {HELD_OUT_SPLITS}, got {split!r}")
        model = LlamaForCausalLM.from_pretrained(str(Path(suite) / "base"), dtype=torch.float32)
        return cls(model, load_held_out(Path(suite) / DATA_FILE, tasks, split), device, metrics)

    def _load(self, merged: Mapping[str, torch.Tensor]) -> None:
        missing = sorted(set(self._params) - set(merged))
        if missing:
            raise ValueError(f"merged tensors lack {missing}; got keys {sorted(merged)}")
        with torch.no_grad():
            for key, param in self._params.items():
                param.copy_(merged[key])

    def evaluate(self, merged: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
        """`{task: {"accuracy": exact match in [0, 1], "loss": mean answer-token cross-entropy}}` (the metrics
        asked for)."""
        self._load(merged)
        with torch.inference_mode():
            return {task: self._score(examples) for task, examples in self._examples.items()}

    def _score(self, examples: Examples) -> dict[str, float]:
        out: dict[str, float] = {}
        if "accuracy" in self.metrics:
            decoded = greedy_decode(self.model, examples.prompt, examples.answer.shape[1])  # n x A
            out["accuracy"] = (decoded == examples.answer).all(dim=1).double().mean().item()
        if "loss" in self.metrics:
            teacher = torch.cat([examples.prompt, examples.answer[:, :-1]], dim=1)  # n x (P + A - 1)
            logits = self.model(input_ids=teacher).logits[:, examples.prompt.shape[1] - 1 :]  # n x A x V
            out["loss"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), examples.answer.reshape(-1)).item()
        return out


def greedy_decode(model: LlamaForCausalLM, prompt: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """The `n_tokens` greedy continuations `n x n_tokens` of same-length prompts `n x P` (with a KV cache)."""
    out = model(input_ids=prompt, use_cache=True)
    tokens = [out.logits[:, -1].argmax(dim=-1, keepdim=True)]  # each n x 1
    for _ in range(n_tokens - 1):
        out = model(input_ids=tokens[-1], past_key_values=out.past_key_values, use_cache=True)
        tokens.append(out.logits[:, -1].argmax(dim=-1, keepdim=True))
    return torch.cat(tokens, dim=1)


def task_arithmetic(
    base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]], weight: float
) -> dict[str, torch.Tensor]:
    """`base + weight * sum_i (expert_i - base)` over every tensor (the reference merge of the table)."""
    merger = ResidentMerger(base, experts, list(base))
    merged = merger.merge(MergeConfig("task_arithmetic", (weight,) * len(experts)))
    return {k: v.clone() for k, v in merged.items()}


def _metric_table(states: Mapping[str, Mapping[str, torch.Tensor]], split: str, seed: int) -> dict[str, Any]:
    """Metrics of base, experts (own task) and the 1/N and sum merges on every task."""
    examples = {task: held_out(seed, task, split) for task in TASKS}
    evaluator = TinyLMEvaluator(LlamaForCausalLM(model_config()), examples, "cpu")
    experts = [states[t] for t in TASKS]
    return {
        "base": evaluator.evaluate(states["base"]),
        "expert": {t: evaluator.evaluate(states[t])[t] for t in TASKS},
        "merge_equal": evaluator.evaluate(task_arithmetic(states["base"], experts, 1.0 / len(experts))),
        "merge_sum": evaluator.evaluate(task_arithmetic(states["base"], experts, 1.0)),
    }


def format_table(table: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """Rows = tasks; accuracy then loss of the base, the expert, and the 1/N and sum task-arithmetic merges."""
    columns = [("base", "base"), ("expert", "expert"), ("merge_equal", "merge 1/N"), ("merge_sum", "merge sum")]
    header = "".join(f"{title:>12}" for _, title in columns)
    lines = [f"{'task':<10}{header}   |{header}", f"{'':<10}{'accuracy':>48}   |{'loss (answer tokens)':>48}"]
    for task, expert in table["expert"].items():
        cells = []
        for key, _ in columns:
            value = table[key][task]["accuracy"]
            lost = key.startswith("merge") and value < expert["accuracy"] - LOSS_MARGIN
            cells.append(f"{value:>11.3f}{'*' if lost else ' '}")
        losses = "".join(f"{table[key][task]['loss']:>11.3f} " for key, _ in columns)
        lines.append(f"{task:<10}{''.join(cells)}   |{losses}".rstrip())
    lines.append(f"* merge accuracy is more than {LOSS_MARGIN * 100:.0f} points below the task's expert")
    return "\n".join(lines)


def _manifest(seed: int, training: Training, tables: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "suite": SUITE,
        "version": VERSION,
        "seed": seed,
        "base": "base",
        "tasks": {
            t: {"dir": t, "description": TASK_DESCRIPTIONS[t], "n_digits": EVAL_DIGITS[t]} for t in TASKS
        },
        "metrics": list(METRICS),
        "data": DATA_FILE,
        "splits": {s: {t: held_out(seed, t, s).n for t in TASKS} for s in HELD_OUT_SPLITS},
        "vocab": list(VOCAB),
        "architecture": {"model_type": "llama", "vocab_size": len(VOCAB), **ARCHITECTURE},
        "training": {
            **asdict(training),
            "base_data": "mixture of all tasks, input lengths 1..n_digits",
            "expert_data": "own task, input length n_digits",
            "optimizer": f"adamw, no weight decay, {WARMUP_STEPS} warm-up steps, linear decay",
        },
        "merged": "all tensors",
        "metrics_split": "validation",
        **{split: dict(table) for split, table in tables.items()},
    }


def _save_model(state: Mapping[str, torch.Tensor], out_dir: Path) -> None:
    """A Hugging Face model directory: config, generation config, weights and tokenizer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model_config().save_pretrained(str(out_dir))
    GenerationConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, do_sample=False).save_pretrained(
        str(out_dir)
    )
    # one metadata key only: safetensors writes metadata in hash order, breaking byte identity
    save_file(dict(state), str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    save_tokenizer(out_dir)


@contextmanager
def _deterministic_torch() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state untouched
            yield
    finally:
        torch.set_num_threads(threads)


def build(out_dir: Path, seed: int = 0, *, verbose: bool = True, training: Training | None = None) -> None:
    """Train base and experts and write the suite into `out_dir`; the same seed gives bit-identical weights.

    ``manifest.json`` is written last, so its presence means the suite is complete. `training` other than the
    default (shorter runs, for tests) gives a different suite: only the default one is cached by `ensure_built`.
    """
    training = training or Training()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = training.base_steps + len(TASKS) * training.expert_steps
    with _deterministic_torch():
        with cache.build_progress(SUITE, steps, verbose=verbose) as tick:
            states = _train_models(seed, training, tick)
        if verbose:
            print("scoring the base, the experts and two merges on the held-out sets", file=sys.stderr, flush=True)
        tables = {split: _metric_table(states, split, seed) for split in HELD_OUT_SPLITS}
    for name, state in states.items():
        _save_model(state, out_dir / name)
    sets = {(t, s): held_out(seed, t, s) for t in TASKS for s in HELD_OUT_SPLITS}
    save_file(pack_held_out(sets), str(out_dir / DATA_FILE), metadata={"format": "pt"})
    (out_dir / MANIFEST).write_text(json.dumps(_manifest(seed, training, tables), indent=2) + "\n")
    if verbose:
        print(f"bench://{SUITE} v{VERSION} seed={seed} built in {time.perf_counter() - started:.1f}s")
        print(format_table(tables["validation"]))


def ensure_built(cache_root: Path, seed: int = 0, *, verbose: bool = True) -> Path:
    """Return the suite directory for `seed`, building it first (once, across processes) if it is not cached."""
    return cache.ensure_built(suite_dir(cache_root, seed), lambda folder: build(folder, seed, verbose=verbose))



class TinyLMSuite:
    """The `mergefront.evaluators.suites.Suite` surface of one built tinylm suite."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.manifest: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())

    def model_path(self, name: str) -> Path:
        """The Hugging Face directory of ``"base"`` or of the expert of task `name`."""
        if name != "base" and name not in self.manifest["tasks"]:
            raise ValueError(f"no model {name!r} in suite {self.path}; expected 'base' or one of {list(TASKS)}")
        return self.path / (self.manifest["base"] if name == "base" else self.manifest["tasks"][name]["dir"])

    def load_model(self, name: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.model_path(name) / WEIGHTS_FILE))

    def merged_keys(self, base: Mapping[str, torch.Tensor]) -> list[str]:
        return list(base)

    def evaluator(self, tasks: Sequence[str], split: str, device: torch.device,
                  metrics: Sequence[str] | None = None) -> TinyLMEvaluator:
        return TinyLMEvaluator.from_suite(self.path, tasks, split, device, metrics)


def open_suite(path: Path) -> TinyLMSuite:
    return TinyLMSuite(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the suite into a directory and print its tables."""
    return cache.build_command("tinylm", lambda out, seed: build(out, seed, verbose=True), argv)


if __name__ == "__main__":
    raise SystemExit(main())
