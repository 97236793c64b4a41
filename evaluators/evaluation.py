"""Evaluate candidates: merge from resident weights, run the objectives, return the metrics.

This is what each Ray worker holds (see `mergefront.evaluators.pool`); it knows nothing of Ray and runs alone in tests.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mergefront.evaluators.bundle import Bundle, unpack
from mergefront.evaluators.checkpoint import LazyCheckpoint, resolve
from mergefront.evaluators.cluster import node_cache_dir
from mergefront.evaluators.device import pick_device
from mergefront.evaluators.headers import checkpoint_tensors
from mergefront.evaluators.memory import MemoryPlan, Workload, host_available, plan, workload_of
from mergefront.evaluators.merge import MergeConfig, ResidentMerger
from mergefront.evaluators.objectives import make_objective, pick_metric
from mergefront.evaluators.objectives.model import Binding, bind, load_model
from mergefront.evaluators.suites import TaskEvaluator, open_suite
from mergefront.objectives import runs_model


@dataclass(frozen=True)
class ObjectiveSetup:
    """One objective as a worker runs it: the metric `metric` of a suite's task `task` on split `split`, or of
    evaluator `evaluator` (a built-in name or an import path) with its settings."""

    key: str
    task: str | None = None
    split: str = "validation"
    metric: str = "accuracy"
    evaluator: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker loads once per job: the checkpoints (paths, or `hf://` references each node fetches
    into its own cache), which tensors are merged, the objectives."""

    base: str
    experts: tuple[str, ...]
    merged_keys: tuple[str, ...]
    objectives: tuple[ObjectiveSetup, ...]
    suite: str | None = None  # the built-in suite the models come from, for task objectives
    suite_dir: str | None = None
    device: str = "auto"
    threads: int = 1
    python_path: tuple[str, ...] = ()  # folders the worker adds to sys.path to import evaluator functions
    # where the worker's node lacks the server's files (a cluster): the suite's folder, and the modules of the
    # job's own evaluator functions, both put in the node's cache
    suite_files: Bundle | None = None
    modules: Bundle | None = None
    workload: Workload | None = None  # what the job's plan counted (None: the merge alone, from the base's headers)
    device_memory: int | None = None  # the spec's limits (the worker also holds to what its device and host have)
    host_memory: int | None = None
    placement: str = "auto"

    @classmethod
    def for_suite(cls, suite: str, suite_dir: Path, experts: Sequence[str], objectives: Sequence[ObjectiveSetup],
                  device: str = "auto") -> WorkerSetup:
        """A setup for models of a built-in suite, named as the suite names them ("base", a task's expert)."""
        opened = open_suite(suite, Path(suite_dir))
        keys = tuple(opened.merged_keys(opened.load_model("base")))
        return cls(str(opened.model_path("base")), tuple(str(opened.model_path(e)) for e in experts), keys,
                   tuple(objectives), suite, str(suite_dir), device)


@dataclass(frozen=True)
class Candidate:
    evaluation_id: int
    merge: MergeConfig


@dataclass(frozen=True)
class EvaluationResult:
    evaluation_id: int
    metrics: dict[str, float]
    merge_seconds: float
    eval_seconds: float
    worker: str


class CandidateEvaluator:
    """Holds the base, the task vectors, the evaluation data and (for evaluators that run it) the merged model of
    one job, resident on one device."""

    def __init__(self, setup: WorkerSetup) -> None:
        torch.set_num_threads(setup.threads)
        # the driver's import path, in its order (the spec's folder first), before the worker's own entries
        sys.path[:] = [*setup.python_path, *(p for p in sys.path if p not in setup.python_path)]
        if setup.modules is not None:
            sys.path.insert(0, str(unpack(setup.modules, node_cache_dir())))
        self.setup = setup
        self.device = pick_device(setup.device)
        suite_dir, base_path, expert_paths = _local_files(setup)
        self.plan = worker_plan(setup, base_path, self.device)
        self.merger = ResidentMerger(LazyCheckpoint(base_path), [LazyCheckpoint(p) for p in expert_paths],
                                     setup.merged_keys, self.device, placement=self.plan.placement,
                                     ranks=self.plan.need.ranks)
        merged = self.merger.tensors()
        self.evaluators: dict[str, TaskEvaluator] = {}
        task_objectives = [o for o in setup.objectives if o.task is not None]
        if task_objectives:
            if setup.suite is None or suite_dir is None:
                raise ValueError("suite tasks need the models of a built-in suite")
            suite = open_suite(setup.suite, suite_dir)
            splits = sorted({o.split for o in task_objectives})
            self.evaluators = {split: suite.evaluator(
                sorted({o.task for o in task_objectives if o.split == split and o.task is not None}), split,
                self.device, sorted({o.metric for o in task_objectives if o.split == split})) for split in splits}
        self.model: torch.nn.Module | None = None
        self.tokenizer: Any = None
        self.binding: Binding | None = None
        if any(o.evaluator is not None and runs_model(o.evaluator) for o in setup.objectives):
            self.model, self.tokenizer = load_model(base_path, self.device, merged)
            self.binding = bind(self.model, merged)
        # objectives that differ only in the metric they read share one evaluator and one run per candidate
        self.objectives: dict[str, Callable[..., Mapping[str, float]]] = {}
        for o in setup.objectives:
            if o.evaluator is not None and _source(o) not in self.objectives:
                self.objectives[_source(o)] = make_objective(o.evaluator, o.settings, tokenizer=self.tokenizer,
                                                             device=self.device)
        self.name = f"{socket.gethostname()}:{self.device}"

    def evaluate(self, candidate: Candidate) -> EvaluationResult:
        start = time.perf_counter()
        self.merger.merge(candidate.merge)
        if self.binding is not None:
            self.binding.refresh()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        merged_at = time.perf_counter()
        merged = self.merger.tensors()
        scores = {split: ev.evaluate(merged) for split, ev in self.evaluators.items()}
        metrics: dict[str, float] = {}
        reports: dict[str, Mapping[str, float]] = {}
        for o in self.setup.objectives:
            if o.task is not None:
                metrics[o.key] = float(scores[o.split][o.task][o.metric])
                continue
            source = _source(o)
            if source not in reports:
                with torch.inference_mode():
                    if o.evaluator is not None and runs_model(o.evaluator):
                        reports[source] = self.objectives[source](self.model, self.tokenizer)
                    else:
                        reports[source] = self.objectives[source](self.merger)
            metrics[o.key] = pick_metric(reports[source], o.metric, f"objective {o.key!r}")
        return EvaluationResult(candidate.evaluation_id, metrics, merged_at - start,
                                time.perf_counter() - merged_at, self.name)

    def ping(self) -> str:
        return self.name


def _local_files(setup: WorkerSetup) -> tuple[Path | None, Path, list[Path]]:
    """The suite's folder, the base and the experts on this node. A shipped suite is put in the node's cache and
    its models named relative to it; an `hf://` reference is fetched into the node's cache; any other path is
    taken as given (on a cluster: a path every node sees)."""
    if setup.suite_files is not None:
        suite_dir: Path | None = unpack(setup.suite_files, node_cache_dir()) / setup.suite_files.name
    else:
        suite_dir = None if setup.suite_dir is None else Path(setup.suite_dir)

    def local(ref: str) -> Path:
        if ref.startswith("hf://"):
            return resolve(ref, cache_dir=node_cache_dir() / "hf")
        return suite_dir / ref if setup.suite_files is not None and suite_dir is not None else Path(ref)

    return suite_dir, local(setup.base), [local(ref) for ref in setup.experts]


def worker_plan(setup: WorkerSetup, base: Path, device: torch.device) -> MemoryPlan:
    """The memory plan of this worker: the job's workload against the spec's limits and what this device and host
    have free now; InvalidSpecError with the numbers (before anything is loaded) when no placement fits."""
    workload = setup.workload or workload_of(checkpoint_tensors(base), setup.merged_keys,
                                             len(setup.experts), "task_arithmetic")
    device_free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    host_free = host_available()
    return plan(workload, device_limit=_least(setup.device_memory, device_free),
                host_limit=_least(setup.host_memory, host_free), placement=setup.placement, device_kind=device.type)


def _least(*limits: int | None) -> int | None:
    known = [v for v in limits if v is not None]
    return min(known) if known else None


def _source(objective: ObjectiveSetup) -> str:
    """What computes an objective: its evaluator and settings (objectives may read different metrics of one)."""
    return json.dumps([objective.evaluator, dict(objective.settings)], sort_keys=True, default=str)

