"""A job's search space, which for component / layer / filter granularity depends on the model's tensors."""

from __future__ import annotations

from mergefront.spec import JobSpec
from mergefront.suites import parse_bench_ref
from optimizers import SearchSpace, build_space
from service.settings import Settings


def job_space(spec: JobSpec, settings: Settings) -> SearchSpace:
    """The space the job searches; reads the base's tensor names only when a granularity needs them."""
    needs_names = any(r.granularity.kind != "model" for _, r in spec.merge.searched())
    names = merged_tensor_names(spec, settings) if needs_names else []
    return build_space(spec.merge, spec.models.experts, names)


def merged_tensor_names(spec: JobSpec, settings: Settings) -> list[str]:
    """The names of the tensors a merge changes (built-in suites are built on first use)."""
    from evaluators.suites import ensure_suite, open_suite

    suite_name, _ = parse_bench_ref(spec.models.base)
    suite = open_suite(suite_name, ensure_suite(suite_name, settings.resolved_cache_dir))
    return suite.merged_keys(suite.load_model("base"))
