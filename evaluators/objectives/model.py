"""The merged model as evaluators see it: the base's Hugging Face model whose weights are the merge's output.

`load_model` builds the base's own class (``config.architectures``) on the worker's device once per job;
`bind` then points each merged parameter at its view of the merger's output buffer, so every later merge changes
the model in place with no copy. A parameter that cannot alias its view (another dtype or device) is copied after
each merge instead (`Binding.refresh`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt", "vocab.json")


def load_model(path: Path, device: torch.device, merged: Mapping[str, torch.Tensor] | None = None
               ) -> tuple[torch.nn.Module, Any]:
    """The model class the base's config names (a causal LM by default), in eval mode, and its tokenizer or None.

    It is loaded on the CPU (transformers maps the files, nothing is copied), its weights of the checkpoint's dtype
    among `merged` become those views, and only then is it moved to `device`: the merged weights, most of a model,
    never take the device's memory twice.
    """
    import transformers

    transformers.utils.logging.disable_progress_bar()
    config = transformers.AutoConfig.from_pretrained(path)
    names = list(getattr(config, "architectures", None) or [])
    cls = next((getattr(transformers, n) for n in names if hasattr(transformers, n)), transformers.AutoModelForCausalLM)
    model: torch.nn.Module = cls.from_pretrained(path, dtype="auto")
    if merged is not None:
        state = model.state_dict(keep_vars=True)
        with torch.no_grad():
            for key, tensor in merged.items():
                target = state.get(key)
                if target is not None and target.shape == tensor.shape and target.dtype == tensor.dtype:
                    target.data = tensor
    model = model.to(device).eval()
    tokenizer = None
    if any((path / f).is_file() for f in TOKENIZER_FILES):
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return model, tokenizer


@dataclass
class Binding:
    """Parameters that could not alias the merge's output, with the merged tensor each copies after a merge."""

    copies: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def refresh(self) -> None:
        with torch.no_grad():
            for target, source in self.copies:
                target.copy_(source)


def bind(model: torch.nn.Module, merged: Mapping[str, torch.Tensor]) -> Binding:
    """Make `model`'s weights the merged tensors (views valid across merges); raise if one has no place in it."""
    state = model.state_dict(keep_vars=True)
    missing = [k for k in merged if k not in state]
    if missing:
        raise ValueError(f"the model built from the base has no tensor {missing[0]!r} "
                         f"({len(missing)} merged tensors have no place in it)")
    binding = Binding()
    with torch.no_grad():
        for key, tensor in merged.items():
            target = state[key]
            if target.shape != tensor.shape:
                raise ValueError(f"tensor {key!r} is {tuple(tensor.shape)} in the checkpoint, "
                                 f"{tuple(target.shape)} in the model")
            if target.dtype == tensor.dtype and target.device == tensor.device:
                target.data = tensor
            else:
                binding.copies.append((target, tensor))
    binding.refresh()
    return binding
