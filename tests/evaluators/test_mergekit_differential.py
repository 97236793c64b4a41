"""Exactly mergekit's merge, in every dtype: our engine, our export path and mergekit 0.1.5 run on our exported YAML
agree on generated cases (`tests/evaluators/mergekit_reference.py` states the cases and the tolerances).

CI runs a fixed seeded subset: every method in every dtype once on small ragged checkpoints, and four cases whose
embeddings reach the compiled kernels. `pytest tests/evaluators/test_mergekit_differential.py --long` runs
`LONG_CASES` generated cases and writes the largest differences per method and dtype to `LONG_RESULT`
(docs/merge-speed.md quotes it). The tinylm suite's folders and YAML exported from them go through the
`mergekit-yaml` command itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mergefront.evaluators.checkpoint import load_checkpoint
from mergefront.evaluators.suites import ensure_suite
from mergefront.methods import METHODS
from mergefront.optimizers import build_space
from mergefront.service.mergekit import mergekit_yaml
from mergefront.service.settings import Settings
from mergefront.service.space import job_files, materialize
from mergefront.spec import parse_spec
from tests.evaluators.mergekit_cases import ARCHITECTURES, DTYPES, Case, generate
from tests.evaluators.mergekit_reference import Result, allowed_ulps, run_case

CI_DRAW, LONG_DRAW = 14, 2026
LONG_CASES = 2000
LONG_RESULT = Path(__file__).parents[2] / "benchmarks" / "results" / "mergekit_differential.json"
SMALL = tuple(a for a in ARCHITECTURES if a.vocab * a.hidden < 1 << 16)
BIG = tuple(a for a in ARCHITECTURES if a.vocab * a.hidden >= 1 << 16)
_results: list[Result] = []


def _ci_cases() -> list[Case]:
    every = [generate(i, CI_DRAW, SMALL, method, dtype)
             for i, (method, dtype) in enumerate((m, d) for m in sorted(METHODS) for d in sorted(DTYPES))]
    big = [generate(100 + i, CI_DRAW, BIG, method, dtype) for i, (method, dtype) in enumerate(
        (("ties", "bfloat16"), ("dare_linear", "float32"), ("della", "float16"), ("linear", "bfloat16")))]
    return every + big


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        long = metafunc.config.getoption("--long")
        cases = [generate(i, LONG_DRAW) for i in range(LONG_CASES)] if long else _ci_cases()  # 5 % compiled
        metafunc.parametrize("case", cases, ids=[f"{c.index}-{c.method}-{c.dtype}-k{c.k}" for c in cases])


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest) -> Iterator[list[Result]]:
    """Every case's result; a --long run writes the largest differences per method and dtype (every 50 cases and
    at the end)."""
    yield _results
    if request.config.getoption("--long") and _results:
        LONG_RESULT.write_text(json.dumps(_table(_results), indent=2) + "\n")


def test_merges_as_mergekit_does(case: Case, tmp_path: Path, summary: list[Result],
                                 request: pytest.FixtureRequest) -> None:
    result = run_case(case, tmp_path / "case")
    summary.append(result)
    if request.config.getoption("--long") and len(summary) % 50 == 0:
        LONG_RESULT.write_text(json.dumps(_table(summary), indent=2) + "\n")
    assert not result.failures, f"{case}: " + "; ".join(result.failures[:5])
    shutil.rmtree(tmp_path / "case")  # a --long run writes thousands of checkpoints


def _table(results: list[Result]) -> dict[str, object]:
    rows: dict[str, dict[str, dict[str, float | int]]] = {}
    for r in results:
        row = rows.setdefault(r.case.method, {}).setdefault(r.case.dtype, {
            "cases": 0, "tensors": 0, "exact_cases": 0, "max_abs_diff": 0.0, "max_share_of_allowed_ulps": 0.0,
            "failed": 0})
        row["cases"] = int(row["cases"]) + 1
        row["tensors"] = int(row["tensors"]) + r.tensors
        row["exact_cases"] = int(row["exact_cases"]) + int(r.exact)
        row["max_abs_diff"] = max(float(row["max_abs_diff"]), r.max_diff)
        share = r.max_ulps / allowed_ulps(r.case)
        row["max_share_of_allowed_ulps"] = max(float(row["max_share_of_allowed_ulps"]), share)
        row["failed"] = int(row["failed"]) + int(bool(r.failures))
    return {"draw": LONG_DRAW, "cases": len(results), "torch": torch.__version__,
            "mergekit": _mergekit_version(), "methods": rows}


def _mergekit_version() -> str:
    from importlib.metadata import version

    return version("mergekit")


TINYLM = {"base": "bench://tinylm/base", "experts": ["bench://tinylm/copy", "bench://tinylm/reverse"]}


@pytest.mark.parametrize("merge", [
    {"method": "ties", "weight": {"low": 0.2, "high": 1.1, "granularity": "component"},
     "density": {"low": 0.15, "high": 0.95, "granularity": {"layers": 2}}, "lambda": 0.93},
    {"method": "slerp", "t": {"low": 0.1, "high": 0.9, "granularity": {"filters": ["norm", "self_attn"]}}},
], ids=["ties", "slerp"])
def test_tinylm_folders_and_their_exported_yaml_run_through_mergekit_yaml(merge: dict, cache_dir: Path,
                                                                          tmp_path: Path) -> None:
    ensure_suite("tinylm", cache_dir, verbose=False)
    models = dict(TINYLM, experts=TINYLM["experts"][: 1 if merge["method"] == "slerp" else 2])
    spec = parse_spec({"name": "tinylm-mergekit", "models": models, "merge": merge,
                       "objectives": [{"task": "copy"}], "optimizer": {"name": "random", "budget": 1}})
    files = job_files(spec, Settings(home=tmp_path / "home", cache_dir=cache_dir))
    space = build_space(spec.merge, spec.models.experts, list(files.merged_keys))
    params = {p.name: p.low + (p.high - p.low) * ((0.137 + 0.611 * i) % 1) for i, p in enumerate(space.parameters)}
    config = tmp_path / "merge.yml"
    config.write_text(mergekit_yaml(spec, space, params, files))  # as the export writes it, nothing added
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [str(Path(sys.executable).with_name("mergekit-yaml")), str(config), str(tmp_path / "mergekit")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = load_checkpoint(tmp_path / "mergekit")
    ours = load_checkpoint(materialize(spec, space, params, 0, files, tmp_path / "ours"))
    assert set(files.merged_keys) <= set(theirs)
    for key in files.merged_keys:
        if merge["method"] == "ties":  # float32, two experts, no rescale: mergekit's arithmetic to the last bit
            assert torch.equal(ours[key], theirs[key]), key
        else:  # SLERP's coefficients come from a float32 dot product summed in another order: 2 (k + 3) units
            limit = 8 * torch.finfo(torch.float32).eps * float(theirs[key].abs().max())
            assert float((ours[key] - theirs[key]).abs().max()) <= limit, key
    assert (tmp_path / "mergekit" / "tokenizer_config.json").is_file()  # the CLI's defaults ran (tokenizer copied)
