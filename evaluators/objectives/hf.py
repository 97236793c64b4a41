"""Built-in evaluators of Hugging Face models on the user's own data (JSONL / JSON / CSV / Parquet).

Each reads its file once per worker, tokenizes it once, and keeps the batches on the worker's device; scoring a
candidate is then forward passes only.

- `CausalLMObjective`: mean next-token cross-entropy (``loss``) and ``perplexity`` on a text column, over every
  predicted token (token-weighted). With ``prompt_column``, only the text's tokens are scored, given the prompt.
- `GenerationObjective`: greedy answers to a prompt column (left-padded batches, at most ``max_new_tokens``,
  stopping at end of sequence); ``exact_match`` is the fraction equal to the answer column (whitespace-trimmed).
- `ClassificationObjective`: ``accuracy`` of a sequence-classification model's arg-max label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from mergefront.objectives import CausalLMSettings, ClassificationSettings, GenerationSettings, read_records

T = TypeVar("T")


def _records(settings: Any) -> list[dict[str, Any]]:
    records = read_records(Path(settings.data), settings.limit)
    if not records:
        raise ValueError(f"{settings.data}: no examples")
    return records


def _need_tokenizer(tokenizer: Any, evaluator: str) -> Any:
    if tokenizer is None:
        raise ValueError(f"{evaluator} needs a tokenizer, and the base model has none")
    return tokenizer


def _padded(chunk: list[list[int]], pad: int, device: torch.device, *, left: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask (`b x T`) of sequences padded to the longest (left: ending together)."""
    width = max(len(seq) for seq in chunk)
    ids = torch.full((len(chunk), width), pad, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for i, seq in enumerate(chunk):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[i, cols] = torch.tensor(seq, dtype=torch.long)
        mask[i, cols] = 1
    return ids.to(device), mask.to(device)


def _batches(items: list[T], size: int) -> list[list[T]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def _pad_id(tokenizer: Any) -> int:
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


class CausalLMObjective:
    def __init__(self, settings: CausalLMSettings, *, tokenizer: Any, device: torch.device) -> None:
        tokenizer = _need_tokenizer(tokenizer, "causal_lm")
        sequences: list[tuple[list[int], int]] = []  # token ids, how many leading tokens are not scored
        for row in _records(settings):
            text = str(row[settings.text_column])
            if settings.prompt_column is None:
                ids = tokenizer(text, add_special_tokens=True)["input_ids"]
                sequences.append((ids[: settings.max_length], 1))
            else:
                prompt = tokenizer(str(row[settings.prompt_column]), add_special_tokens=True)["input_ids"]
                answer = tokenizer(text, add_special_tokens=False)["input_ids"]
                ids = (prompt + answer)[-settings.max_length:]  # keep the scored end when too long
                sequences.append((ids, max(1, len(ids) - len(answer))))
        pad = _pad_id(tokenizer)
        self.batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for chunk in _batches(sequences, settings.batch_size):
            ids, mask = _padded([seq for seq, _ in chunk], pad, device)
            labels = torch.full(ids.shape, -100, dtype=torch.long)
            for i, (seq, skip) in enumerate(chunk):
                labels[i, skip: len(seq)] = torch.tensor(seq[skip:], dtype=torch.long)
            self.batches.append((ids, mask, labels.to(device)))
        self.n_tokens = sum(int((lab != -100).sum()) for _, _, lab in self.batches)
        if self.n_tokens == 0:
            raise ValueError(f"{settings.data}: no token to score (every text is a single token?)")

    def __call__(self, model: torch.nn.Module, tokenizer: Any = None) -> dict[str, float]:
        total = 0.0
        for ids, mask, labels in self.batches:
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # b x (T-1) x V predicts 1..T-1
            total += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                           ignore_index=-100, reduction="sum"))
        loss = total / self.n_tokens
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}


class GenerationObjective:
    def __init__(self, settings: GenerationSettings, *, tokenizer: Any, device: torch.device) -> None:
        tokenizer = _need_tokenizer(tokenizer, "generation")
        self.settings = settings
        self.pad = _pad_id(tokenizer)
        self.eos = tokenizer.eos_token_id
        records = _records(settings)
        self.answers = [self._norm(str(r[settings.answer_column])) for r in records]
        prompts = [tokenizer(str(r[settings.prompt_column]), add_special_tokens=True)["input_ids"] for r in records]
        # left padding: every prompt ends where generation starts
        self.batches = [_padded(chunk, self.pad, device, left=True) for chunk in _batches(prompts, settings.batch_size)]

    def _norm(self, text: str) -> str:
        text = " ".join(text.split())
        return text if self.settings.case_sensitive else text.lower()

    def generate(self, model: Any, tokenizer: Any) -> list[str]:
        """The model's greedy answers, decoded without special tokens."""
        out: list[str] = []
        for ids, mask in self.batches:
            generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=self.settings.max_new_tokens,
                                       do_sample=False, pad_token_id=self.pad, eos_token_id=self.eos)
            out.extend(tokenizer.batch_decode(generated[:, ids.shape[1]:], skip_special_tokens=True))
        return out

    def __call__(self, model: torch.nn.Module, tokenizer: Any) -> dict[str, float]:
        answers = self.generate(model, tokenizer)
        hits = sum(self._norm(a) == ref for a, ref in zip(answers, self.answers, strict=True))
        return {"exact_match": hits / len(self.answers)}


class ClassificationObjective:
    def __init__(self, settings: ClassificationSettings, *, tokenizer: Any, device: torch.device) -> None:
        tokenizer = _need_tokenizer(tokenizer, "classification")
        self.settings = settings
        records = _records(settings)
        self.raw_labels = [r[settings.label_column] for r in records]
        texts = [tokenizer(str(r[settings.text_column]), add_special_tokens=True)["input_ids"][: settings.max_length]
                 for r in records]
        pad = _pad_id(tokenizer)
        self.batches = [_padded(chunk, pad, device) for chunk in _batches(texts, settings.batch_size)]
        self.labels: torch.Tensor | None = None

    def label_ids(self, model: Any) -> torch.Tensor:
        """Class indices of the labels: by `labels`, as integers, or through the model's config.label2id."""
        names: Sequence[str] | None = self.settings.labels
        label2id = {str(k): int(v) for k, v in (getattr(model.config, "label2id", None) or {}).items()}
        out = []
        for raw in self.raw_labels:
            text = str(raw)
            if names is not None:
                if text not in names:
                    raise ValueError(f"label {text!r} is not among the settings' labels {list(names)}")
                out.append(list(names).index(text))
            elif isinstance(raw, int) or text.lstrip("-").isdigit():
                out.append(int(text))
            elif text in label2id:
                out.append(label2id[text])
            else:
                raise ValueError(f"label {text!r} is neither an integer nor in the model's label2id {label2id}; "
                                 "give the label names as settings.labels")
        return torch.tensor(out)

    def __call__(self, model: torch.nn.Module, tokenizer: Any = None) -> dict[str, float]:
        if self.labels is None:
            self.labels = self.label_ids(model)
        predicted = [model(input_ids=ids, attention_mask=mask).logits.argmax(-1).cpu() for ids, mask in self.batches]
        return {"accuracy": float((torch.cat(predicted) == self.labels).float().mean())}
