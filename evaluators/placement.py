"""Reserving a job's workers together: one Ray placement group, one bundle per worker, all or nothing.

Two jobs that each got part of what they need would wait on each other for ever; a placement group is reserved
whole or not at all, so a job that does not fit holds nothing while it waits. Bundles spread over the nodes where
they can (Ray's SPREAD), so the workers' resident weights share the cluster's memory.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group

from mergefront.errors import ClusterUnavailableError


def worker_bundle(gpus_per_worker: float) -> dict[str, float]:
    """What one worker takes: a CPU, and its share of a GPU when it has one."""
    return {"CPU": 1.0, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}


def reserve(n_workers: int, gpus_per_worker: float, timeout: float | None) -> PlacementGroup:
    """The placement group of `n_workers` workers, once the cluster has placed all of them; ClusterUnavailableError
    (the group removed) when it has not within `timeout` seconds (None: wait as long as it takes)."""
    bundle = worker_bundle(gpus_per_worker)
    group = placement_group([bundle] * n_workers, strategy="SPREAD")
    if group.wait(timeout_seconds=timeout if timeout is not None else 10**9):
        return group
    remove_placement_group(group)
    raise ClusterUnavailableError(
        f"the Ray cluster did not place the job's {n_workers} workers ({_describe(bundle)} each) within "
        f"{timeout:g} s (MERGEFRONT_PLACEMENT_TIMEOUT); it has {_describe(ray.available_resources())} free of "
        f"{_describe(ray.cluster_resources())}. The job waits and is tried again")


def release(group: PlacementGroup | None) -> None:
    if group is not None:
        remove_placement_group(group)


def _describe(resources: dict[str, Any]) -> str:
    shown = {k: v for k, v in resources.items() if k in ("CPU", "GPU")}
    return ", ".join(f"{v:g} {k}" for k, v in sorted(shown.items())) or "nothing"
