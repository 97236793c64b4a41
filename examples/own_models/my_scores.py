"""A score of your own, for an objective `evaluator: my_scores:answer_accuracy` (see README).

mergefront calls it on a worker as `answer_accuracy(model, tokenizer, settings)`, with the merged model already
on the worker's device, and stores the number it returns under the objective's name. Import paths are resolved with
the spec file's folder and the current directory on the path, so this file next to the spec is found.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel


class Settings(BaseModel):
    data: str  # a JSONL file with prompt and answer columns
    limit: int = 32


def answer_accuracy(model: torch.nn.Module, tokenizer: Any, settings: dict[str, Any]) -> float:
    """Fraction of answer tokens the model predicts right when it is shown the previous ones (teacher forcing)."""
    rows = [json.loads(line) for line in Path(settings["data"]).read_text().splitlines()[: settings["limit"]]]
    hits = total = 0
    for row in rows:
        prompt = tokenizer(row["prompt"])["input_ids"]
        answer = tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + answer], device=model.device)
        predicted = model(input_ids=ids).logits[0, len(prompt) - 1:-1].argmax(-1)
        hits += int((predicted == ids[0, len(prompt):]).sum())
        total += len(answer)
    return hits / total


answer_accuracy.settings_model = Settings  # type: ignore[attr-defined]  # settings checked when the job is submitted
