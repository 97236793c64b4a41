"""Evaluate candidates: merge from resident weights, run the objectives, return the metrics.

This is what each Ray worker holds (see `evaluators.pool`); it knows nothing of Ray and runs alone in tests.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluators.device import pick_device
from evaluators.merge import MergeConfig, ResidentMerger
from evaluators.suites import open_suite


@dataclass(frozen=True)
class ObjectiveSetup:
    """One objective as a worker runs it: the metric `metric` of task `task` on split `split`."""

    key: str
    task: str
    split: str
    metric: str = "accuracy"


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker loads once per job."""

    suite: str
    suite_dir: str
    experts: tuple[str, ...]
    objectives: tuple[ObjectiveSetup, ...]
    device: str = "auto"
    threads: int = 1


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
    """Holds the base, the task vectors and the evaluation data of one job, resident on one device."""

    def __init__(self, setup: WorkerSetup) -> None:
        torch.set_num_threads(setup.threads)
        self.setup = setup
        self.device = pick_device(setup.device)
        suite = open_suite(setup.suite, Path(setup.suite_dir))
        base = suite.load_model("base")
        experts = [suite.load_model(name) for name in setup.experts]
        self.merger = ResidentMerger(base, experts, suite.merged_keys(base), self.device)
        self.evaluators = {
            split: suite.evaluator(sorted({o.task for o in setup.objectives if o.split == split}), split, self.device)
            for split in sorted({o.split for o in setup.objectives})
        }
        self.name = f"{socket.gethostname()}:{self.device}"

    def evaluate(self, candidate: Candidate) -> EvaluationResult:
        start = time.perf_counter()
        merged = self.merger.merge(candidate.merge)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        merged_at = time.perf_counter()
        scores = {split: ev.evaluate(merged) for split, ev in self.evaluators.items()}
        metrics = {o.key: float(scores[o.split][o.task][o.metric]) for o in self.setup.objectives}
        return EvaluationResult(candidate.evaluation_id, metrics, merged_at - start,
                                time.perf_counter() - merged_at, self.name)

    def ping(self) -> str:
        return self.name
