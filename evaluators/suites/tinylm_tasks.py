"""The vocabulary, tokenizer and generated sequence tasks of ``bench://tinylm``.

Every example is one token sequence ``<bos> [task] x... = y... <eos>``: a prompt that ends with ``=`` and an
answer of known length followed by ``<eos>``. Inputs are random digit strings; at evaluation time every task has
a fixed input length, so all prompts (and all answers) of a task have the same length and no padding is needed.

- ``copy``: the digits as they are; ``reverse``: in reverse order; ``sort``: in ascending order;
- ``add``: ``a + b`` of two numbers written least-significant digit first, answer likewise (one digit longer).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "BOS",
    "EOS",
    "IGNORE",
    "PAD",
    "TASKS",
    "TASK_DESCRIPTIONS",
    "VOCAB",
    "Examples",
    "answer_length",
    "example_seed",
    "sample",
    "save_tokenizer",
    "to_text",
]

TASKS: tuple[str, ...] = ("copy", "reverse", "sort", "add")
TASK_DESCRIPTIONS: dict[str, str] = {
    "copy": "repeat the input digits",
    "reverse": "the input digits in reverse order",
    "sort": "the input digits in ascending order",
    "add": "sum of two numbers, digits least-significant first (one digit longer than the inputs)",
}
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
VOCAB: tuple[str, ...] = (*SPECIAL_TOKENS, *(f"[{t}]" for t in TASKS), *"0123456789", "+", "=")
TOKEN_ID: dict[str, int] = {token: i for i, token in enumerate(VOCAB)}
PAD, BOS, EOS = TOKEN_ID["<pad>"], TOKEN_ID["<bos>"], TOKEN_ID["<eos>"]
ZERO, PLUS, EQUALS = TOKEN_ID["0"], TOKEN_ID["+"], TOKEN_ID["="]
IGNORE = -100  # label of positions that carry no loss (prompt and padding)


@dataclass(frozen=True)
class Examples:
    """`n` examples of one task and one input length: prompts `n x P` and answers `n x A` (token ids).

    Each answer ends with ``<eos>``; the full sequence is ``cat(prompt, answer)``.
    """

    prompt: torch.Tensor
    answer: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.prompt.shape[0])


def answer_length(task: str, n_digits: int) -> int:
    """Answer tokens (``<eos>`` included) of `task` on inputs of `n_digits` digits."""
    return n_digits + (2 if task == "add" else 1)


def example_seed(seed: int, *names: str) -> int:
    """A seed for one stream of examples, independent of the order in which streams are drawn."""
    return seed * 1_000_003 + zlib.crc32("/".join(names).encode())


def sample(task: str, n: int, n_digits: int, generator: torch.Generator) -> Examples:
    """`n` random examples of `task` with inputs of `n_digits` digits."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {TASKS}")
    x = torch.randint(0, 10, (n, n_digits), generator=generator)  # n x L digits
    head = torch.tensor([BOS, TOKEN_ID[f"[{task}]"]]).expand(n, 2)
    equals = torch.full((n, 1), EQUALS)
    eos = torch.full((n, 1), EOS)
    if task == "add":
        b = torch.randint(0, 10, (n, n_digits), generator=generator)  # n x L
        prompt = torch.cat([head, x + ZERO, torch.full((n, 1), PLUS), b + ZERO, equals], dim=1)
        answer_digits = _add_lsb_first(x, b)  # n x (L + 1)
    else:
        prompt = torch.cat([head, x + ZERO, equals], dim=1)
        answer_digits = {"copy": x, "reverse": x.flip(1), "sort": x.sort(dim=1).values}[task]
    return Examples(prompt, torch.cat([answer_digits + ZERO, eos], dim=1))


def _add_lsb_first(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Digit-wise sum with carries of `n x L` numbers written least-significant digit first: `n x (L + 1)`."""
    digits = []
    carry = torch.zeros(a.shape[0], dtype=a.dtype)
    for i in range(a.shape[1]):
        total = a[:, i] + b[:, i] + carry
        digits.append(total % 10)
        carry = total // 10
    return torch.stack([*digits, carry], dim=1)


def to_text(ids: torch.Tensor) -> str:
    """Tokens as the tokenizer writes them (space separated), special tokens included."""
    return " ".join(VOCAB[int(i)] for i in ids)


def save_tokenizer(out_dir: Path) -> None:
    """A word-level tokenizer over `VOCAB` (space separated tokens) saved as a Hugging Face tokenizer.

    Encoding ``"[copy] 3 1 4 ="`` gives ``<bos> [copy] 3 1 4 =``, the prompt the suite's models are trained on.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(vocab=dict(TOKEN_ID), unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", BOS)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.save_pretrained(str(out_dir))
