"""Make "your own models" out of ``bench://tinylm``: plain Hugging Face checkpoint folders and JSONL data files.

The walk-through in the README ("Search merges of your own models") and the tests start from what a user brings:
a base and fine-tuned experts as local folders, and held-out examples as JSONL. `export_models` copies the suite's
base and the chosen experts to ``OUT/base``, ``OUT/<task>-expert`` and writes ``OUT/<task>.jsonl`` with one record
per held-out example: ``{"prompt": "[copy] 3 1 4 1 5 9 =", "answer": "3 1 4 1 5 9"}`` (the tokenizer adds the
beginning-of-sequence token to the prompt).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from mergefront.evaluators.suites import ensure_suite
from mergefront.evaluators.suites.tinylm_data import HELD_OUT_SIZE, load_held_out
from mergefront.evaluators.suites.tinylm_tasks import TASKS, to_text


def export_models(out_dir: Path, tasks: Sequence[str], cache_root: Path, *, split: str = "validation",
                  n_examples: int = HELD_OUT_SIZE) -> dict[str, Path]:
    """Copy the base and the experts of `tasks` into `out_dir`, write one JSONL file per task; return the paths."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown tinylm tasks {unknown}; known: {list(TASKS)}")
    suite = ensure_suite("tinylm", cache_root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"base": out_dir / "base"}
    shutil.copytree(suite / "base", paths["base"], dirs_exist_ok=True)
    examples = load_held_out(suite / "data.safetensors", tasks, split)
    for task in tasks:
        paths[f"{task}-expert"] = out_dir / f"{task}-expert"
        shutil.copytree(suite / task, paths[f"{task}-expert"], dirs_exist_ok=True)
        data = out_dir / f"{task}.jsonl"
        ex = examples[task]
        with data.open("w") as handle:
            for prompt, answer in zip(ex.prompt[:n_examples], ex.answer[:n_examples], strict=True):
                record = {"prompt": to_text(prompt[1:]), "answer": to_text(answer[:-1])}  # no <bos>, no <eos>
                handle.write(json.dumps(record) + "\n")
        paths[task] = data
    return paths
