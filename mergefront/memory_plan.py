"""A job's memory plan: its workload from the spec and the base's headers, planned against `resources`' limits.

Light (no torch): `check_spec` plans local models at submission, so a job that cannot fit the memory it was given
is refused before it is stored, with the numbers; the runner plans again when it starts a job (suites and hf://
models are on disk by then), and each worker against its own device (`mergefront.evaluators.evaluation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mergefront.objectives import BUILTIN, runs_model

if TYPE_CHECKING:
    from mergefront.evaluators.memory import MemoryPlan, Workload
    from mergefront.spec import JobSpec

DEFAULT_BATCH, DEFAULT_TOKENS = 8, 512
LM_EVAL_TOKENS = 2048


def job_workload(spec: JobSpec, base: Path, merged_keys: Sequence[str]) -> Workload:
    """What each worker of the job merges and runs (headers of `base` only)."""
    from mergefront.evaluators.headers import checkpoint_tensors
    from mergefront.evaluators.memory import activation_bytes, read_config, workload_of

    tensors = checkpoint_tensors(base)
    model = any(o.evaluator is not None and runs_model(o.evaluator) for o in spec.objectives)
    workload = workload_of(tensors, merged_keys, len(spec.models.experts), spec.merge.method, 0, runs_model=model)
    if not model:
        return workload
    batch, tokens = evaluation_shape(spec)
    act = activation_bytes(read_config(base), batch, tokens, workload.itemsize)
    return workload_of(tensors, merged_keys, len(spec.models.experts), spec.merge.method, act, runs_model=True)


def evaluation_shape(spec: JobSpec) -> tuple[int, int]:
    """The largest batch and sequence length (tokens, generated ones included) the job's model-running objectives
    use: their settings' or the settings' defaults; 8 x 512 for functions, 2,048 tokens for lm_eval tasks."""
    batch, tokens = 1, 1
    for o in spec.objectives:
        if o.evaluator is None or not runs_model(o.evaluator):
            continue
        info = BUILTIN.get(o.evaluator)
        settings = info.settings.model_validate(o.settings) if info is not None else None
        batch = max(batch, int(getattr(settings, "batch_size", DEFAULT_BATCH)))
        length = LM_EVAL_TOKENS if o.evaluator == "lm_eval" else int(getattr(settings, "max_length", DEFAULT_TOKENS))
        tokens = max(tokens, length + int(getattr(settings, "max_new_tokens", 0)))
    return batch, tokens


def job_plan(spec: JobSpec, base: Path, merged_keys: Sequence[str]) -> MemoryPlan:
    """The job's plan against the limits its spec gives (none given: every placement is shown, resident chosen)."""
    from mergefront.evaluators.memory import plan

    r = spec.resources
    return plan(job_workload(spec, base, merged_keys), device_limit=r.device_memory, host_limit=r.host_memory,
                placement=r.placement, device_kind="cpu" if r.device == "cpu" else "cuda")


def check_fits(spec: JobSpec, base: Path, merged_keys: Sequence[str]) -> None:
    """Raise InvalidSpecError with the numbers when the spec's limits hold no placement (nothing to check without
    limits: each worker then plans against its own device)."""
    r = spec.resources
    if r.device_memory is not None or r.host_memory is not None:
        job_plan(spec, base, merged_keys)
