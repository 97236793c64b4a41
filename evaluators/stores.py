"""Stores: where a merger's base and task vectors live (a job's placement), and how each tensor's reach the device.

A store hands the merge engine one tensor ("segment") at a time: its base (`n_j`) and task vectors (`k x n_j`) on
the device, ready to read. The merge loop asks for segment `j` (`segment`), starts bringing `j + 1` (`prefetch`),
merges `j`, then says `j`'s buffers may be reused (`done`).

- `ResidentStore`: everything on the device; segments are views, nothing moves.
- `StreamStore`: base and task vectors in host memory (pinned on CUDA), laid out segment by segment, each segment
  one contiguous block `[base_j, tau_1j, ..., tau_kj]`; on CUDA they are copied into one of two device staging
  buffers on a side stream, so the next segment's copy runs while this one merges. On the CPU the host block is
  the device's memory and is read in place unless `staging` asks for the copy (tests use it).
- `MmapStore`: nothing held; each merge reads the base's and every expert's tensor from their memory-mapped files
  (the page cache keeps what fits), copies them into a staging buffer and forms `tau_i = expert_i - base` there.

Task vectors are computed the same way everywhere (`expert.to(dtype) - base` in the merge's dtype), so every store
gives the merge the same numbers, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class Segment:
    """One merged tensor's place in the flat layout."""

    key: str
    offset: int
    numel: int
    shape: tuple[int, ...]


class Store(Protocol):
    k: int

    def segment(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Segment `j`'s base (`n_j`) and task vectors (`k x n_j`) on the device, ready to read."""
        ...

    def prefetch(self, j: int) -> None:
        """Start bringing segment `j` to the device (nothing to do where it already is)."""
        ...

    def done(self, j: int) -> None:
        """Segment `j`'s merge has been issued: its staging buffer may be refilled once the device has read it."""
        ...


def _release(checkpoint: Mapping[str, torch.Tensor]) -> None:
    """Unmap a lazily read checkpoint's files (its pages stop counting against this process)."""
    close = getattr(checkpoint, "close", None)
    if close is not None:
        close()


def _flat(checkpoint: Mapping[str, torch.Tensor], seg: Segment, device: torch.device, dtype: torch.dtype
          ) -> torch.Tensor:
    return checkpoint[seg.key].reshape(-1).to(device, dtype)


class ResidentStore:
    """Base (`n`) and task vectors (`k x n`) on the device."""

    def __init__(self, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
                 segments: Sequence[Segment], device: torch.device, dtype: torch.dtype) -> None:
        n = sum(s.numel for s in segments)
        self.k = len(experts)
        self.segments = list(segments)
        self.base = torch.empty(n, dtype=dtype, device=device)
        self.task_vectors = torch.empty((self.k, n), dtype=dtype, device=device)  # k x n
        for seg in segments:  # expert by expert, tensor by tensor: one model's files mapped at a time
            self.base[seg.offset:seg.offset + seg.numel] = _flat(base, seg, device, dtype)
        _release(base)
        for i, expert in enumerate(experts):
            for seg in segments:
                sl = slice(seg.offset, seg.offset + seg.numel)
                torch.sub(_flat(expert, seg, device, dtype), self.base[sl], out=self.task_vectors[i, sl])
            _release(expert)

    def segment(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        seg = self.segments[j]
        sl = slice(seg.offset, seg.offset + seg.numel)
        return self.base[sl], self.task_vectors[:, sl]

    def prefetch(self, j: int) -> None:
        return None

    def done(self, j: int) -> None:
        return None


class _Staging:
    """Two device buffers of `(k + 1) x S` and, on CUDA, the side stream and events that order their reuse."""

    def __init__(self, k: int, largest: int, device: torch.device, dtype: torch.dtype) -> None:
        self.k = k
        self.buffers = [torch.empty((k + 1) * largest, dtype=dtype, device=device) for _ in range(2)]
        self.cuda = device.type == "cuda"
        self.stream: Any = torch.cuda.Stream(device) if self.cuda else None
        self.ready: list[Any] = [torch.cuda.Event() if self.cuda else None for _ in range(2)]
        self.free: list[Any] = [torch.cuda.Event() if self.cuda else None for _ in range(2)]

    def fill(self, j: int, numel: int, write: Any) -> None:
        """Run `write(block)` into segment `j`'s buffer (`(k + 1) x numel`), on the side stream on CUDA."""
        block = self.buffers[j % 2][:(self.k + 1) * numel]
        if not self.cuda:
            write(block)
            return
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(self.free[j % 2])  # the merge two segments back has read this buffer
            write(block)
            self.ready[j % 2].record(self.stream)

    def view(self, j: int, numel: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cuda:
            torch.cuda.current_stream().wait_event(self.ready[j % 2])
        block = self.buffers[j % 2][:(self.k + 1) * numel]
        return block[:numel], block[numel:].view(self.k, numel)

    def done(self, j: int) -> None:
        if self.cuda:
            self.free[j % 2].record(torch.cuda.current_stream())


class StreamStore:
    """Base and task vectors in (pinned) host memory, segment-major; copied to the device segment by segment."""

    def __init__(self, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
                 segments: Sequence[Segment], device: torch.device, dtype: torch.dtype,
                 staging: bool | None = None) -> None:
        self.k = len(experts)
        self.segments = list(segments)
        cpu = torch.device("cpu")
        n = sum(s.numel for s in segments)
        self.host = torch.empty((self.k + 1) * n, dtype=dtype, pin_memory=device.type == "cuda")
        for seg in segments:
            self._base_view(seg).copy_(_flat(base, seg, cpu, dtype))
        _release(base)
        for i, expert in enumerate(experts):
            for seg in segments:
                torch.sub(_flat(expert, seg, cpu, dtype), self._base_view(seg), out=self._block(seg)[1][i])
            _release(expert)
        stage = device.type != "cpu" if staging is None else staging
        self.staging = _Staging(self.k, max(s.numel for s in segments), device, dtype) if stage else None

    def _base_view(self, seg: Segment) -> torch.Tensor:
        return self._block(seg)[0]

    def _block(self, seg: Segment) -> tuple[torch.Tensor, torch.Tensor]:
        start = (self.k + 1) * seg.offset
        block = self.host[start:start + (self.k + 1) * seg.numel]
        return block[:seg.numel], block[seg.numel:].view(self.k, seg.numel)

    def segment(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        seg = self.segments[j]
        return self._block(seg) if self.staging is None else self.staging.view(j, seg.numel)

    def prefetch(self, j: int) -> None:
        if self.staging is None or j >= len(self.segments):
            return
        seg = self.segments[j]
        start = (self.k + 1) * seg.offset
        source = self.host[start:start + (self.k + 1) * seg.numel]
        self.staging.fill(j, seg.numel, lambda block: block.copy_(source, non_blocking=True))

    def done(self, j: int) -> None:
        if self.staging is not None:
            self.staging.done(j)


class MmapStore:
    """The checkpoints' memory-mapped files; each merge reads every tensor again and forms its task vectors."""

    def __init__(self, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
                 segments: Sequence[Segment], device: torch.device, dtype: torch.dtype) -> None:
        self.k = len(experts)
        self.segments = list(segments)
        self.models = [base, *experts]
        self.dtype = dtype
        self.staging = _Staging(self.k, max(s.numel for s in segments), device, dtype)

    def segment(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.staging.view(j, self.segments[j].numel)

    def prefetch(self, j: int) -> None:
        if j >= len(self.segments):
            return
        seg = self.segments[j]

        def write(block: torch.Tensor) -> None:
            parts = block.view(self.k + 1, seg.numel)
            for part, model in zip(parts, self.models, strict=True):
                part.copy_(model[seg.key].reshape(-1), non_blocking=True)
            parts[1:].sub_(parts[0])  # tau_i = expert_i - base, as the other stores compute it

        self.staging.fill(j, seg.numel, write)

    def done(self, j: int) -> None:
        self.staging.done(j)


def layout(base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
           keys: Sequence[str]) -> list[Segment]:
    """Check every expert has each merged tensor with the base's shape; place tensors in the flat layout."""
    from mergefront.errors import InvalidSpecError

    segments: list[Segment] = []
    offset = 0
    for key in keys:
        if key not in base:
            raise InvalidSpecError(f"tensor {key!r} is not in the base model", ("models", "base"))
        shape = tuple(base[key].shape)
        for i, expert in enumerate(experts):
            if key not in expert:
                raise InvalidSpecError(f"expert {i} has no tensor {key!r}", ("models", "experts", i))
            if tuple(expert[key].shape) != shape:
                raise InvalidSpecError(
                    f"tensor {key!r} has shape {tuple(expert[key].shape)} in expert {i}, {shape} in the base",
                    ("models", "experts", i))
        numel = math.prod(shape)
        segments.append(Segment(key, offset, numel, shape))
        offset += numel
    return segments
