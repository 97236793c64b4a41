"""Merge speed per placement: seconds per merge, bytes moved, and the bandwidth of the link that bounds each.

For each method and placement (`mergefront.evaluators.stores`): our `ResidentMerger.merge` per candidate (the
first merge, which also compiles kernels and ranks magnitudes, apart), the bytes it must move, and their rate
against the link that bounds it, measured in the same run:
  - resident: base, task vectors and output in device memory: (k + 2) x n x s bytes read and written per merge
    (plus the kept ranks, k x n x 4, for TIES, breadcrumbs and DELLA), against the device's copy bandwidth (torch
    `copy_`, read + write). TIES, breadcrumbs and DELLA run twice: with ranks kept ("kept") and without
    ("select": each merge selects TIES' and breadcrumbs' magnitude cuts and ranks DELLA's rows, tensor by tensor),
    the trade-off between seconds per merge and memory;
  - stream: base and task vectors cross from pinned host memory each merge: (k + 1) x n x s bytes, against the
    host-to-device copy bandwidth (bytes copied per second). On a CPU there is no such link: the host block is the
    device's memory and is read in place, so the bound is the memory bus, as for resident ((k + 2) x n x s bytes
    against the read + write copy bandwidth); `stream-staged` times the copy a GPU makes (into staging buffers,
    with no overlap on a CPU), against the host-to-device copy (on a CPU, one host buffer to another);
  - mmap: the same (k + 1) x n x s bytes read from the memory-mapped files (page cache) each merge, against the
    host-to-device copy.
Both links are measured as `bandwidth.py` says (at the start, after each placement and at the end; each row is
divided by the highest figure of the run), and each timed merge is also paired with its link's copy timed just
before it (`% paired`: the median over the merges of the merge's rate against that copy's). Plus the peak
device memory (CUDA: the allocator's peak; CPU: the process's peak resident set growth, which is also the host's)
per placement. Models are the synthetic Llama of `synthetic_llama.py`, generated on the fly (`--size 1b` and up
for a GPU), in memory for resident and stream, as files for mmap.

    .venv/bin/python benchmarks/placement_throughput.py [--device cuda] [--size 1b] [--dtype bfloat16]
        [--methods task_arithmetic,ties] [--placements resident,stream,stream-staged,mmap] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bandwidth import DEVICE_COPY, HOST_TO_DEVICE, Links, Probe, paired, seconds  # noqa: E402
from merge_candidates import CANDIDATES, Candidate  # noqa: E402
from synthetic_llama import FULL, QUICK, SIZES, ensure_checkpoints, synthetic_models  # noqa: E402

from mergefront.evaluators.checkpoint import LazyCheckpoint  # noqa: E402
from mergefront.evaluators.merge import ResidentMerger  # noqa: E402

CACHE = HERE / ".cache"
GB = 1e9
PLACEMENTS = ("resident", "stream", "stream-staged", "mmap")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Row:
    method: str
    placement: str
    experts: int
    ranks: bool  # magnitude ranks kept (resident), else ranked per merge
    seconds: float  # best of the repeats
    first_seconds: float
    bytes_moved: int
    link: str  # "device copy" or "host-to-device copy"
    link_gbps: float
    gbps: float
    pct_link: float  # the best merge against the run's highest copy of its link
    pct_link_paired: float  # median over the merges of each against its link's copy timed just before it
    peak_device_bytes: int | None
    peak_host_bytes: int | None


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peaks(device: torch.device, host_before: int) -> tuple[int | None, int | None]:
    host = _vm("VmHWM") - host_before
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), host
    return host, host  # a CPU's device memory is the host's


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def build(placement: str, models: tuple[dict, list[dict]] | None, folder: Path | None, k: int,
          device: torch.device, ranks: bool) -> ResidentMerger:
    kind = "stream" if placement.startswith("stream") else placement
    staging = True if placement == "stream-staged" else None
    if placement == "mmap":
        assert folder is not None
        names = ["base", *(f"expert{i}" for i in range(k))]
        base, *experts = [LazyCheckpoint(folder / name) for name in names]
    else:
        assert models is not None
        base, experts = models[0], models[1][:k]
    return ResidentMerger(base, experts, list(base), device, placement=kind, ranks=ranks, staging=staging)


def bench(args: argparse.Namespace, placement: str, cand: Candidate, merger: ResidentMerger,
          links: Links, probes: dict[str, Probe], device: torch.device, host_before: int) -> Row:
    n, s, k = merger.out.numel(), merger.out.element_size(), cand.n_experts
    if placement == "resident" or (placement == "stream" and device.type == "cpu"):  # read in place on a CPU
        moved, link = (k + 2) * n * s + (k * n * 4 if merger.ranks and cand.method in RANKED else 0), DEVICE_COPY
    else:
        moved, link = (k + 1) * n * s, HOST_TO_DEVICE
    first = seconds(lambda: merger.merge(cand.ours(seed=1)), device)
    times, shares = paired(lambda: merger.merge(cand.ours(seed=1)), moved, probes[link], args.repeats)
    best = min(times)
    device_peak, host_peak = peaks(device, host_before)
    gbps = moved / best / GB
    return Row(cand.method, placement, k, merger.ranks, best, first, moved, link, links.best(link), gbps,
               100 * gbps / links.best(link), 100 * statistics.median(shares), device_peak, host_peak)


RANKED = {"ties", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"}


def run(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device(args.device)
    shape = {"quick": QUICK, "full": FULL, **SIZES}[args.size]
    dtype = DTYPES[args.dtype]
    methods = [m for m in args.methods.split(",") if m]
    placements = [p for p in args.placements.split(",") if p]
    links = Links(device, (DEVICE_COPY, HOST_TO_DEVICE))
    links.measure()
    print(f"model: {shape.n_params() / 1e9:.3g}B parameters x (1 + {args.experts}), {args.dtype}, on {device} "
          f"({device_name(device)}); device copy {links.best(DEVICE_COPY):.1f} GB/s, host-to-device "
          f"{links.best(HOST_TO_DEVICE):.1f} GB/s", flush=True)
    models = synthetic_models(shape, args.experts, dtype, device) if set(placements) - {"mmap"} else None
    folder = ensure_checkpoints(shape, CACHE, args.experts, dtype=dtype) if "mmap" in placements else None
    probes = {name: Probe(device, name) for name in (DEVICE_COPY, HOST_TO_DEVICE)}
    rows = []
    for placement in placements:
        rows += _placement_rows(args, placement, methods, models, folder, links, probes, device)
        links.measure()
    for r in rows:  # every row against the highest figure of the run
        r.link_gbps = links.best(r.link)
        r.pct_link = 100 * r.gbps / r.link_gbps
    print_table(rows)
    return {"device": device_name(device), "torch": torch.__version__, "machine": platform.machine(),
            "threads": torch.get_num_threads(), "parameters": shape.n_params(), "experts": args.experts,
            "dtype": args.dtype, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "links_gbps": {name: links.best(name) for name in links.samples}, "links": links.summary(),
            "paired_copies_gbps": {name: probe.samples for name, probe in probes.items()},
            "rows": [asdict(r) for r in rows]}


def _placement_rows(args: argparse.Namespace, placement: str, methods: list[str], models: tuple | None,
                    folder: Path | None, links: Links, probes: dict[str, Probe], device: torch.device
                    ) -> list[Row]:
    rows = []
    for k in sorted({CANDIDATES[m].n_experts for m in methods}, reverse=True):
        for ranks in ((True, False) if placement == "resident" and RANKED & set(methods) else (False,)):
            peak_reset(device)
            host_before = _vm("VmRSS")
            merger = build(placement, models, folder, k, device, ranks)
            for m in methods:
                if CANDIDATES[m].n_experts != k or (ranks and m not in RANKED):
                    continue
                row = bench(args, placement, CANDIDATES[m], merger, links, probes, device, host_before)
                rows.append(row)
                print(f"  {placement:<13} {m:<17} {_ranks(row):<7}{row.seconds:8.4f} s  "
                      f"{row.gbps:7.2f} GB/s  {row.pct_link:5.1f} % of {row.link} ({row.pct_link_paired:.1f} % "
                      f"paired)  first {row.first_seconds:.2f} s",
                      flush=True)
            del merger
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _ranks(row: Row) -> str:
    """Kept ranks, cuts selected / rows ranked per merge, or nothing to rank."""
    return "kept" if row.ranks else "select" if row.method in RANKED else "-"


def _gb(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / GB:.2f}"


def print_table(rows: list[Row]) -> None:
    head = (f"{'placement':<14}{'method':<18}{'ranks':<7}{'s/merge':>9}{'first s':>9}{'GB/s':>8}{'% link':>8}"
            f"{'paired':>8}"
            f"{'peak dev GB':>12}{'peak host GB':>13}  link")
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r.placement:<14}{r.method:<18}{_ranks(r):<7}{r.seconds:>9.4f}{r.first_seconds:>9.2f}{r.gbps:>8.2f}"
              f"{r.pct_link:>7.1f}%{r.pct_link_paired:>7.1f}%{_gb(r.peak_device_bytes):>12}"
              f"{_gb(r.peak_host_bytes):>13}  "
              f"{r.link} ({r.link_gbps:.1f} GB/s)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", default="full", choices=["quick", "full", *SIZES],
                        help="quick 3.7M, full 134M, 1b 1.26B, 3b 3.43B, 7b 6.74B parameters")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--methods", default="task_arithmetic,ties,dare_linear,della,model_stock")
    parser.add_argument("--placements", default="resident,stream,stream-staged,mmap")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

