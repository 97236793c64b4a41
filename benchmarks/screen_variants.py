"""Screening: a few seeds of optimizer variants on the sample-efficiency problems, stopped early, nothing kept.

A variant is a method of benchmarks/sample_efficiency.py, or one with attributes set on the optimizer it builds,
written `base:attribute=value:attribute=value` (values read as JSON where they parse, else as strings), e.g.
`hybrid:refine=0.25:refine_radius=0.2`. Each run stops after `--stop` evaluations (default 36) and is cached
under benchmarks/.cache/ (not in git; delete a variant's files there after changing the code it runs), so a killed
screen resumes. The report: per variant its mean hypervolume fraction (of the kept reference front, scored as the
sample-efficiency benchmark scores it) at 16 and 32 evaluations and at the stop, each seed's at 32, and the
evaluations its mean curve needs to reach the best peer's mean HV@64 kept in benchmarks/results/
sample_efficiency.json; the kept runs of `--against` methods on the same seeds, cut at the stop, are shown beside.
Nothing is written to benchmarks/results: winners are confirmed there with full runs.

    .venv/bin/python benchmarks/screen_variants.py --problems dare_linear-4-2obj \\
        --variants hybrid:refine=0.25 --seeds 3 [--stop 36] [--against hybrid,hybrid-refine]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import sample_efficiency  # noqa: E402
from sample_efficiency import CACHE, PARTIAL, RESULTS, evaluations_to, hv_curve, run_ours, run_record  # noqa: E402
from search_problems import open_problem, reference_front  # noqa: E402

from mergefront.service.settings import Settings  # noqa: E402

SCREEN = PARTIAL / "screen"


def parse_variant(variant: str) -> tuple[str, dict[str, object]]:
    """`base:key=value:...` -> the base method and the attributes to set on its optimizer."""
    base, *pairs = variant.split(":")
    attributes: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{variant!r}: {pair!r} is not attribute=value")
        try:
            attributes[key] = json.loads(raw)
        except json.JSONDecodeError:
            attributes[key] = raw
    return base, attributes


def screened_run(problem, variant: str, seed: int, stop: int) -> dict:  # type: ignore[no-untyped-def]
    """One variant's run of `stop` evaluations, as a record `hv_curve` scores (cached in SCREEN)."""
    path = SCREEN / "runs" / f"{problem.name}-{variant}-{seed}.json"
    if path.exists():
        record = dict(json.loads(path.read_text()))
        if len(record["Y"]) >= stop:
            return {k: v[:stop] if isinstance(v, list) else v for k, v in record.items()}
    base, attributes = parse_variant(variant)
    sample_efficiency.OPTIMIZERS[variant] = sample_efficiency.OPTIMIZERS.get(base, {"name": base})
    sample_efficiency.VARIANTS[variant] = {**sample_efficiency.VARIANTS.get(base, {}), **attributes}
    record = run_record(problem, *run_ours(problem, variant, seed, stop))  # unfinished: goes on from PARTIAL's file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def _row(label: str, curves: np.ndarray, stop: int, peer: float | None, seconds: float | None) -> str:
    """One line of the report; `curves` is `seeds x stop`."""
    mean = curves.mean(axis=0)
    hit = None if peer is None else evaluations_to(list(mean), peer - 1e-12)
    to_peer = "-" if peer is None else (f">{stop}" if hit is None else str(hit))
    per_seed = " ".join(f"{v:.3f}" for v in curves[:, 31]) if stop >= 32 else ""
    cost = "" if seconds is None else f"  {seconds:.1f} s/run"
    return (f"  {label:<48} hv16 {mean[15]:.3f}  hv32 {mean[31] if stop >= 32 else float('nan'):.3f}  "
            f"hv{stop} {mean[stop - 1]:.3f}  to peer {to_peer:>4}  (hv32 per seed {per_seed}){cost}")


def screen(problems: list[str], variants: list[str], seeds: int, stop: int, against: list[str]) -> None:
    kept = json.loads((RESULTS / "sample_efficiency.json").read_text())["problems"]
    cache = Settings().resolved_cache_dir
    for name in problems:
        problem = open_problem(name, cache)
        _, ref_Y = reference_front(problem, CACHE)
        ref_hv = problem.hypervolume(ref_Y)
        entry = kept.get(name, {})
        peer = entry.get("best_peer", {}).get("hv_64")
        print(f"{name}: best peer {entry.get('best_peer', {}).get('method')} at HV@64 {peer}", flush=True)
        for method in against:
            r = entry.get("methods", {}).get(method)
            if r is None:
                continue
            rows = [i for i, s in enumerate(r["seeds"]) if s < seeds]
            scale = entry["reference_hypervolume"] / ref_hv
            curves = np.asarray(r["curves"])[rows, :stop] * scale
            print(_row(f"{method} (kept)", curves, stop, peer, None), flush=True)
        for variant in variants:
            records = [screened_run(problem, variant, seed, stop) for seed in range(seeds)]
            curves = np.asarray([hv_curve(problem, r, ref_hv) for r in records])
            seconds = float(np.mean([r["proposal_seconds"] for r in records]))
            print(_row(variant, curves, stop, peer, seconds), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", required=True, help="comma-separated problems")
    parser.add_argument("--variants", required=True, help="comma-separated variants (base:attribute=value:...)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--stop", type=int, default=36, help="evaluations per run (at least 16)")
    parser.add_argument("--against", default="hybrid,hybrid-refine,hybrid-refine-wide",
                        help="kept methods shown beside, on the same seeds")
    args = parser.parse_args(argv)
    if args.stop < 16:
        parser.error("--stop must be at least 16")
    screen(args.problems.split(","), args.variants.split(","), args.seeds, args.stop,
           [m for m in args.against.split(",") if m])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
