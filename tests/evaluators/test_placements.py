"""Every placement merges what the resident engine merges, bit for bit, on the synthetic Llama of benchmarks/.

Where ranks are not kept (stream, mmap, resident without ranks) TIES and breadcrumbs select each expert's cut per
merge: the same kept counts as the kept ranks (and mergekit), the same entries but among those tied at the cut,
whose order only mergekit's sort gives. The checkpoints are bfloat16, where many entries share a magnitude, so
those ties occur here. Tensors are small (the eager path) but for the embeddings and the head (131,072 entries:
the compiled kernels).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mergefront.errors import InvalidSpecError
from mergefront.evaluators.checkpoint import LazyCheckpoint
from mergefront.evaluators.evaluation import Candidate, CandidateEvaluator, ObjectiveSetup, WorkerSetup
from mergefront.evaluators.headers import checkpoint_tensors
from mergefront.evaluators.memory import needs, plan, workload_of
from mergefront.evaluators.merge import MergeConfig, ResidentMerger
from mergefront.evaluators.methods import RANKING, REGISTRY, fused
from tests.evaluators.synthetic import synthetic_llama

PARAMS = {"weight": (0.5, 0.3, -0.2, 0.8), "density": (0.3, 0.5, 1.0, 0.2), "gamma": 0.02, "epsilon": 0.1,
          "lambda": 0.9, "t": 0.3}


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Base and 4 experts, 0.3M parameters each, bfloat16, as Hugging Face directories."""
    sl = synthetic_llama()
    shape = sl.LlamaShape(layers=1, hidden=64, intermediate=128, vocab=2048, heads=4)
    return sl.ensure_checkpoints(shape, tmp_path_factory.mktemp("llama"), n_experts=4, dtype=torch.bfloat16)


def _merger(folder: Path, k: int, **kwargs: object) -> ResidentMerger:
    models = [LazyCheckpoint(folder / name) for name in ("base", *(f"expert{i}" for i in range(k)))]
    return ResidentMerger(models[0], models[1:], list(models[0]), **kwargs)  # type: ignore[arg-type]


VARIANTS = {"resident without ranks": {"ranks": False}, "stream": {"placement": "stream"},
            "stream, staged": {"placement": "stream", "staging": True}, "mmap": {"placement": "mmap"}}


@pytest.fixture(scope="module")
def mergers(llama: Path) -> dict[tuple[str, int], ResidentMerger]:
    out = {}
    for k in (1, 4):  # SLERP merges one expert
        out[("resident", k)] = _merger(llama, k)
        out.update({(name, k): _merger(llama, k, **kwargs) for name, kwargs in VARIANTS.items()})  # type: ignore
    return out


def _params(method: str) -> dict[str, object]:
    return {name: (v[:1] if isinstance(v, tuple) else v) for name, v in PARAMS.items()} if method == "slerp" \
        else PARAMS


SELECTED = sorted(RANKING)  # TIES, breadcrumbs: cuts selected per merge where ranks are not kept


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_placement_merges_as_resident_bit_for_bit(mergers: dict, method: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERGEFRONT_FUSED", "0")  # the eager path here; the compiled kernels below
    k = 1 if method == "slerp" else 4
    config = MergeConfig(method, params=_params(method), seed=5)  # type: ignore[arg-type]
    expected = {key: t.clone() for key, t in mergers[("resident without ranks", k)].merge(config).items()}
    others = [name for name in VARIANTS if name != "resident without ranks"]
    for name in others if method in SELECTED else ["resident", *others]:  # DELLA ranks rows alike either way
        merged = mergers[(name, k)].merge(config)
        for key, tensor in expected.items():
            assert torch.equal(merged[key], tensor), f"{name}: {key} differs"
    changed = sum(c for c, _ in mergers[("stream", k)].changed())
    assert 0 < changed == sum(c for c, _ in mergers[("resident without ranks", k)].changed())  # it merged


@pytest.mark.parametrize("method", SELECTED)
def test_cuts_selected_per_merge_keep_as_many_entries_as_ranks_and_differ_only_at_ties(mergers: dict,
                                                                                     method: str) -> None:
    ranked, selected = mergers[("resident", 4)], mergers[("resident without ranks", 4)]
    config = MergeConfig(method, params=PARAMS, seed=2)  # type: ignore[arg-type]
    ranked_out = {key: t.clone() for key, t in ranked.merge(config).items()}
    selected_out = selected.merge(config)
    ranked_keep, selected_keep = ranked.kept_entries(config), selected.kept_entries(config)
    densities, tied = torch.tensor(PARAMS["density"], dtype=torch.float64), 0
    for seg in selected.segments:
        keep, other = ranked_keep[seg.key], selected_keep[seg.key]
        counts = torch.floor(densities * seg.numel).long()  # mergekit's int(density x n), TIES at least one
        counts = torch.where(densities >= 1, seg.numel, counts.clamp_min(1) if method == "ties" else counts)
        assert keep.sum(dim=1).tolist() == other.sum(dim=1).tolist() == counts.tolist(), seg.key
        magnitude = selected.task_vectors[:, seg.offset:seg.offset + seg.numel].abs()
        for i in range(4):  # where the two differ, both keep and drop entries of that very magnitude: a tie at a cut
            for value in magnitude[i][keep[i] != other[i]].unique():
                at = magnitude[i] == value
                assert keep[i][at].any() and not keep[i][at].all(), (seg.key, i, float(value))
        agree = (keep == other).all(dim=0)  # an entry merges alike where every expert's mask agrees
        assert torch.equal(ranked_out[seg.key].view(-1)[agree], selected_out[seg.key].view(-1)[agree]), seg.key
        tied += int((~agree).sum())
    assert tied > 0  # bfloat16's ties at the cut occur: the comparison above is exercised


@pytest.mark.parametrize("method", ["ties", "breadcrumbs_ties", "della"])
def test_compiled_kernels_merge_each_placement_alike(mergers: dict, method: str) -> None:
    selected = mergers[("resident without ranks", 4)]
    assert fused.applies(selected._data[0]), "the embeddings merge through the compiled kernels"
    config = MergeConfig(method, params=PARAMS, seed=3)  # type: ignore[arg-type]
    expected = selected.merge(config)["model.embed_tokens.weight"].clone()
    for name in ("stream, staged", "mmap", *(["resident"] if method == "della" else [])):
        assert torch.equal(mergers[(name, 4)].merge(config)["model.embed_tokens.weight"], expected), name
    assert not fused._state["broken"]


def test_device_memory_limits_force_stream_then_mmap_on_the_synthetic_llama(llama: Path, mergers: dict) -> None:
    workload = workload_of(checkpoint_tensors(llama / "base"), list(LazyCheckpoint(llama / "base")), 4, "ties")
    with_ranks, resident, stream, mmap = needs(workload)
    device = (resident.device_bytes + stream.device_bytes) // 2  # room to stream, not to keep resident
    host = (mmap.host_bytes + stream.host_bytes) // 2  # not room to hold base and task vectors in host memory
    chosen = [plan(workload, device_limit=limit, host_limit=host_limit)
              for limit, host_limit in ((None, None), (resident.device_bytes, None), (device, None), (device, host))]
    assert [(p.placement, p.need.ranks) for p in chosen] == [("resident", True), ("resident", False),
                                                              ("stream", False), ("mmap", False)]
    config = MergeConfig("ties", params=PARAMS, seed=7)  # type: ignore[arg-type]
    expected = {key: t.clone() for key, t in mergers[("resident without ranks", 4)].merge(config).items()}
    for p in chosen[2:]:
        merged = _merger(llama, 4, placement=p.placement, ranks=p.need.ranks).merge(config)
        assert all(torch.equal(merged[key], t) for key, t in expected.items()), p.placement
    with pytest.raises(InvalidSpecError, match="no placement fits") as info:
        plan(workload, device_limit=stream.device_bytes - 1)
    assert info.value.loc == ("resources", "device_memory")
    assert f"stream needs device {stream.device_bytes / 1e9:.3g} GB" in str(info.value)  # the numbers


@pytest.mark.parametrize("name", ["resident", "stream"])
def test_the_evaluators_model_runs_in_the_checkpoints_dtype_on_the_merge_output(llama: Path, mergers: dict,
                                                                                 name: str) -> None:
    from mergefront.evaluators.objectives.model import bind, load_model

    merger = mergers[(name, 4)]
    merged = merger.merge(MergeConfig("ties", params=PARAMS, seed=1))
    model, _ = load_model(llama / "base", torch.device("cpu"), merged)
    binding = bind(model, merged)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16} and not binding.copies
    state = model.state_dict()
    assert all(state[key].data_ptr() == t.data_ptr() for key, t in merged.items())  # views of the output
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.dtype == torch.bfloat16 and bool(torch.isfinite(logits.float()).all())


def test_stream_keeps_no_task_vectors_on_the_device(llama: Path) -> None:
    merger = _merger(llama, 4, placement="stream", staging=True)
    with pytest.raises(ValueError, match="placement 'stream' keeps no base or task vectors"):
        _ = merger.task_vectors
    assert merger.store.staging is not None  # type: ignore[union-attr]
    largest = max(s.numel for s in merger.segments)
    assert sum(b.numel() for b in merger.store.staging.buffers) == 2 * 5 * largest  # type: ignore[union-attr]


LOAD = """
import ctypes, sys
from pathlib import Path
from mergefront.evaluators.checkpoint import LazyCheckpoint
from mergefront.evaluators.merge import ResidentMerger

def peak():
    return next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:"))

folder, placement = Path(sys.argv[1]), sys.argv[2]
models = [LazyCheckpoint(folder / name) for name in ("base", "expert0", "expert1", "expert2", "expert3")]
ctypes.CDLL("libc.so.6").malloc_trim(0)
Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident set size
before = peak()
merger = ResidentMerger(models[0], models[1:], list(models[0]), placement=placement)
print(peak() - before, 6 * merger.out.nbytes)
"""


@pytest.mark.parametrize("placement", ["resident", "stream"])
def test_loading_maps_one_model_at_a_time(tmp_path: Path, placement: str) -> None:
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("this kernel does not let a process reset its peak resident set size")
    sl = synthetic_llama()
    folder = sl.ensure_checkpoints(sl.QUICK, tmp_path, n_experts=4)  # 3.7M parameters, float32: 14.7 MB a model
    file_bytes = (folder / "base" / "model.safetensors").stat().st_size
    out = subprocess.run([sys.executable, "-c", LOAD, str(folder), placement], capture_output=True, text=True,
                         check=True).stdout  # a fresh process: nothing freed earlier hides in its peak
    peak, held = (int(v) for v in out.split())  # held: base, 4 task vectors and the output (device or pinned)
    # the layout and less than one model more (a tensor in flight); state dicts would hold five models more
    assert held <= peak < held + file_bytes, (peak, held, file_bytes)


def test_tinylm_worker_scores_alike_when_its_memory_forces_stream_and_mmap(cache_dir: Path) -> None:
    from mergefront.evaluators.suites.tinylm import ensure_built

    suite = ensure_built(cache_dir, verbose=False)
    objectives = (ObjectiveSetup("copy", "copy"), ObjectiveSetup("reverse", "reverse"))
    setup = WorkerSetup.for_suite("tinylm", suite, ("copy", "reverse"), objectives, "cpu")
    setup = replace(setup, workload=workload_of(checkpoint_tensors(Path(setup.base)), setup.merged_keys, 2, "ties"))
    resident, stream, mmap = needs(setup.workload)[1:]  # type: ignore[arg-type]  # (resident with ranks first)
    device_memory = (resident.device_bytes + stream.device_bytes) // 2  # room to stream, not to keep resident
    host_memory = mmap.device_bytes + (mmap.host_bytes + stream.host_bytes) // 2  # a CPU's device is its host
    candidate = Candidate(1, MergeConfig("ties", params={"weight": (0.9, 0.6), "density": (0.4, 0.7)}))
    scores = {}
    for limits in ({}, {"device_memory": device_memory}, {"device_memory": device_memory, "host_memory": host_memory}):
        worker = CandidateEvaluator(replace(setup, **limits))  # type: ignore[arg-type]
        scores[worker.plan.placement] = worker.evaluate(candidate).metrics
    assert list(scores) == ["resident", "stream", "mmap"]
    assert scores["resident"] == scores["stream"] == scores["mmap"]
    with pytest.raises(InvalidSpecError, match="no placement fits") as info:
        CandidateEvaluator(replace(setup, device_memory=stream.device_bytes // 2))
    assert info.value.loc == ("resources", "device_memory")


def test_blocks_pack_consecutive_tensors_up_to_the_largest() -> None:
    from mergefront.evaluators.stores import Segment, pack

    sizes = [5, 3, 9, 1, 1, 7, 2, 9, 4]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    segments = [Segment(f"t{i}", o, n, (n,)) for i, (o, n) in enumerate(zip(offsets, sizes, strict=True))]
    blocks = pack(segments, max(sizes))
    assert [(b.first, b.end) for b in blocks] == [(0, 2), (2, 3), (3, 6), (6, 7), (7, 8), (8, 9)]
    assert all(b.offset == offsets[b.first] and b.numel == sum(sizes[b.first:b.end]) for b in blocks)
    assert all(b.numel <= max(sizes) for b in blocks)
