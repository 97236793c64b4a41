"""Memory plans: what one worker holds on its device and in host memory, and where (its placement).

Computed from checkpoint headers alone (`mergefront.evaluators.headers`), before anything is loaded, and light on
purpose (no torch): the API plans at submission, the worker again at start against its device's real memory.
`n` merged numbers of `s` bytes (the merge's dtype), `k` experts, `S` numbers in the largest merged tensor.

Placements, fastest first:

- ``resident``: base (`n`), task vectors (`k x n`) and output (`n`) on the device, plus magnitude ranks
  (`k x n` int32; DELLA: row ranks, int32 too) for TIES, breadcrumbs and DELLA when they fit; without them each merge
  works on the device one tensor at a time: TIES and breadcrumbs select each expert's magnitude cut (a histogram,
  no sort; `k x S` int32 kept windows), DELLA ranks the tensor's rows (`k x S` int32).
- ``stream``: the output on the device; base and task vectors in pinned host memory, copied to the device tensor
  by tensor into two staging buffers of `(k + 1) x S` (the next tensor's copy runs on a side stream while this one
  merges); cuts and row ranks per merge, as above.
- ``mmap``: the output on the device; base and experts stay in their memory-mapped files (the OS page cache keeps
  what fits) and are read tensor by tensor each merge, the task vectors formed on the device.

Besides the merge, a worker whose objectives run the model holds the base's unmerged tensors and an activation
allowance (see `activation_bytes`); every plan adds `RUNTIME_BYTES` for the allocator, kernels and the runtime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mergefront.errors import InvalidSpecError
from mergefront.evaluators.headers import TORCH_NAMES, TensorInfo

Placement = Literal["resident", "stream", "mmap"]
PLACEMENTS: tuple[Placement, ...] = ("resident", "stream", "mmap")
#: methods whose masks come from magnitude ranks or DELLA's row ranks (int32), kept when there is room
RANKED = frozenset({"ties", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"})
ROW_RANKED = frozenset({"della", "della_linear"})  # the rest of RANKED select magnitude cuts without ranks
ROW_BLOCK = 1 << 17  # entries DELLA sorts at a time (`methods.row_ranks.BLOCK`)
RUNTIME_BYTES = 512 * 2**20
BLOCK = 1 << 20  # entries per compiled merge call (`fused.STEP`): each holds a few blocks of temporaries
GB = 1e9

WHAT = {"resident": "everything resident on the device",
        "stream": "base and task vectors in pinned host memory, streamed to the device tensor by tensor",
        "mmap": "base and experts memory-mapped from disk, read tensor by tensor each merge"}


@dataclass(frozen=True)
class Workload:
    """What one worker merges and runs: sizes from the headers, the method, and the model's allowance."""

    numel: int  # n: merged numbers
    largest: int  # S: numbers in the largest merged tensor
    n_experts: int  # k
    method: str
    dtype: str  # the merge's dtype (the base's, as torch names it)
    other_bytes: int = 0  # the base's unmerged tensors, on the device when the model runs
    activation_bytes: int = 0  # the evaluator's activations and KV cache (0: no model runs)

    @property
    def itemsize(self) -> int:
        return {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}.get(self.dtype, 4)


@dataclass(frozen=True)
class Need:
    """What one placement takes: `device` and `host` as (what, bytes) items; `link` bytes copied per merge."""

    placement: Placement
    ranks: bool  # precomputed ranks kept (False: thresholds are selected per merge)
    device: tuple[tuple[str, int], ...]
    host: tuple[tuple[str, int], ...]
    link: int

    @property
    def device_bytes(self) -> int:
        return sum(b for _, b in self.device)

    @property
    def host_bytes(self) -> int:
        return sum(b for _, b in self.host)


@dataclass(frozen=True)
class MemoryPlan:
    """The placement chosen for a worker, against its limits (None: not known here), and the other options."""

    workload: Workload
    need: Need
    options: tuple[Need, ...]
    device_limit: int | None
    host_limit: int | None
    device_kind: str = "cuda"

    @property
    def placement(self) -> Placement:
        return self.need.placement

    def describe(self) -> str:
        """A few lines: the chosen placement's totals against the limits, then every option's totals."""
        w, need = self.workload, self.need
        host_word = "pinned" if need.placement == "stream" and self.device_kind != "cpu" else "in host memory"
        select = "" if need.ranks or w.method not in RANKED else \
            "; rows ranked per merge" if w.method in ROW_RANKED else "; magnitude cuts selected per merge"
        lines = [f"memory plan ({w.n_experts} experts, {w.numel / 1e9:.3g}B merged numbers in {w.dtype}, "
                 f"{w.method}): per worker: device {_gb(need.device_bytes)}{_of(self.device_limit)}, host "
                 f"{_gb(need.host_bytes)} {host_word}{_of(self.host_limit)}; placement: {need.placement} "
                 f"({WHAT[need.placement]}{select})"]
        for option in self.options:
            ranks = " with ranks" if option.ranks else ""
            lines.append(f"  {option.placement + ranks:<18} device {_gb(option.device_bytes):>9}  host "
                         f"{_gb(option.host_bytes):>9}  copied per merge {_gb(option.link):>9}")
        return "\n".join(lines)


def _gb(nbytes: int) -> str:
    return f"{nbytes / GB:.3g} GB" if nbytes >= 0.01 * GB else f"{nbytes / 1e6:.3g} MB"


def _of(limit: int | None) -> str:
    return "" if limit is None else f" of {_gb(limit)}"


def workload_of(tensors: Mapping[str, TensorInfo], merged_keys: Sequence[str], n_experts: int, method: str,
                activation_bytes: int = 0, runs_model: bool = False) -> Workload:
    """The workload of merging `merged_keys` of a base whose headers are `tensors`."""
    merged = [tensors[k] for k in merged_keys]
    dtypes = {t.dtype for t in merged}
    dtype = TORCH_NAMES.get(next(iter(dtypes)), "float32") if len(dtypes) == 1 else "float32"
    keys = set(merged_keys)
    other = sum(t.nbytes for name, t in tensors.items() if name not in keys) if runs_model else 0
    return Workload(sum(t.numel for t in merged), max((t.numel for t in merged), default=0), n_experts, method,
                    dtype, other, activation_bytes)


def needs(w: Workload) -> list[Need]:
    """Every placement's needs, fastest first (resident with ranks where the method uses them)."""
    n, k, s, big = w.numel, w.n_experts, w.itemsize, w.largest
    model = [("model's unmerged tensors", w.other_bytes), ("activations (allowance)", w.activation_bytes),
             ("allocator and kernels", RUNTIME_BYTES)]
    out = [("output (the merged model)", n * s)]
    staging = [("staging, 2 x (k + 1) tensors", 2 * (k + 1) * big * s)]
    loading = [("loading, one tensor at a time", 2 * big * 4)]
    options: list[Need] = []
    for ranks in ((True, False) if w.method in RANKED else (False,)):
        device = [("base", n * s), ("task vectors", k * n * s), *out, *_ranks_or_selection(w, ranks), *model]
        options.append(Need("resident", ranks, tuple(d for d in device if d[1]), tuple(loading), 0))
    moved = (k + 1) * n * s
    stream_device = tuple(d for d in (*out, *staging, *_ranks_or_selection(w, False), *model) if d[1])
    options.append(Need("stream", False, stream_device, (("base and task vectors, pinned", moved), *loading), moved))
    options.append(Need("mmap", False, stream_device, tuple(loading), moved))
    return options


def _ranks_or_selection(w: Workload, ranks: bool) -> list[tuple[str, int]]:
    """Ranks kept for the whole model, or the temporaries of selecting one tensor's thresholds per merge; and the
    merge's own temporaries (a few compiled blocks; SLERP's angle once in float64)."""
    n, k, s, big = w.numel, w.n_experts, w.itemsize, w.largest
    items = [("merge temporaries", BLOCK * (k + 4) * 8)]
    if w.method == "slerp":
        items.append(("SLERP's angle (first merge)", big * 16))
    if w.method not in RANKED:
        return items
    if ranks:
        return [("ranks", k * n * 4), *items]
    if w.method in ROW_RANKED:  # int32 row ranks; a block of rows sorted at a time: magnitudes, int64 keys, the
        # sort's keys, indices and two buffers of both, the rank positions and the row prefix
        return [("row ranks of one tensor per merge", k * big * 4),
                ("sorting rows, a block at a time", min(big, ROW_BLOCK) * (s + 8 * 8 + 4 + 8)), *items]
    # int32 kept windows; one expert's magnitudes, float32's high halves, two masks and a comparison
    return [("kept windows of one tensor per merge", k * big * 4), ("selecting one expert's cut", big * (s + 7)),
            *items]


def plan(w: Workload, *, device_limit: int | None = None, host_limit: int | None = None,
         placement: str = "auto", device_kind: str = "cuda") -> MemoryPlan:
    """The fastest placement that fits the limits (or the one asked for); InvalidSpecError with the numbers when
    none does. On a CPU worker the device's memory is host memory: both count against `host_limit`."""
    options = needs(w)
    asked = [o for o in options if placement in ("auto", o.placement)]
    for option in asked:
        if _fits(option, device_limit, host_limit, device_kind):
            return MemoryPlan(w, option, tuple(options), device_limit, host_limit, device_kind)
    smallest = min(asked, key=lambda o: (o.device_bytes, o.host_bytes))
    raise InvalidSpecError(_refusal(w, asked, placement, device_limit, host_limit),
                           ("resources", "device_memory" if not _fits_device(smallest, device_limit) else
                            "host_memory"))


def _fits_device(need: Need, device_limit: int | None) -> bool:
    return device_limit is None or need.device_bytes <= device_limit


def _fits(need: Need, device_limit: int | None, host_limit: int | None, device_kind: str) -> bool:
    host = need.host_bytes + (need.device_bytes if device_kind == "cpu" else 0)
    return _fits_device(need, device_limit) and (host_limit is None or host <= host_limit)


def _refusal(w: Workload, asked: list[Need], placement: str, device_limit: int | None, host_limit: int | None) -> str:
    tried = "; ".join(f"{o.placement}{' with ranks' if o.ranks else ''} needs device {_gb(o.device_bytes)}, host "
                      f"{_gb(o.host_bytes)}" for o in asked)
    what = "no placement fits" if placement == "auto" else f"placement {placement} does not fit"
    limits = ", ".join(f"{name} {_gb(v)}" for name, v in (("device", device_limit), ("host", host_limit))
                       if v is not None)
    return (f"{what} the worker's memory ({limits}): {w.n_experts} experts of {w.numel / 1e9:.3g}B merged numbers "
            f"in {w.dtype} with {w.method}: {tried}. Give workers more memory (resources.device_memory, "
            "resources.host_memory), merge fewer experts or tensors, or use a smaller dtype")


def activation_bytes(config: Mapping[str, Any], batch: int, tokens: int, itemsize: int) -> int:
    """An allowance for one forward pass of a transformer with this `config.json` over `batch` sequences of
    `tokens`: float32 logits twice (softmax), the KV cache of every layer, one layer's activations (attention and
    MLP) and its attention scores. 0 when the config names no transformer sizes."""
    hidden = int(config.get("hidden_size") or config.get("n_embd") or 0)
    if hidden <= 0:
        return 0
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 1)
    heads = int(config.get("num_attention_heads") or config.get("n_head") or 1)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    inter = int(config.get("intermediate_size") or 4 * hidden)
    vocab = int(config.get("vocab_size") or 0)
    t = batch * tokens
    logits = t * vocab * 4 * 2
    kv_cache = 2 * layers * t * kv_heads * (hidden // heads) * itemsize
    layer = t * (4 * hidden + 3 * inter) * itemsize + batch * heads * tokens * tokens * 4
    return logits + kv_cache + layer


def read_config(base: Path) -> dict[str, Any]:
    """The base's `config.json` (an empty mapping for a plain safetensors file or an unreadable config)."""
    path = base / "config.json" if base.is_dir() else base.parent / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def host_available() -> int | None:
    """Host memory this process may still take: the kernel's MemAvailable, or less where a cgroup (a container)
    limits it; None where neither can be read."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None
