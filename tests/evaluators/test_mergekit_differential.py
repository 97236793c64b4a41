"""Exactly mergekit's merge, in every dtype: our engine, our export path and mergekit 0.1.5 run on our exported YAML
agree on generated cases (`tests/evaluators/mergekit_reference.py` states the cases and the tolerances).

CI runs a fixed seeded subset: every method in every dtype once on small ragged checkpoints, a few cases whose
embeddings reach the compiled kernels, and a SLERP case whose tensors lie on both sides of mergekit's linear-fallback
cosine (0.9995). `pytest tests/evaluators/test_mergekit_differential.py --long` runs cases `--long-range` (default
all `LONG_CASES`) of the long draw; each finished case appends its record to `LONG_CASES_FILE` (the last record of
a case counts, so a long run can be made in slices), and the largest differences per method and dtype over every
recorded case are written to `LONG_RESULT` (docs/merge-speed.md quotes it), with the commits the records were
made at. The tinylm suite's folders go through `mergekit-yaml` in `test_mergekit_yaml.py`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

from mergefront.evaluators.methods.slerp import DOT_THRESHOLD
from mergefront.methods import METHODS
from tests.evaluators.mergekit_cases import ARCHITECTURES, DTYPES, Case, generate
from tests.evaluators.mergekit_reference import Result, allowed_ulps, run_case

CI_DRAW, LONG_DRAW = 14, 2026
LONG_CASES = 2000
RESULTS = Path(__file__).parents[2] / "benchmarks" / "results"
LONG_RESULT = RESULTS / "mergekit_differential.json"
LONG_CASES_FILE = RESULTS / "mergekit_differential_cases.jsonl"
CODE = ("evaluators", "mergefront", "optimizers", "service", "surrogates", "tests", "pyproject.toml")  # what merges
OLD_THRESHOLD = 1 - 1e-6  # where we once began to lerp: cosines between it and mergekit's were slerped
SMALL = tuple(a for a in ARCHITECTURES if a.vocab * a.hidden < 1 << 16)
BIG = tuple(a for a in ARCHITECTURES if a.vocab * a.hidden >= 1 << 16)


def _ci_cases() -> list[Case]:
    every = [generate(i, CI_DRAW, SMALL, method, dtype)
             for i, (method, dtype) in enumerate((m, d) for m in sorted(METHODS) for d in sorted(DTYPES))]
    big = [generate(100 + i, CI_DRAW, BIG, method, dtype) for i, (method, dtype) in enumerate(
        (("ties", "bfloat16"), ("dare_linear", "float32"), ("della", "float16"), ("linear", "bfloat16")))]
    return every + big


def _long_cases(config: pytest.Config) -> list[Case]:
    first, _, last = str(config.getoption("--long-range") or f"0:{LONG_CASES}").partition(":")
    return [generate(i, LONG_DRAW) for i in range(int(first), int(last))]  # one in 20 compiled


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cases = _long_cases(metafunc.config) if metafunc.config.getoption("--long") else _ci_cases()
        metafunc.parametrize("case", cases, ids=[f"{c.index}-{c.method}-{c.dtype}-k{c.k}" for c in cases])


def test_merges_as_mergekit_does(case: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    result = run_case(case, tmp_path / "case")
    if request.config.getoption("--long"):
        _record(result)
    assert not result.failures, f"{case}: " + "; ".join(result.failures[:5])
    shutil.rmtree(tmp_path / "case")  # a --long run writes thousands of checkpoints


def test_slerp_lerps_above_mergekit_cosine_as_mergekit_does(tmp_path: Path) -> None:
    """Tensors whose base-expert cosine lies between mergekit's threshold and 1 - 1e-6 are lerped (slerped, they
    differed from mergekit by up to 3.7e-5), those below it slerped, and all agree with mergekit's merge."""
    merge = {"method": "slerp", "t": {"low": 0.2, "high": 0.8, "granularity": "component"}}
    case = Case(0, "slerp", "float32", 1, SMALL[0], merge, draw=5, seed=0, ties=False)
    result = run_case(case, tmp_path)
    between = [c for c in result.cosines if DOT_THRESHOLD < abs(c) <= OLD_THRESHOLD]
    assert len(between) >= 3 and any(abs(c) <= DOT_THRESHOLD for c in result.cosines), result.cosines
    assert not result.failures, "; ".join(result.failures[:5])


def _record(result: Result) -> None:
    """Append a --long case's record to `LONG_CASES_FILE` and rewrite `LONG_RESULT` from every recorded case."""
    c = result.case
    record = {"index": c.index, "method": c.method, "dtype": c.dtype, "k": c.k, "compiled": c.big,
              "tensors": result.tensors, "exact": result.exact, "max_abs_diff": result.max_diff,
              "share_of_allowed_ulps": result.max_ulps / allowed_ulps(c), "failures": result.failures[:3],
              "between_thresholds": sum(DOT_THRESHOLD < abs(x) <= OLD_THRESHOLD for x in result.cosines),
              "commit": _commit()}
    with LONG_CASES_FILE.open("a") as f:
        f.write(json.dumps(record) + "\n")
    records = {r["index"]: r for r in map(json.loads, LONG_CASES_FILE.read_text().splitlines())}
    LONG_RESULT.write_text(json.dumps(_table(list(records.values())), indent=2) + "\n")


def _table(records: list[dict[str, Any]]) -> dict[str, object]:
    rows: dict[str, dict[str, dict[str, float | int]]] = {}
    for r in sorted(records, key=lambda r: r["index"]):
        row = rows.setdefault(r["method"], {}).setdefault(r["dtype"], {
            "cases": 0, "compiled_cases": 0, "tensors": 0, "exact_cases": 0, "max_abs_diff": 0.0,
            "max_share_of_allowed_ulps": 0.0, "failed": 0})
        row["cases"] = int(row["cases"]) + 1
        row["compiled_cases"] = int(row["compiled_cases"]) + int(r["compiled"])
        row["tensors"] = int(row["tensors"]) + r["tensors"]
        row["exact_cases"] = int(row["exact_cases"]) + int(r["exact"])
        row["max_abs_diff"] = max(float(row["max_abs_diff"]), r["max_abs_diff"])
        row["max_share_of_allowed_ulps"] = max(float(row["max_share_of_allowed_ulps"]), r["share_of_allowed_ulps"])
        row["failed"] = int(row["failed"]) + int(bool(r["failures"]))
    indices = sorted(r["index"] for r in records)
    return {"draw": LONG_DRAW, "cases": len(records), "first_index": indices[0], "last_index": indices[-1],
            "failed": sum(bool(r["failures"]) for r in records),
            "slerp_tensors_between_thresholds": sum(r["between_thresholds"] for r in records),
            "torch": torch.__version__, "mergekit": _mergekit_version(),
            "commits": sorted({str(r.get("commit", "not recorded")) for r in records}), "methods": rows}


@cache
def _commit() -> str:
    """The checkout the run merged with (its commit, `-dirty` when a tracked file of the code, `CODE`, differs from
    it: not the results the run writes, nor the docs), so a table from an older engine shows as one."""
    root = Path(__file__).parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=30)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE], cwd=root,
                                 capture_output=True, text=True, timeout=30)
    except OSError:
        return "unknown"
    commit = head.stdout.strip() or "unknown"
    return commit + "-dirty" if changed.stdout.strip() else commit


def _mergekit_version() -> str:
    from importlib.metadata import version

    return version("mergekit")
