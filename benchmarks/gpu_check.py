"""The GPU check: merge throughput per placement on CUDA against the links that bound it, and one bench://tinylm
candidate scored on CUDA as on the CPU. Needs torch, transformers and safetensors (and pydantic and httpx, which
`gpu_check.sh` installs from `benchmarks/.wheels` when they are missing); no Ray, no database.

1. Device-copy and host-to-device bandwidth, then per method (`--methods`) and placement (resident, stream) on
   a synthetic Llama-shaped model of `--size` (1b: 1.26B parameters) with 4 experts in bfloat16: seconds per
   merge and its rate against the link that bounds it (`placement_throughput.py` does the measuring).
2. A tinylm candidate per method evaluated by `CandidateEvaluator` on CUDA and on the CPU: accuracies equal,
   losses within 1e-4 (float32 reductions add in another order on a GPU).
3. Everything to `benchmarks/results/gpu_check.json`, naming the device; targets: resident task arithmetic
   >= 70 % of the device copy, stream >= 70 % of host-to-device (paired: each merge against its link's copy
   timed just before it, the median; the JSON also has each row against the run's highest copy).

    benchmarks/gpu_check.sh [--device cuda] [--size 1b]     # the whole check (at most 8 minutes)
    benchmarks/gpu_check.sh --device cpu --size quick        # the same steps on a CPU, to try it
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import placement_throughput  # noqa: E402

from mergefront.evaluators.evaluation import Candidate, CandidateEvaluator, ObjectiveSetup, WorkerSetup  # noqa: E402
from mergefront.evaluators.merge import MergeConfig  # noqa: E402

TARGET = 70.0
TINYLM_CANDIDATES = (MergeConfig("task_arithmetic", params={"weight": (0.7, 0.4)}),
                     MergeConfig("ties", params={"weight": (0.9, 0.6), "density": (0.4, 0.7)}, seed=3),
                     MergeConfig("dare_linear", params={"weight": (0.8, 0.5), "density": (0.5, 0.6)}, seed=4))


def tinylm_scores(suite_root: Path, device: str) -> dict[str, dict[str, dict[str, float]]]:
    """Each candidate's metrics on `device` and on the CPU (the suite is built into `suite_root` if missing)."""
    from mergefront.evaluators.suites.tinylm import ensure_built

    suite = ensure_built(suite_root, verbose=False)
    objectives = (ObjectiveSetup("copy", "copy"), ObjectiveSetup("reverse", "reverse"),
                  ObjectiveSetup("copy_loss", "copy", metric="loss"))
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for where in dict.fromkeys((device, "cpu")):
        worker = CandidateEvaluator(WorkerSetup.for_suite("tinylm", suite, ("copy", "reverse"), objectives, where))
        for i, merge in enumerate(TINYLM_CANDIDATES):
            scores.setdefault(merge.method, {})[where] = worker.evaluate(Candidate(i, merge)).metrics
    return scores


def scores_agree(scores: dict[str, dict[str, dict[str, float]]]) -> bool:
    for by_device in scores.values():
        first, *others = by_device.values()
        for other in others:
            for key, value in first.items():
                tolerance = 1e-4 * max(1.0, abs(value)) if key.endswith("loss") else 0.0
                if abs(other[key] - value) > tolerance:
                    return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="1b", choices=["quick", "full", "1b", "3b", "7b"])
    parser.add_argument("--methods", default="task_arithmetic,ties,dare_linear,della")
    parser.add_argument("--placements", default="resident,stream")
    parser.add_argument("--suite-root", type=Path, default=HERE / ".cache" / "suites")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: results/gpu_check.json on CUDA, .cache/gpu_check_cpu.json (not kept) else")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = HERE / "results" / "gpu_check.json" if args.device.startswith("cuda") else \
            HERE / ".cache" / "gpu_check_cpu.json"
    start = time.perf_counter()
    bench = placement_throughput.run(placement_throughput.parse_args(
        ["--device", args.device, "--size", args.size, "--dtype", "bfloat16", "--methods", args.methods,
         "--placements", args.placements, "--repeats", "3"]))
    rows = bench["rows"]
    assert isinstance(rows, list)
    scores = tinylm_scores(args.suite_root, args.device)
    targets = {f"{r['placement']} {r['method']}": r["pct_link_paired"] >= TARGET for r in rows
               if r["method"] == "task_arithmetic"}  # paired: each merge against its link's copy just before it
    result = {**bench, "tinylm": scores, "tinylm_scores_agree": scores_agree(scores), "targets_pct": TARGET,
              "targets_met": targets, "seconds": time.perf_counter() - start}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\ntinylm on {args.device} scores as on the CPU: {result['tinylm_scores_agree']}; targets (>= {TARGET:g} % "
          f"of the bounding link): {targets}; {result['seconds']:.0f} s; wrote {args.out}")
    return 0 if result["tinylm_scores_agree"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
