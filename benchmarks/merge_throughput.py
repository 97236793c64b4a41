"""Merge speed: our resident merge engine per candidate, against memory-copy bandwidth and against mergekit.

Builds (once, cached in benchmarks/.cache/) a synthetic Llama-shaped base of 134M parameters and 4 experts as
HF-style checkpoints, measures this machine's memory-copy bandwidth in the same run (`bandwidth.py`: at the start,
after each method and at the end; the highest figure is the denominator), then per method:
  - ours: `ResidentMerger.merge` per candidate, weights already resident (the first merge, which also sorts or
    ranks magnitudes once, is reported apart); bytes a merge must move / time, and that as % of memcpy: the best
    merge against the run's highest copy, and paired (each merge against the copy timed just before it, the
    median over the merges; `bandwidth.py` says why);
  - mergekit (in its own environment, benchmarks/.venv-mergekit): the same merge of the same checkpoints with
    the same configuration, per candidate; its time in `run_merge` and its wall time with process start;
  - for deterministic methods, the largest absolute difference between our merged tensors and mergekit's.
With `--no-ranks`, TIES, breadcrumbs and DELLA keep no magnitude ranks (the memory plan's choice where they do not
fit): each merge selects their cuts or ranks DELLA's rows, tensor by tensor, next to mergekit in the same run.
Writes benchmarks/results/merge_throughput.json.

    .venv/bin/python benchmarks/merge_throughput.py [--quick] [--setup] [--methods ties,slerp] [--repeats 5]
        [--no-ranks]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bandwidth import Links, Probe, paired, seconds  # noqa: E402
from merge_candidates import CANDIDATES, Candidate  # noqa: E402
from synthetic_llama import FULL, QUICK, ensure_checkpoints, model_names  # noqa: E402

from mergefront.evaluators.merge import ResidentMerger  # noqa: E402

CACHE = HERE / ".cache"
VENV = HERE / ".venv-mergekit"
SETUP = f'python3 -m venv {VENV} && {VENV}/bin/pip install "torch==2.13.0" mergekit'
GB = 1e9
RANKED = {"ties", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"}  # methods that rank magnitudes


@dataclass
class Row:
    method: str
    experts: int
    ours_s: float  # best of the repeats, per candidate
    ours_median_s: float
    ours_first_s: float  # first merge, with the one-time sort / rank of magnitudes
    ranks: str  # "kept" (ranked once), "select" (cuts selected / rows ranked each merge) or "-" (nothing ranked)
    bytes_per_merge: int
    gbps: float
    pct_memcpy: float  # the best merge against the run's highest copy
    pct_memcpy_paired: float  # median over the merges of each against the copy timed just before it
    resident_bytes_per_expert: int
    peak_extra_bytes: int | None  # resident-set growth during merges (temporaries), when the kernel reports it
    mergekit_s: float | None = None  # in run_merge (read, merge, write), process start excluded
    mergekit_wall_s: float | None = None  # the whole `python mergekit_merge.py` process
    speedup: float | None = None  # mergekit_s / ours_s
    max_abs_diff: float | None = None  # deterministic methods only
    bytes_formula: str = ""


def ensure_mergekit_env() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating mergekit's environment: {SETUP}", flush=True)
        subprocess.run(SETUP, shell=True, check=True)
    return python


def load_merger(folder: Path, n_experts: int, ranks: bool = True) -> tuple[ResidentMerger, float, float]:
    """A resident merger of the base and `n_experts` experts (magnitude ranks kept or not); seconds to read the
    files and to lay them out."""
    start = time.perf_counter()
    models = [load_file(str(folder / name / "model.safetensors")) for name in model_names(n_experts)]
    loaded = time.perf_counter()
    merger = ResidentMerger(models[0], models[1:], list(models[0]), device="cpu", ranks=ranks)
    return merger, loaded - start, time.perf_counter() - loaded


def _peak_rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def time_ours(merger: ResidentMerger, cand: Candidate, repeats: int, probe: Probe, moved: int
              ) -> tuple[float, list[float], list[float], int | None]:
    """Seconds of the first merge and of each later one (each right after a copy: `bandwidth.paired`), each later
    one's rate as a share of that copy's, and the resident-set growth during the later ones."""
    first = seconds(lambda: merger.merge(cand.ours(seed=0)), probe.device)
    can_peak = _peak_rss_reset()
    before = _rss("VmRSS")
    seeds = iter(range(repeats))
    times, shares = paired(lambda: merger.merge(cand.ours(seed=next(seeds))), moved, probe, repeats)
    merger.merge(cand.ours(seed=0))  # leave the seed-0 merge in the buffer
    return first, times, shares, (_rss("VmHWM") - before) if can_peak else None


def resident_per_expert(merger: ResidentMerger, cand: Candidate) -> int:
    """Bytes kept per expert for this method: its task vector, plus int32 magnitude ranks or row ranks."""
    per = merger.task_vectors[0].nbytes
    if cand.method in ("ties", "breadcrumbs", "breadcrumbs_ties"):
        per += sum(d.ranks.nbytes for d in merger._data if d.ranks is not None) // merger.n_experts
    if cand.method.startswith("della"):
        per += sum(d.row_rank.nbytes for d in merger._data if d.row_rank is not None) // merger.n_experts
    return per


def run_mergekit(python: Path, cand: Candidate, folder: Path) -> tuple[float, float, Path]:
    """mergekit's seconds in run_merge and for the whole process, and its output folder."""
    work = CACHE / "mergekit" / folder.name / cand.method
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yml"
    config.write_text(yaml.safe_dump(cand.mergekit_yaml(folder), sort_keys=False))
    out = work / "out"
    start = time.perf_counter()
    proc = subprocess.run([str(python), str(HERE / "mergekit_merge.py"), str(config), str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"mergekit failed on {cand.method}:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(result["merge_s"]), wall, out


def max_abs_diff(ours: dict[str, torch.Tensor], out: Path) -> float:
    theirs: dict[str, torch.Tensor] = {}
    for shard in sorted(out.glob("*.safetensors")):
        theirs.update(load_file(str(shard)))
    missing = set(ours) - set(theirs)
    if missing:
        raise RuntimeError(f"mergekit's output lacks {sorted(missing)[:3]}")
    return max(float((ours[k] - theirs[k].to(ours[k].dtype)).abs().max()) for k in ours)


def bench_method(merger: ResidentMerger, cand: Candidate, args: argparse.Namespace, memcpy: float, probe: Probe,
                 mergekit: tuple[Path, Path] | None) -> Row:
    """One method's row; `memcpy` is the run's best copy bandwidth so far (`main` recomputes % at the end)."""
    n = int(merger.base.numel())
    moved = cand.bytes_moved(n)
    first, times, shares, peak = time_ours(merger, cand, args.repeats, probe, moved)
    best = min(times)
    ranked = "-" if cand.method not in RANKED else "kept" if merger.ranks else "select"
    row = Row(cand.method, cand.n_experts, best, statistics.median(times), first, ranked, moved, moved / best / GB,
              100 * moved / best / GB / memcpy, 100 * statistics.median(shares), resident_per_expert(merger, cand),
              peak, bytes_formula=cand.bytes_formula)
    if mergekit is not None:
        python, folder = mergekit
        row.mergekit_s, row.mergekit_wall_s, out = run_mergekit(python, cand, folder)
        row.speedup = row.mergekit_s / best
        if cand.deterministic:
            row.max_abs_diff = max_abs_diff(merger.tensors(), out)
    return row


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row], memcpy: float) -> None:
    print(f"\nmemcpy bandwidth (torch copy_ of 512 MiB, read + write, best of 10, highest of the run): "
          f"{memcpy:.2f} GB/s; paired: each merge against the copy (best of 3) timed just before it, median")
    head = (f"{'method':<17}{'ranks':<7}{'ours s/merge':>13}{'GB/s':>8}{'% memcpy':>10}{'paired':>8}{'first s':>9}"
            f"{'MiB/expert':>11}"
            f"{'mergekit s':>11}{'(+start)':>9}{'speed-up':>10}{'max|diff|':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        diff = _fmt(r.max_abs_diff, ".1e") if r.max_abs_diff is not None else ("random" if r.mergekit_s else "-")
        print(f"{r.method:<17}{r.ranks:<7}{r.ours_s:>13.4f}{r.gbps:>8.2f}{r.pct_memcpy:>9.1f}%"
              f"{r.pct_memcpy_paired:>7.1f}%{r.ours_first_s:>9.3f}"
              f"{r.resident_bytes_per_expert / 2**20:>11.0f}{_fmt(r.mergekit_s, '.2f'):>11}"
              f"{_fmt(r.mergekit_wall_s, '.2f'):>9}{_fmt(r.speedup, '.0f') + 'x':>10}{diff:>11}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 3M-parameter model, for iteration only")
    parser.add_argument("--setup", action="store_true", help="create mergekit's environment, then exit")
    parser.add_argument("--no-mergekit", action="store_true", help="time our engine only")
    parser.add_argument("--methods", default=",".join(CANDIDATES), help="comma-separated method names")
    parser.add_argument("--repeats", type=int, default=5, help="timed merges per method (best is reported)")
    parser.add_argument("--no-ranks", action="store_true",
                        help="TIES, breadcrumbs and DELLA without kept ranks (cuts / row ranks each merge)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/, full run only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.setup:
        ensure_mergekit_env()
        return
    python = None if args.no_mergekit else ensure_mergekit_env()
    shape = QUICK if args.quick else FULL
    folder = ensure_checkpoints(shape, CACHE, n_experts=4)
    links = Links(torch.device("cpu"))
    links.measure()
    print(f"model: {shape.n_params() / 1e6:.1f}M parameters ({folder}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; memcpy {links.best():.2f} GB/s", flush=True)
    probe = Probe(torch.device("cpu"))
    rows, setup = run_all(args, folder, links, probe, python)
    links.measure()
    memcpy = links.best()  # the highest of the run is every row's denominator
    for r in rows:
        r.pct_memcpy = 100 * r.gbps / memcpy
    print_table(rows, memcpy)
    print("memcpy measured (GB/s, in order): " + ", ".join(f"{v:.1f}" for v in links.samples["device copy"]))
    out = args.out or (None if args.quick else HERE / "results" / "merge_throughput.json")
    if out is not None:
        write_json(out, shape.n_params(), links, probe, setup, rows)


def run_all(args: argparse.Namespace, folder: Path, links: Links, probe: Probe,
            python: Path | None) -> tuple[list[Row], dict[str, float]]:
    methods = [m for m in args.methods.split(",") if m]
    setup: dict[str, float] = {}
    rows: list[Row] = []
    for k in sorted({CANDIDATES[m].n_experts for m in methods}, reverse=True):
        merger, read_s, layout_s = load_merger(folder, k, ranks=not args.no_ranks)
        setup[f"read_{k}_experts_s"], setup[f"layout_{k}_experts_s"] = read_s, layout_s
        for m in (m for m in methods if CANDIDATES[m].n_experts == k):
            row = bench_method(merger, CANDIDATES[m], args, links.best(), probe,
                               (python, folder) if python else None)
            rows.append(row)
            after = links.measure()["device copy"]
            print(f"  {m}: ours {row.ours_s:.4f} s ({row.gbps:.2f} GB/s, paired {row.pct_memcpy_paired:.1f} % of "
                  f"memcpy), first {row.ours_first_s:.3f} s, "
                  f"mergekit {_fmt(row.mergekit_s, '.2f')} s, max|diff| {_fmt(row.max_abs_diff, '.1e')}; "
                  f"memcpy after it {after:.1f} GB/s", flush=True)
        del merger
    return rows, setup


def write_json(path: Path, n_params: int, links: Links, probe: Probe, setup: dict[str, float],
               rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"parameters": n_params, "memcpy_gbps": links.best(), "memcpy_samples_gbps": links.samples["device copy"],
           "memcpy_paired_samples_gbps": probe.samples,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
           "one_time_setup_s": setup, "rows": [asdict(r) for r in rows]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
