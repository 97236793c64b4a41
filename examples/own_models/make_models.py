"""Make the walk-through's "own models": a base and two fine-tuned experts as local Hugging Face folders, and
one JSONL file of held-out examples per expert's task.

They come from the test suite's tiny Llama (`bench://tinylm`, trained here on first use, about a minute on a CPU):
the base is pre-trained on digit-sequence tasks, one expert is fine-tuned to copy a digit string, the other to
reverse it. Run from the repository root:

    .venv/bin/python examples/own_models/make_models.py [OUT_DIR]

It writes OUT_DIR/models/{base,copy-expert,reverse-expert}/ and OUT_DIR/data/{copy,reverse}.jsonl (OUT_DIR defaults
to this folder), which is what `job.yaml` next to this file refers to.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from mergefront.evaluators.suites.tinylm_export import export_models
from mergefront.service.settings import Settings


def main(out_dir: Path) -> None:
    models, data = out_dir / "models", out_dir / "data"
    paths = export_models(models, ["copy", "reverse"], Settings().resolved_cache_dir, n_examples=64)
    data.mkdir(parents=True, exist_ok=True)
    for task in ("copy", "reverse"):
        shutil.move(paths[task], data / f"{task}.jsonl")
    for folder in sorted(models.iterdir()):
        print(f"{folder}/: {', '.join(sorted(p.name for p in folder.iterdir()))}")
    for file in sorted(data.iterdir()):
        first = file.read_text().splitlines()[0]
        print(f"{file}: 64 examples like {first}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
