"""Checkpoints: Hugging Face model directories (one or sharded safetensors), plain safetensors files,
`hf://org/name` through huggingface_hub, and pickled `.bin` weights only when the caller opts in.

Dtypes are kept as stored (bf16 stays bf16). Writing makes a Hugging Face directory: safetensors shards with an
index when large, plus the config, generation config and tokenizer files of a template directory.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mergefront.errors import InvalidSpecError

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
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


def weight_files(path: Path, *, allow_pickle: bool = False) -> list[Path]:
    """The files holding a checkpoint's tensors, in a stable order."""
    if path.is_file():
        if path.suffix == ".safetensors":
            return [path]
        if path.suffix in (".bin", ".pt", ".pth"):
            _check_pickle(path, allow_pickle)
            return [path]
        raise InvalidSpecError(f"{path}: not a safetensors or .bin checkpoint")
    for index_name, pickled in ((SAFETENSORS_INDEX, False), (BIN_INDEX, True)):
        index = path / index_name
        if index.exists():
            if pickled:
                _check_pickle(index, allow_pickle)
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [path / s for s in shards]
    found = sorted(path.glob("*.safetensors"))
    if found:
        return found
    if (path / "pytorch_model.bin").exists():
        _check_pickle(path / "pytorch_model.bin", allow_pickle)
        return [path / "pytorch_model.bin"]
    raise InvalidSpecError(f"{path}: no safetensors (or .bin) weights found")


def _check_pickle(path: Path, allow_pickle: bool) -> None:
    if not allow_pickle:
        raise InvalidSpecError(f"{path} holds pickled weights, which can run code when loaded; convert it to "
                               "safetensors, or opt in with allow_pickle")


def load_checkpoint(path: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint, in its stored dtype, on the CPU."""
    tensors: dict[str, torch.Tensor] = {}
    for file in weight_files(Path(path), allow_pickle=allow_pickle):
        if file.suffix == ".safetensors":
            tensors.update(load_file(file))
        else:
            tensors.update(torch.load(file, map_location="cpu", weights_only=True))
    return tensors


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors headers alone (no weights are read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in weight_files(Path(path)):
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def merged_tensor_names(path: Path) -> list[str]:
    """The tensors a merge of this base changes: its floating-point ones (integer buffers stay the base's)."""
    names: list[str] = []
    for file in weight_files(Path(path)):
        with safe_open(file, framework="pt") as handle:
            names.extend(k for k in handle.keys() if handle.get_slice(k).get_dtype() in _FLOAT_DTYPES)  # noqa: SIM118
    return names


def check_compatible(base: Mapping[str, tuple[int, ...]], expert: Mapping[str, tuple[int, ...]], label: str,
                     keys: list[str]) -> None:
    """Raise InvalidSpecError naming the first tensor an expert lacks or has in another shape."""
    for key in keys:
        if key not in expert:
            raise InvalidSpecError(f"{label} has no tensor {key!r}, which the base has")
        if tuple(expert[key]) != tuple(base[key]):
            raise InvalidSpecError(f"tensor {key!r} has shape {tuple(expert[key])} in {label}, "
                                   f"{tuple(base[key])} in the base")


def save_checkpoint(tensors: Mapping[str, torch.Tensor], out_dir: Path, *, template: Path | None = None,
                    max_shard_bytes: int = 5 * 1024**3) -> Path:
    """Write `tensors` as a Hugging Face directory, copying config and tokenizer files from `template`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = _shard(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(_contiguous(shards[0]), out_dir / "model.safetensors", metadata={"format": "pt"})
    else:
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(_contiguous(shard), out_dir / name, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out_dir / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2))
    if template is not None and Path(template).is_dir():
        for name in SIDE_FILES:
            if (Path(template) / name).exists():
                shutil.copy2(Path(template) / name, out_dir / name)
    return out_dir


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
