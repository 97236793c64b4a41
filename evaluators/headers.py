"""Checkpoint files and their safetensors headers: tensor names, shapes and dtypes, with no weight read.

Light on purpose (no torch, no numpy): the API process reads headers to check a job's models and plan its memory
before anything is loaded. A safetensors file starts with its header's length (8 bytes, little-endian) and the
header itself (JSON: name -> dtype, shape, byte offsets); that is all read here, so a header-only file (a 7B
checkpoint's shapes with no weights behind them) plans as well as the real one.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mergefront.errors import InvalidSpecError

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
MAX_HEADER_BYTES = 100 * 2**20  # the limit the safetensors library itself enforces

#: bytes per entry of each safetensors dtype
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
               "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
TORCH_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor as its header describes it."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # the safetensors code: "BF16", "F32", ...

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_BYTES.get(self.dtype, 4)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


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


def read_header(file: Path) -> dict[str, TensorInfo]:
    """The tensors one safetensors file describes, by name (the order the safetensors library lists them in)."""
    with open(file, "rb") as fh:
        head = fh.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 2 <= size <= MAX_HEADER_BYTES:
            raise InvalidSpecError(f"{file.name} is not a safetensors file (its header length is {size})")
        raw = fh.read(size)
    try:
        header = json.loads(raw)
        entries = sorted((k, v) for k, v in header.items() if k != "__metadata__")
        return {name: TensorInfo(name, tuple(int(d) for d in v["shape"]), str(v["dtype"])) for name, v in entries}
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InvalidSpecError(f"{file.name} has a malformed safetensors header ({type(exc).__name__})") from exc


def checkpoint_tensors(path: Path) -> dict[str, TensorInfo]:
    """Every tensor of a safetensors checkpoint (a file, or a directory of one or more shards), headers only."""
    tensors: dict[str, TensorInfo] = {}
    for file in weight_files(Path(path)):
        if file.suffix != ".safetensors":
            raise InvalidSpecError(f"{file.name} holds pickled weights; only safetensors headers can be read "
                                   "without loading the weights")
        tensors.update(read_header(file))
    return tensors


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors headers alone (no weights are read)."""
    return {name: info.shape for name, info in checkpoint_tensors(Path(path)).items()}


def merged_tensor_names(path: Path) -> list[str]:
    """The tensors a merge of this base changes: its floating-point ones (integer buffers stay the base's)."""
    return [name for name, info in checkpoint_tensors(Path(path)).items() if info.is_float]


def check_compatible(base: Mapping[str, tuple[int, ...]], expert: Mapping[str, tuple[int, ...]], label: str,
                     keys: list[str]) -> None:
    """Raise InvalidSpecError naming the first tensor an expert lacks or has in another shape."""
    for key in keys:
        if key not in expert:
            raise InvalidSpecError(f"{label} has no tensor {key!r}, which the base has")
        if tuple(expert[key]) != tuple(base[key]):
            raise InvalidSpecError(f"tensor {key!r} has shape {tuple(expert[key])} in {label}, "
                                   f"{tuple(base[key])} in the base")
