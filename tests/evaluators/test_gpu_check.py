"""`benchmarks/gpu_check.sh`, the one call a lent GPU machine gets, runs its every step on the CPU (CI has no GPU):
placements timed against their links (paired and against the run's highest copy), a tinylm candidate scored on
the device and on the CPU, the JSON written naming the device."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_its_steps_on_the_cpu(cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--size", "quick",
         "--methods", "task_arithmetic,ties", "--suite-root", str(cache_dir), "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] and result["dtype"] == "bfloat16" and result["experts"] == 4
    rows = {(r["placement"], r["method"], r["ranks"]) for r in result["rows"]}
    assert rows == {("resident", "task_arithmetic", False), ("resident", "ties", True), ("resident", "ties", False),
                    ("stream", "task_arithmetic", False), ("stream", "ties", False)}
    for r in result["rows"]:
        assert r["seconds"] > 0 and r["bytes_moved"] > 0, r
        assert math.isfinite(r["pct_link"]) and math.isfinite(r["pct_link_paired"]) and r["pct_link_paired"] > 0, r
    copies = result["paired_copies_gbps"]  # a copy before each timed merge; on a CPU every row is bound by memory
    assert len(copies["device copy"]) == 3 * len(result["rows"]) and copies["host-to-device copy"] == []
    assert set(result["targets_met"]) == {"resident task_arithmetic", "stream task_arithmetic"}
    assert set(result["tinylm"]) == {"task_arithmetic", "ties", "dare_linear"}
    assert result["tinylm_scores_agree"] is True
