"""Memory plans from headers alone: a 7B base with 4 experts (bf16) on 80 GB and 24 GB devices, refusals with
their numbers, and the header reader on files with no weights behind their headers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mergefront.errors import InvalidSpecError
from mergefront.evaluators.headers import TensorInfo, checkpoint_tensors, read_header
from mergefront.evaluators.memory import RANKED, activation_bytes, host_available, needs, plan, workload_of
from mergefront.evaluators.methods import NEEDS_ROW_RANKS, RANKING, REGISTRY
from tests.evaluators.synthetic import synthetic_llama

GB = 10**9


def _llama_7b(method: str) -> tuple[object, int]:
    shape = synthetic_llama().SIZES["7b"]  # Llama 2 7B's shapes: 6.74B parameters
    tensors = {name: TensorInfo(name, dims, "BF16") for name, dims in shape.shapes().items()}
    k = 1 if method == "slerp" else 4
    act = activation_bytes(shape.config(), batch=8, tokens=512, itemsize=2)
    return workload_of(tensors, list(tensors), k, method, act, runs_model=True), shape.n_params()


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_a_7b_base_with_4_experts_fits_80_gb_and_streams_on_24_gb(method: str) -> None:
    workload, n_params = _llama_7b(method)
    assert workload.numel == n_params == 6_738_415_616 and workload.dtype == "bfloat16"  # type: ignore[attr-defined]
    big = plan(workload, device_limit=80 * GB)  # type: ignore[arg-type]
    small = plan(workload, device_limit=24 * GB, placement="stream")  # type: ignore[arg-type]
    assert big.need.device_bytes <= 80 * GB and small.need.device_bytes <= 24 * GB
    assert small.need.host_bytes >= (workload.n_experts + 1) * n_params * 2  # type: ignore[attr-defined]
    assert "of 24 GB" in small.describe() and "placement: stream" in small.describe()
    resident = next(o for o in needs(workload) if o.placement == "resident")  # type: ignore[arg-type]
    assert resident.device_bytes > 24 * GB  # resident needs the base, the task vectors and the output
    if method in RANKED:  # without ranks: one tensor's cuts (TIES, breadcrumbs) or row ranks (DELLA) per merge
        assert not small.need.ranks
        assert ("rows ranked per merge" if method.startswith("della") else "magnitude cuts selected per merge") \
            in small.describe()


def test_resident_is_chosen_when_it_fits_with_ranks_when_they_fit() -> None:
    workload, _ = _llama_7b("ties")
    roomy = plan(workload, device_limit=400 * GB)  # type: ignore[arg-type]
    assert (roomy.placement, roomy.need.ranks) == ("resident", True)
    without = plan(workload, device_limit=100 * GB)  # type: ignore[arg-type]
    assert (without.placement, without.need.ranks) == ("resident", False)


def test_a_plan_that_cannot_fit_is_refused_with_its_numbers() -> None:
    workload, _ = _llama_7b("ties")
    with pytest.raises(InvalidSpecError) as info:
        plan(workload, device_limit=8 * GB)  # type: ignore[arg-type]
    message = str(info.value)
    assert info.value.loc == ("resources", "device_memory")
    assert "no placement fits" in message and "device 8 GB" in message and "mmap needs device" in message
    with pytest.raises(InvalidSpecError, match="placement stream does not fit") as info:
        plan(workload, device_limit=80 * GB, host_limit=16 * GB, placement="stream")  # type: ignore[arg-type]
    assert info.value.loc == ("resources", "host_memory")
    assert plan(workload, device_limit=80 * GB, host_limit=16 * GB).placement == "mmap"  # type: ignore[arg-type]


def test_on_a_cpu_the_device_is_host_memory() -> None:
    workload, _ = _llama_7b("task_arithmetic")
    with pytest.raises(InvalidSpecError, match="no placement fits"):
        plan(workload, host_limit=20 * GB, device_kind="cpu")  # type: ignore[arg-type]
    assert plan(workload, host_limit=200 * GB, device_kind="cpu").placement == "resident"  # type: ignore[arg-type]


def test_the_ranked_methods_are_the_engines() -> None:
    assert RANKED == set(RANKING) | NEEDS_ROW_RANKS


def test_headers_are_read_without_the_weights(tmp_path: Path) -> None:
    tensors = {"b": torch.zeros(3, 4, dtype=torch.bfloat16), "a": torch.zeros(5, dtype=torch.int64)}
    save_file(tensors, tmp_path / "real.safetensors")
    infos = read_header(tmp_path / "real.safetensors")
    assert list(infos) == ["a", "b"]  # by name, as the safetensors library lists them
    assert (infos["b"].shape, infos["b"].dtype, infos["b"].nbytes, infos["a"].is_float) == ((3, 4), "BF16", 24, False)
    header = json.dumps({"w": {"dtype": "BF16", "shape": [4096, 11008], "data_offsets": [0, 2 * 4096 * 11008]}})
    (tmp_path / "shapes").mkdir()  # a header with no weights behind it: the library refuses it, the plan reads it
    (tmp_path / "shapes" / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode())
    assert checkpoint_tensors(tmp_path / "shapes")["w"].numel == 4096 * 11008
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(InvalidSpecError, match="not a safetensors file"):
        read_header(tmp_path / "bad.safetensors")


def test_activation_allowance_grows_with_the_batch_and_host_memory_is_known() -> None:
    config = synthetic_llama().SIZES["1b"].config()
    assert activation_bytes(config, 16, 512, 2) > activation_bytes(config, 8, 512, 2) > 0
    assert activation_bytes({}, 8, 512, 2) == 0
    available = host_available()
    assert available is not None and 0 < available < 2**50
