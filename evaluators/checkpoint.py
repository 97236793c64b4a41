"""Checkpoints: Hugging Face model directories (one or sharded safetensors), plain safetensors files,
`hf://org/name` through huggingface_hub, and pickled `.bin` weights only when the caller opts in.

Dtypes are kept as stored (bf16 stays bf16). Writing makes a Hugging Face directory: safetensors shards with an
index when large, plus the config, generation config and tokenizer files of a template directory.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mergefront.errors import InvalidSpecError
from mergefront.evaluators.headers import (  # noqa: F401 - tensor_shapes, merged_tensor_names, check_compatible:
    SAFETENSORS_INDEX,  # re-exported, they read headers only
    check_compatible,
    checkpoint_tensors,
    merged_tensor_names,
    read_header,
    tensor_shapes,
    weight_files,
)

SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt",
              "added_tokens.json", "chat_template.jinja")


def resolve(ref: str, *, cache_dir: Path | None = None) -> Path:
    """A local path for a checkpoint reference: a path as it is, `hf://org/name[@revision]` downloaded."""
    if ref.startswith("hf://"):
        return _download(ref[len("hf://"):], cache_dir)
    path = Path(ref).expanduser()
    if not path.exists():
        raise InvalidSpecError(f"checkpoint {ref!r} does not exist")
    return path


def _download(repo: str, cache_dir: Path | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with transformers
        raise InvalidSpecError("hf:// references need huggingface_hub installed") from exc
    repo_id, _, revision = repo.partition("@")
    try:
        return Path(snapshot_download(repo_id, revision=revision or None, cache_dir=cache_dir,
                                      allow_patterns=["*.safetensors", "*.json", *SIDE_FILES]))
    except Exception as exc:  # offline, unknown repo, gated repo: the hub's own message says which
        raise InvalidSpecError(f"cannot fetch hf://{repo}: {exc}") from exc


def load_checkpoint(path: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint, in its stored dtype, on the CPU."""
    tensors: dict[str, torch.Tensor] = {}
    for file in weight_files(Path(path), allow_pickle=allow_pickle):
        if file.suffix == ".safetensors":
            tensors.update(load_file(file))
        else:
            tensors.update(torch.load(file, map_location="cpu", weights_only=True))
    return tensors


class LazyCheckpoint(Mapping[str, torch.Tensor]):
    """A safetensors checkpoint read tensor by tensor: each item is a view of the memory-mapped file (nothing is
    copied until it is used), shapes and dtypes come from the headers. `close` unmaps the files; later reads open
    them again."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.infos = checkpoint_tensors(self.path)
        self._file_of = {name: file for file in weight_files(self.path) for name in read_header(file)}
        self._handles: dict[Path, Any] = {}

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._file_of:
            raise KeyError(key)
        file = self._file_of[key]
        if file not in self._handles:
            self._handles[file] = safe_open(file, framework="pt")
        return self._handles[file].get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.infos)

    def __len__(self) -> int:
        return len(self.infos)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.infos[key].shape

    def close(self) -> None:
        self._handles.clear()


def save_checkpoint(tensors: Mapping[str, torch.Tensor], out_dir: Path, *, template: Path | None = None,
                    max_shard_bytes: int = 5 * 1024**3) -> Path:
    """Write `tensors` as a Hugging Face directory, copying config and tokenizer files from `template`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = _shard(tensors, max_shard_bytes)
    if len(shards) == 1:
        _save_shard(shards[0], out_dir / "model.safetensors")
    else:
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            _save_shard(shard, out_dir / name)
            weight_map.update(dict.fromkeys(shard, name))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out_dir / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2))
    if template is not None and Path(template).is_dir():
        for name in SIDE_FILES:
            if (Path(template) / name).exists():  # the contents only: a new file's mode, not the template's
                shutil.copyfile(Path(template) / name, out_dir / name)
    return out_dir


def _save_shard(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """One safetensors file, with the mode any new file gets here (0666 less the umask; safetensors makes 0600)."""
    save_file(_contiguous(tensors), path, metadata={"format": "pt"})
    path.chmod(0o666 & ~current_umask())


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells (Linux), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _shard(tensors: Mapping[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    return shards


def _contiguous(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
