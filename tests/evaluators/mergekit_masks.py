"""Masks in the differential test against mergekit (`mergekit_reference`).

TIES and breadcrumbs keep exactly mergekit's entries (`mergekit.sparsify` on the same task vector). Random masks
(DARE, DELLA) are compared by their statistics: ours and mergekit's own draws keep, per rank band, what their keep
probabilities say, within five standard deviations. And mergekit can merge with our masks in place of its
Bernoulli draws (`draws_replaced`), which tests everything but the draw itself.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from mergefront.evaluators.merge import ResidentMerger
from mergefront.methods import METHODS
from tests.evaluators.mergekit_cases import RANDOM, SPARSIFY, Case


@contextlib.contextmanager
def draws_replaced(draws: Callable[[torch.Tensor], torch.Tensor | None] | None) -> Iterator[None]:
    """mergekit's `bernoulli` and `della_magprune` with our mask for the task vector they sparsify."""
    if draws is None:
        yield
        return
    import mergekit.sparsify as sparsify

    current: list[torch.Tensor] = []
    real_bernoulli = torch.bernoulli

    def bernoulli(probabilities: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not current:
            return real_bernoulli(probabilities, *args, **kwargs)
        return current[-1].reshape(probabilities.shape).to(probabilities.dtype)

    def wrap(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def sparsify_with_our_mask(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            mask = draws(tensor)
            assert mask is not None, "mergekit sparsified a task vector of none of our experts"
            current.append(mask)
            try:
                return function(tensor, *args, **kwargs)
            finally:
                current.pop()
        return sparsify_with_our_mask

    saved = (sparsify.bernoulli, sparsify.della_magprune)
    sparsify.bernoulli, sparsify.della_magprune = wrap(saved[0]), wrap(saved[1])
    torch.bernoulli = bernoulli  # type: ignore[assignment]
    try:
        yield
    finally:
        sparsify.bernoulli, sparsify.della_magprune = saved
        torch.bernoulli = real_bernoulli  # type: ignore[assignment]


def our_draws(merger: ResidentMerger, masks: dict[str, torch.Tensor] | None
               ) -> Callable[[torch.Tensor], torch.Tensor | None]:
    """Our mask of a task vector, found by its bits (mergekit's `expert - base` is our resident task vector)."""
    assert masks is not None
    found: dict[bytes, torch.Tensor] = {}
    for seg, data in zip(merger.segments, merger._data, strict=True):
        for i in range(merger.n_experts):
            found[_fingerprint(data.tau[i])] = masks[seg.key][i]

    def draws(tensor: torch.Tensor) -> torch.Tensor | None:
        return found.get(_fingerprint(tensor))

    return draws


def _fingerprint(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().reshape(-1).contiguous()
    return bytes(str(flat.dtype), "ascii") + flat.view(torch.uint8).numpy().tobytes()


BANDS = 5  # DELLA's keep probabilities are compared per fifth of the magnitude ranks in a row


class Tally:
    """Per rank band, entries kept, expected (sum of keep probabilities) and the binomial variance."""

    def __init__(self) -> None:
        self.kept = torch.zeros(BANDS, dtype=torch.float64)
        self.expected = torch.zeros(BANDS, dtype=torch.float64)
        self.variance = torch.zeros(BANDS, dtype=torch.float64)

    def add(self, rank: torch.Tensor, probability: torch.Tensor, kept: torch.Tensor) -> None:
        band = torch.clamp((rank * BANDS).long(), max=BANDS - 1)
        self.kept += torch.bincount(band, weights=kept.double(), minlength=BANDS)
        self.expected += torch.bincount(band, weights=probability, minlength=BANDS)
        self.variance += torch.bincount(band, weights=probability * (1 - probability), minlength=BANDS)

    def failures(self, who: str) -> list[str]:
        sd = self.variance.sqrt()
        return [f"{who}'s random masks keep {float(self.kept[b]):.0f} entries in rank band {b}, "
                f"{float(self.expected[b]):.1f} expected (sd {float(sd[b]):.1f})"
                for b in range(BANDS) if float((self.kept[b] - self.expected[b]).abs()) > 5 * float(sd[b]) + 1]


def check_masks(case: Case, merger: ResidentMerger, masks: dict[str, torch.Tensor], values: dict[str, Any],
                config: Any) -> list[str]:
    """TIES / breadcrumbs: mergekit's very entries; DARE / DELLA: both draws keep what their probabilities say.
    `config`: our exported YAML as mergekit parses it (its filters give each tensor's values)."""
    from mergekit.sparsify import SparsificationMethod, sparsify

    method = SparsificationMethod(SPARSIFY[case.method])
    setting = mergekit_settings(config, case.k)
    tallies = {"ours": Tally(), "mergekit": Tally()}
    failures: list[str] = []
    for seg, data in zip(merger.segments, merger._data, strict=True):
        for i in range(case.k):
            density = setting(seg.key, i, "density", 1.0)
            if density >= 1:
                continue
            assert math.isclose(density, float(values[seg.key].density[i]), rel_tol=0, abs_tol=1e-12)
            extra = {name: setting(seg.key, i, name, METHODS[case.method].defaults[name])
                     for name in ("gamma", "epsilon") if name in METHODS[case.method].params}
            theirs = sparsify(data.tau[i].view(seg.shape), density=density, method=method, **extra).reshape(-1) != 0
            ours = masks[seg.key][i]
            if case.method in RANDOM:
                rank, probability = _keep_probabilities(data, i, density, extra.get("epsilon", 0.0))
                tallies["ours"].add(rank, probability, ours)
                tallies["mergekit"].add(rank, probability, theirs)
            elif not torch.equal(theirs, ours):
                failures.append(f"{seg.key}, expert {i}: keeps {int(ours.sum())} entries, mergekit "
                                f"{int(theirs.sum())} ({int((theirs != ours).sum())} positions differ)")
    return failures + [f for who, tally in tallies.items() for f in tally.failures(who)]


def _keep_probabilities(data: Any, i: int, density: float, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entry of expert i, its rank in its row scaled to [0, 1] (DARE: 0) and its keep probability."""
    n = data.tau.shape[1]
    if data.row_rank is None:  # DARE: one probability
        return torch.zeros(n, dtype=torch.float64), torch.full((n,), density, dtype=torch.float64)
    cols = data.shape[-1] if len(data.shape) > 1 else n
    rank = data.row_rank[i].double() / max(cols - 1, 1)
    return rank, (density - epsilon) + rank * 2 * epsilon


def mergekit_settings(config: Any, k: int) -> Callable[[str, int, str, float], float]:
    """A parameter's value for a tensor and an expert, as mergekit resolves our YAML's filters."""
    from mergekit.config import evaluate_setting

    base = str(config.base_model.model.path) if config.base_model else None
    experts = [m for m in config.models if str(m.model.model.path) != base]
    assert len(experts) == k

    def setting(key: str, i: int, name: str, default: float) -> float:
        given = (experts[i].parameters or {}).get(name)
        if given is None:
            given = (config.parameters or {}).get(name)
        value = evaluate_setting(key, given, validate=float) if given is not None else None
        return float(default if value is None else value)

    return setting

