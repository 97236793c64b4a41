from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mergefront.errors import InvalidSpecError
from mergefront.evaluators.checkpoint import (
    check_compatible,
    load_checkpoint,
    resolve,
    save_checkpoint,
    tensor_shapes,
    weight_files,
)
from mergefront.evaluators.merge import ResidentMerger


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(10, 4, generator=gen).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": torch.randn(8, 4, generator=gen).to(torch.float16),
        "model.norm.weight": torch.ones(4),
    }


def test_round_trip_keeps_dtypes_and_copies_side_files(tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    (template / "config.json").write_text('{"model_type": "llama"}')
    (template / "tokenizer.json").write_text("{}")
    out = save_checkpoint(_tensors(), tmp_path / "out", template=template)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    loaded = load_checkpoint(out)
    assert {k: v.dtype for k, v in loaded.items()} == {k: v.dtype for k, v in _tensors().items()}
    assert all(torch.equal(loaded[k], v) for k, v in _tensors().items())


def test_sharded_directory_with_index(tmp_path: Path) -> None:
    out = save_checkpoint(_tensors(), tmp_path / "sharded", max_shard_bytes=100)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 2  # 80 bytes, then 64 + 16 bytes
    assert len(weight_files(out)) == 2
    assert tensor_shapes(out)["model.layers.0.mlp.up_proj.weight"] == (8, 4)
    assert set(load_checkpoint(out)) == set(_tensors())


def test_plain_safetensors_file_and_missing_paths(tmp_path: Path) -> None:
    file = tmp_path / "expert.safetensors"
    save_file(_tensors(), file)
    assert set(load_checkpoint(resolve(str(file)))) == set(_tensors())
    with pytest.raises(InvalidSpecError, match="does not exist"):
        resolve(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidSpecError, match="no safetensors"):
        load_checkpoint(tmp_path / "empty")


def test_pickled_weights_need_an_opt_in(tmp_path: Path) -> None:
    folder = tmp_path / "legacy"
    folder.mkdir()
    torch.save(_tensors(), folder / "pytorch_model.bin")
    with pytest.raises(InvalidSpecError, match="pickled weights"):
        load_checkpoint(folder)
    assert set(load_checkpoint(folder, allow_pickle=True)) == set(_tensors())


def test_mismatched_experts_are_named_by_tensor(tmp_path: Path) -> None:
    base = {k: tuple(v.shape) for k, v in _tensors().items()}
    other = dict(base, **{"model.norm.weight": (5,)})
    with pytest.raises(InvalidSpecError, match=r"'model.norm.weight' has shape \(5,\) in expert-1"):
        check_compatible(base, other, "expert-1", list(base))
    del other["model.embed_tokens.weight"]
    with pytest.raises(InvalidSpecError, match="expert-1 has no tensor 'model.embed_tokens.weight'"):
        check_compatible(base, other, "expert-1", list(base))


def test_merge_keeps_the_checkpoint_dtype() -> None:
    base = _tensors()
    expert = {k: v + 1 for k, v in base.items()}
    merger = ResidentMerger(base, [expert], ["model.embed_tokens.weight"])
    assert merger.base.dtype == torch.bfloat16


def test_hub_reference_without_network_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InvalidSpecError, match="cannot fetch hf://org/model"):
        resolve("hf://org/model@main", cache_dir=tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_get_the_usual_mode_under_the_umask(tmp_path: Path, umask: int) -> None:
    template = tmp_path / "template"
    template.mkdir()
    (template / "config.json").write_text('{"model_type": "llama"}')
    (template / "config.json").chmod(0o600)  # a private template file: its copy still gets the usual mode
    before = os.umask(umask)
    try:
        one = save_checkpoint(_tensors(), tmp_path / "one", template=template)
        sharded = save_checkpoint(_tensors(), tmp_path / "sharded", max_shard_bytes=100)
    finally:
        os.umask(before)
    files = [*one.iterdir(), *sharded.iterdir()]
    assert len(files) == 2 + 3
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: 0o666 & ~umask for p in files}
