"""Stores: where a merger's base and task vectors live (a job's placement), and how they reach the device.

A store hands the merge engine one block at a time: consecutive merged tensors ("segments") whose base (`m`) and
task vectors (`k x m`) are on the device together, ready to read. The merge loop opens block `b` (`open`), starts
bringing `b + 1` (`prefetch`), merges every tensor of `b` (or, for task arithmetic, every span of tensors with the
same values at once), then says `b`'s buffers may be reused (`done`).

- `ResidentStore`: everything on the device, one block of every tensor; nothing moves.
- `StreamStore`: base and task vectors in host memory (pinned on CUDA), block by block, each block one contiguous
  run `[base_b, tau_1b, ..., tau_kb]`; consecutive tensors are packed into a block up to the largest tensor's
  size, so the staging memory is what one tensor needs and a model crosses in a few large copies, not one per
  tensor. On CUDA each block is copied into one of two device staging buffers on a side stream, so the next
  block's copy runs while this one merges. On the CPU the host block is the device's memory and is read in place
  unless `staging` asks for the copy (tests use it).
- `MmapStore`: nothing held; each merge reads the base's and every expert's tensors from their memory-mapped files
  (the page cache keeps what fits), copies them into a staging buffer block by block and forms
  `tau_i = expert_i - base` there.

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


@dataclass(frozen=True)
class Block:
    """Segments `first` to `end - 1`, entries `offset` to `offset + numel - 1` of the flat layout."""

    first: int
    end: int
    offset: int
    numel: int

    def local(self, seg: Segment) -> slice:
        """Where segment `seg` (one of this block's) lies within the block's entries."""
        return slice(seg.offset - self.offset, seg.offset - self.offset + seg.numel)


def pack(segments: Sequence[Segment], capacity: int) -> list[Block]:
    """Consecutive segments in blocks of at most `capacity` entries (a larger segment is a block of its own)."""
    blocks: list[Block] = []
    first = 0
    for j in range(1, len(segments) + 1):
        size = segments[j - 1].offset + segments[j - 1].numel - segments[first].offset
        if j == len(segments) or size + segments[j].numel > capacity:
            blocks.append(Block(first, j, segments[first].offset, size))
            first = j
    return blocks


class Store(Protocol):
    k: int
    blocks: list[Block]

    def open(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Block `b`'s base (`m`) and task vectors (`k x m`) on the device, ready to read."""
        ...

    def prefetch(self, b: int) -> None:
        """Start bringing block `b` to the device (nothing to do where it already is, or past the last block)."""
        ...

    def done(self, b: int) -> None:
        """Block `b`'s merge has been issued: its staging buffer may be refilled once the device has read it."""
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
        self.blocks = [Block(0, len(segments), 0, n)]
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

    def open(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base, self.task_vectors

    def prefetch(self, b: int) -> None:
        return None

    def done(self, b: int) -> None:
        return None


def _views(buffer: torch.Tensor, k: int, numel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A block's `[base, tau_1, ..., tau_k]` run as base (`numel`) and task vectors (`k x numel`)."""
    run = buffer[:(k + 1) * numel]
    return run[:numel], run[numel:].view(k, numel)


class _Staging:
    """Two device buffers of `(k + 1) x S` and, on CUDA, the side stream and events that order their reuse."""

    def __init__(self, k: int, largest: int, device: torch.device, dtype: torch.dtype) -> None:
        self.k = k
        self.buffers = [torch.empty((k + 1) * largest, dtype=dtype, device=device) for _ in range(2)]
        self.cuda = device.type == "cuda"
        self.stream: Any = torch.cuda.Stream(device) if self.cuda else None
        self.ready: list[Any] = [torch.cuda.Event() if self.cuda else None for _ in range(2)]
        self.free: list[Any] = [torch.cuda.Event() if self.cuda else None for _ in range(2)]

    def fill(self, b: int, numel: int, write: Any) -> None:
        """Run `write(run)` into block `b`'s buffer (`(k + 1) x numel`), on the side stream on CUDA."""
        run = self.buffers[b % 2][:(self.k + 1) * numel]
        if not self.cuda:
            write(run)
            return
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(self.free[b % 2])  # the merge two blocks back has read this buffer
            write(run)
            self.ready[b % 2].record(self.stream)

    def view(self, b: int, numel: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cuda:
            torch.cuda.current_stream().wait_event(self.ready[b % 2])
        return _views(self.buffers[b % 2], self.k, numel)

    def done(self, b: int) -> None:
        if self.cuda:
            self.free[b % 2].record(torch.cuda.current_stream())


class StreamStore:
    """Base and task vectors in (pinned) host memory, block-major; copied to the device block by block."""

    def __init__(self, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
                 segments: Sequence[Segment], device: torch.device, dtype: torch.dtype,
                 staging: bool | None = None) -> None:
        self.k = len(experts)
        self.segments = list(segments)
        largest = max(s.numel for s in segments)
        self.blocks = pack(segments, largest)
        cpu = torch.device("cpu")
        n = sum(s.numel for s in segments)
        self.host = torch.empty((self.k + 1) * n, dtype=dtype, pin_memory=device.type == "cuda")
        for block in self.blocks:
            block_base = self._in_host(block)[0]
            for seg in self.segments[block.first:block.end]:
                block_base[block.local(seg)].copy_(_flat(base, seg, cpu, dtype))
        _release(base)
        for i, expert in enumerate(experts):
            for block in self.blocks:
                block_base, block_tau = self._in_host(block)
                for seg in self.segments[block.first:block.end]:
                    at = block.local(seg)
                    torch.sub(_flat(expert, seg, cpu, dtype), block_base[at], out=block_tau[i, at])
            _release(expert)
        stage = device.type != "cpu" if staging is None else staging
        self.staging = _Staging(self.k, largest, device, dtype) if stage else None

    def _run(self, block: Block) -> torch.Tensor:
        """Block `block`'s `[base, tau_1, ..., tau_k]` run in host memory."""
        start = (self.k + 1) * block.offset
        return self.host[start:start + (self.k + 1) * block.numel]

    def _in_host(self, block: Block) -> tuple[torch.Tensor, torch.Tensor]:
        return _views(self._run(block), self.k, block.numel)

    def open(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        block = self.blocks[b]
        return self._in_host(block) if self.staging is None else self.staging.view(b, block.numel)

    def prefetch(self, b: int) -> None:
        if self.staging is None or b >= len(self.blocks):
            return
        block = self.blocks[b]
        source = self._run(block)
        self.staging.fill(b, block.numel, lambda run: run.copy_(source, non_blocking=True))

    def done(self, b: int) -> None:
        if self.staging is not None:
            self.staging.done(b)


class MmapStore:
    """The checkpoints' memory-mapped files; each merge reads every tensor again and forms its task vectors."""

    def __init__(self, base: Mapping[str, torch.Tensor], experts: Sequence[Mapping[str, torch.Tensor]],
                 segments: Sequence[Segment], device: torch.device, dtype: torch.dtype) -> None:
        self.k = len(experts)
        self.segments = list(segments)
        largest = max(s.numel for s in segments)
        self.blocks = pack(segments, largest)
        self.models = [base, *experts]
        self.staging = _Staging(self.k, largest, device, dtype)

    def open(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.staging.view(b, self.blocks[b].numel)

    def prefetch(self, b: int) -> None:
        if b >= len(self.blocks):
            return
        block = self.blocks[b]

        def write(run: torch.Tensor) -> None:
            parts = run.view(self.k + 1, block.numel)
            for seg in self.segments[block.first:block.end]:
                at = block.local(seg)
                for part, model in zip(parts, self.models, strict=True):
                    part[at].copy_(model[seg.key].reshape(-1), non_blocking=True)
            parts[1:].sub_(parts[0])  # tau_i = expert_i - base, as the other stores compute it

        self.staging.fill(b, block.numel, write)

    def done(self, b: int) -> None:
        self.staging.done(b)


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
