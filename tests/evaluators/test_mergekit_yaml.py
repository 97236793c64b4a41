"""The tinylm suite's folders and mergefront's exported YAML of a point, for every method a job can search, run
through `mergekit-yaml` as written (nothing added to the file, the command's own defaults) and merge what
mergefront's export path merges.

Every method goes through the `mergekit-yaml` command's own entry point in this process (its click command reads
the file, parses it and calls `run_merge`, tokenizer copy included); one method also through the installed
`mergekit-yaml` executable in a subprocess. Model Stock has nothing to search, so no job exports it: the YAML a user
writes for it runs too. The bit-level comparison is the differential test's (`test_mergekit_differential.py`);
here the deterministic methods agree within 2 (k + 3) float32 units of each tensor's largest magnitude, and the
random ones (DARE, DELLA: other draws) merge every tensor with the exported shapes and dtypes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from mergefront.evaluators.checkpoint import load_checkpoint
from mergefront.evaluators.suites import ensure_suite
from mergefront.methods import METHODS
from mergefront.optimizers import build_space
from mergefront.service.mergekit import mergekit_yaml
from mergefront.service.settings import Settings
from mergefront.service.space import ModelFiles, job_files, materialize
from mergefront.spec import JobSpec, parse_spec
from tests.evaluators.mergekit_cases import model_stock_yaml

EXPERTS = ["bench://tinylm/copy", "bench://tinylm/reverse", "bench://tinylm/sort"]
BOUNDS = {"weight": (0.2, 1.1), "density": (0.35, 0.85), "gamma": (0.01, 0.08), "epsilon": (0.05, 0.1),
          "lambda": (0.7, 1.3), "t": (0.1, 0.9)}
GRANULARITIES: tuple[Any, ...] = ("component", {"layers": 2}, {"filters": ["norm", "self_attn"]}, "model")
SEARCHED = sorted(m for m in METHODS if METHODS[m].params)  # every method a job can search (and so export)


def _merge_section(method: str) -> dict[str, Any]:
    """Every parameter searched, each at another granularity (epsilon fixed: DELLA's density range leaves room)."""
    merge: dict[str, Any] = {"method": method}
    for i, name in enumerate(METHODS[method].params):
        low, high = BOUNDS[name]
        granularity = GRANULARITIES[(i + len(method)) % len(GRANULARITIES)]
        merge[name] = 0.1 if name == "epsilon" else {"low": low, "high": high, "granularity": granularity}
    return merge


def _job(method: str, cache_dir: Path, home: Path) -> tuple[JobSpec, ModelFiles]:
    experts = EXPERTS[: 1 if METHODS[method].max_experts == 1 else 2 if method != "della" else 3]
    spec = parse_spec({"name": f"tinylm-{method}", "models": {"base": "bench://tinylm/base", "experts": experts},
                       "merge": _merge_section(method), "objectives": [{"task": "copy"}],
                       "optimizer": {"name": "random", "budget": 1}})
    return spec, job_files(spec, Settings(home=home, cache_dir=cache_dir))


def _export(spec: JobSpec, files: ModelFiles, folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A point of the job's space: its YAML as the export writes it, and the checkpoint the export path merges."""
    space = build_space(spec.merge, spec.models.experts, list(files.merged_keys))
    params = {p.name: p.low + (p.high - p.low) * ((0.137 + 0.611 * i) % 1) for i, p in enumerate(space.parameters)}
    config = folder / "merge.yml"
    config.write_text(mergekit_yaml(spec, space, params, files))
    return config, load_checkpoint(materialize(spec, space, params, 3, files, folder / "ours"))


def _mergekit_yaml_command(config: Path, out: Path) -> None:
    """`mergekit-yaml CONFIG OUT`, through the command's own entry point, in this process."""
    from mergekit.scripts.run_yaml import main

    threads = torch.get_num_threads()
    try:
        main.main([str(config), str(out)], standalone_mode=False)
    finally:
        torch.set_num_threads(threads)


def _agree(method: str, k: int, ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor],
           base: dict[str, torch.Tensor], keys: tuple[str, ...]) -> None:
    assert set(keys) <= set(theirs)
    for key in keys:
        assert theirs[key].shape == ours[key].shape and theirs[key].dtype == ours[key].dtype, key
        assert bool(torch.isfinite(theirs[key]).all()), key
        if METHODS[method].random:
            continue
        limit = 2 * (k + 3) * torch.finfo(torch.float32).eps * float(theirs[key].abs().max())
        assert float((ours[key] - theirs[key]).abs().max()) <= limit, key
    assert any(not torch.equal(theirs[key], base[key]) for key in keys)  # mergekit merged, not copied the base


@pytest.fixture(scope="module")
def tinylm(cache_dir: Path) -> Path:
    return ensure_suite("tinylm", cache_dir, verbose=False)


@pytest.mark.parametrize("method", SEARCHED)
def test_exported_yaml_of_every_method_runs_through_mergekit_yaml(method: str, tinylm: Path, cache_dir: Path,
                                                                  tmp_path: Path) -> None:
    spec, files = _job(method, cache_dir, tmp_path / "home")
    config, ours = _export(spec, files, tmp_path)
    _mergekit_yaml_command(config, tmp_path / "mergekit")
    assert (tmp_path / "mergekit" / "tokenizer_config.json").is_file()  # the command's defaults ran
    theirs = load_checkpoint(tmp_path / "mergekit")
    _agree(method, len(files.experts), ours, theirs, load_checkpoint(files.base), files.merged_keys)


def test_model_stock_yaml_on_the_suite_folders_runs_through_mergekit_yaml(tinylm: Path, cache_dir: Path,
                                                                           tmp_path: Path) -> None:
    from mergefront.evaluators.merge import MergeConfig, ResidentMerger

    spec, files = _job("ties", cache_dir, tmp_path / "home")  # the suite's folders; Model Stock merges 2 experts
    config = tmp_path / "merge.yml"
    config.write_text(model_stock_yaml(files))
    _mergekit_yaml_command(config, tmp_path / "mergekit")
    inputs = [load_checkpoint(p) for p in (files.base, *files.experts)]
    ours = ResidentMerger(inputs[0], inputs[1:], list(files.merged_keys)).merge(MergeConfig("model_stock"))
    _agree("model_stock", 2, ours, load_checkpoint(tmp_path / "mergekit"), inputs[0], files.merged_keys)


def test_the_mergekit_yaml_executable_merges_an_exported_yaml(tinylm: Path, cache_dir: Path, tmp_path: Path) -> None:
    spec, files = _job("ties", cache_dir, tmp_path / "home")
    config, ours = _export(spec, files, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [str(Path(sys.executable).with_name("mergekit-yaml")), str(config), str(tmp_path / "mergekit")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = load_checkpoint(tmp_path / "mergekit")
    for key in files.merged_keys:  # float32, two experts, no rescale: mergekit's arithmetic to the last bit
        assert torch.equal(ours[key], theirs[key]), key
    assert (tmp_path / "mergekit" / "tokenizer_config.json").is_file()
