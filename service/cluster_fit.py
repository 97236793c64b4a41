"""Whether a job's workers could ever be placed on the Ray cluster this process knows.

Each worker takes a bundle of one CPU and `gpus_per_worker` GPUs on one node. A job whose workers no node or the
whole cluster can hold would wait for ever: it is refused at submission (422 naming the field) when this process
has started or joined Ray, and a local Ray (which never grows) fails it at start. Ray is never imported here: a
process that has not started it knows no cluster.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence

from mergefront.errors import InvalidSpecError
from mergefront.spec import JobSpec


def check_fits(spec: JobSpec, nodes: Sequence[Mapping[str, float]]) -> None:
    """InvalidSpecError naming resources.gpus_per_worker or resources.workers when the nodes (each one's total
    resources, as Ray's `ray.nodes()` gives them) can never hold the job's workers."""
    gpus, workers = spec.resources.gpus_per_worker, spec.resources.workers
    if not nodes:
        return
    most_gpus = max(float(n.get("GPU", 0.0)) for n in nodes)
    if gpus > most_gpus:
        have = f"the largest has {most_gpus:g}" if most_gpus else "none has a GPU"
        raise InvalidSpecError(f"{gpus:g} GPUs per worker: no node of the Ray cluster has that many ({have}); "
                               "ask for fewer, or add a node that has them", ("resources", "gpus_per_worker"))
    room = sum(_workers_on(n, gpus) for n in nodes)
    if workers > room:
        raise InvalidSpecError(f"{workers} workers of 1 CPU{f' and {gpus:g} GPUs' if gpus else ''} each: the Ray "
                               f"cluster can hold at most {room} ({_total(nodes)}); ask for fewer",
                               ("resources", "workers"))


def check_fits_known_cluster(spec: JobSpec) -> None:
    """`check_fits` against the Ray cluster this process has started or joined; nothing when it has none."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    check_fits(spec, [n["Resources"] for n in ray.nodes() if n.get("Alive")])


def _workers_on(node: Mapping[str, float], gpus: float) -> int:
    cpus = int(float(node.get("CPU", 0.0)))
    if not gpus:
        return cpus
    return min(cpus, math.floor(float(node.get("GPU", 0.0)) / gpus + 1e-9))


def _total(nodes: Sequence[Mapping[str, float]]) -> str:
    cpus = sum(float(n.get("CPU", 0.0)) for n in nodes)
    gpus = sum(float(n.get("GPU", 0.0)) for n in nodes)
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}, {cpus:g} CPUs, {gpus:g} GPUs"
