"""Copy bandwidth, measured one way for every merge benchmark (merge_throughput, placement_throughput, the GPU check).

A merge's rate (the bytes it must move / its best time) is compared with the copy bandwidth of the link that bounds
it, measured in the same process, with the same threads, in the same run:
  - device copy: `dst.copy_(src)` of a 512 MiB float32 buffer in device memory, (bytes read + bytes written) / time;
  - host-to-device copy: the same copy from (pinned) host memory into device memory, bytes copied / time (on a
    CPU, from one host buffer into another).
Each measurement is the best of 10 copies (one untimed before). A benchmark measures at its start, after each
method (or placement) and at its end, and divides by the highest figure of the run (`Links.best`): a copy timed
while other processes loaded this shared machine never makes a merge look faster than it is.

On a shared host the copy's own figure moves by 2x within minutes, so a merge timed at one moment against the
copy at another says little. Each benchmark therefore also pairs them (`Probe`): before every timed merge it
times the link's copy (best of 3, buffers kept), and reports the median over the merges of (the merge's rate /
the copy's rate just before it): both figures taken under the same load.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

GB = 1e9
NBYTES = 512 * 2**20
DEVICE_COPY = "device copy"
HOST_TO_DEVICE = "host-to-device copy"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of `fn`, the device's queued work finished before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def best_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float]:
    """Seconds of a first call, and the best of `repeats` later ones."""
    times = [seconds(fn, device) for _ in range(repeats + 1)]
    return times[0], min(times[1:])


def device_copy_gbps(device: torch.device, nbytes: int = NBYTES) -> float:
    """Device memory bandwidth: (bytes read + bytes written) / time of a `copy_`, best of 10."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    return 2 * nbytes / best_seconds(lambda: dst.copy_(src), device, 10)[1] / GB


def host_to_device_gbps(device: torch.device, nbytes: int = NBYTES) -> float:
    """Bytes copied per second from pinned host memory to the device (on a CPU: from one host buffer to another)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, pin_memory=device.type == "cuda").uniform_()
    dst = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    return nbytes / best_seconds(lambda: dst.copy_(src, non_blocking=True), device, 10)[1] / GB


class Probe:
    """One link's copy with its buffers kept, to time right before each timed merge (paired ratios)."""

    def __init__(self, device: torch.device, link: str = DEVICE_COPY, nbytes: int = NBYTES) -> None:
        self.device, self.link = device, link
        host = link == HOST_TO_DEVICE
        self.src = torch.empty(nbytes // 4, dtype=torch.float32, device="cpu" if host else device,
                               pin_memory=host and device.type == "cuda").uniform_()
        self.dst = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
        self.dst.copy_(self.src)  # touched now: its pages never count in a merge's peak memory
        self.moved = nbytes if host else 2 * nbytes  # host-to-device: bytes copied; device: read + written
        self.samples: list[float] = []

    def gbps(self, repeats: int = 3) -> float:
        """The link's rate now (best of `repeats` copies, one untimed before), kept in `samples`."""
        rate = self.moved / best_seconds(lambda: self.dst.copy_(self.src, non_blocking=True), self.device,
                                         repeats)[1] / GB
        self.samples.append(rate)
        return rate


def paired(fn: Callable[[], object], moved: int, probe: Probe, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of each of `repeats` calls of `fn`, each timed right after the probe's copy; and per call, its rate
    (`moved` bytes / seconds) as a share of that copy's rate."""
    times, shares = [], []
    for _ in range(repeats):
        link = probe.gbps()
        times.append(seconds(fn, probe.device))
        shares.append(moved / times[-1] / GB / link)
    return times, shares


class Links:
    """The copy bandwidths of one run: every measurement kept, the highest used."""

    def __init__(self, device: torch.device, names: tuple[str, ...] = (DEVICE_COPY,)) -> None:
        self.device = device
        self.samples: dict[str, list[float]] = {name: [] for name in names}

    def measure(self) -> dict[str, float]:
        """Measure every link once more; this measurement's figures (GB/s)."""
        now = {DEVICE_COPY: device_copy_gbps, HOST_TO_DEVICE: host_to_device_gbps}
        figures = {name: now[name](self.device) for name in self.samples}
        for name, value in figures.items():
            self.samples[name].append(value)
        return figures

    def best(self, name: str = DEVICE_COPY) -> float:
        return max(self.samples[name])

    def summary(self) -> dict[str, dict[str, float | list[float]]]:
        return {name: {"best_gbps": max(values), "samples_gbps": values} for name, values in self.samples.items()}
