"""The contract every optimizer runs (see mergefront.optimizers.base.Optimizer)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest

from mergefront.optimizers import (
    AcquisitionSettings,
    HybridOptimizer,
    MAPOptimizer,
    NestedMAPOptimizer,
    NSGA2Optimizer,
    Observation,
    Optimizer,
    Parameter,
    QNEHVIOptimizer,
    SAEAOptimizer,
    SearchSpace,
    SobolSearch,
)

SPACE = SearchSpace(tuple(Parameter(f"p{i}", 0.0, 1.0, "") for i in range(4)))
FAST = AcquisitionSettings(mc_samples=16, num_restarts=1, raw_samples=16, maxiter=15)  # contract, not quality

FACTORIES: dict[str, Callable[[int], Optimizer]] = {
    "random": lambda seed: SobolSearch(SPACE, 2, seed),
    "nsga2": lambda seed: NSGA2Optimizer(SPACE, 2, seed, population_size=8),
    "qnehvi": lambda seed: QNEHVIOptimizer(SPACE, 2, seed, initial_points=6, settings=FAST),
    "qnehvi-mmmo": lambda seed: QNEHVIOptimizer(SPACE, 2, seed, initial_points=6, settings=FAST,
                                                weak_to_strong=True, uncertainty_screening=True),
    "map": lambda seed: MAPOptimizer(SPACE, 2, seed, initial_points=6),
    "hybrid": lambda seed: HybridOptimizer(SPACE, 2, seed, initial_points=6, settings=FAST),
    "hybrid-refine": lambda seed: HybridOptimizer(SPACE, 2, seed, initial_points=6, settings=FAST, refine=0.5,
                                                  refine_anchors="both", refine_means=True, refine_adaptive=True),
    "map-bayesian": lambda seed: MAPOptimizer(SPACE, 2, seed, initial_points=6, bayesian=True),
    "map-nested": lambda seed: NestedMAPOptimizer(SPACE, 2, seed, bayesian=True),
    "saea": lambda seed: SAEAOptimizer(SPACE, 2, seed, population_size=8, screening_factor=4),
}


def _objectives(x: tuple[float, ...]) -> tuple[float, float]:
    a = np.asarray(x)
    return float(np.sum((a - 0.2) ** 2)), float(np.sum((a - 0.8) ** 2))  # a convex two-objective trade-off


def _drive(opt: Optimizer, rounds: int, batch: int = 4, fail_every: int = 0) -> list[Observation]:
    history: list[Observation] = []
    for _ in range(rounds):
        for x in opt.ask(batch, history):
            failed = fail_every and (len(history) + 1) % fail_every == 0
            history.append(Observation(x, None if failed else _objectives(x)))
    return history


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest) -> Callable[[int], Optimizer]:
    return FACTORIES[request.param]


@functools.cache
def _history(rounds: int, fail_every: int = 0) -> tuple[Observation, ...]:
    """A history that no optimizer under test produced (asks are functions of any history, not only their own)."""
    return tuple(_drive(SobolSearch(SPACE, 2, 99), rounds, fail_every=fail_every))


def test_same_seed_same_proposals(make: Callable[[int], Optimizer]) -> None:
    first = [o.x for o in _drive(make(7), 3)]  # past every initial design here, so the model proposes too
    assert first == [o.x for o in _drive(make(7), 3)]
    assert first != [o.x for o in _drive(make(8), 3)]


def test_rebuilds_from_history_alone(make: Callable[[int], Optimizer]) -> None:
    history = list(_history(4))
    assert make(1).ask(4, history) == make(1).ask(4, list(history))  # a fresh instance asks the same


def test_proposals_are_in_bounds_and_new(make: Callable[[int], Optimizer]) -> None:
    history = list(_history(6))
    pending = [history[-1].x[:-1] + (0.123,)]
    proposals = make(2).ask(8, history, pending)
    arr = np.asarray(proposals)
    assert arr.shape == (8, SPACE.dim) and arr.min() >= 0.0 and arr.max() <= 1.0
    known = {o.x for o in history} | set(pending)
    assert not known & set(proposals)
    assert len(set(proposals)) == len(proposals)


def test_never_proposes_an_evaluated_point(make: Callable[[int], Optimizer]) -> None:
    # the trade-off's two optima and the corners are where model-based proposals like to land
    corners = [(0.2,) * 4, (0.8,) * 4, (0.0,) * 4, (1.0,) * 4, (0.5,) * 4]
    history = list(_history(3)) + [Observation(x, _objectives(x)) for x in corners]
    first = make(6).ask(4, history)
    history += [Observation(x, _objectives(x)) for x in first]
    second = make(6).ask(4, history)
    assert not {o.x for o in history} & set(second)


def test_pending_points_change_the_proposals(make: Callable[[int], Optimizer]) -> None:
    history = list(_history(3))
    first = make(3).ask(2, history)
    second = make(3).ask(2, history, pending=first)
    assert not set(first) & set(second)


def test_copes_with_failed_evaluations(make: Callable[[int], Optimizer]) -> None:
    history = list(_history(6, fail_every=3))
    assert sum(o.failed for o in history) == 8
    proposals = make(4).ask(4, history)
    assert len(proposals) == 4 and not {o.x for o in history} & set(proposals)


def test_copes_with_every_evaluation_failing(make: Callable[[int], Optimizer]) -> None:
    history = _drive(make(5), 3, fail_every=1)
    assert len(make(5).ask(4, history)) == 4


def test_rejects_malformed_input(make: Callable[[int], Optimizer]) -> None:
    with pytest.raises(ValueError, match="coordinates"):
        make(0).ask(1, [Observation((0.5, 0.5), (1.0, 1.0))])
    with pytest.raises(ValueError, match="n must be"):
        make(0).ask(0, [])


def test_nsga2_improves_on_its_initial_design() -> None:
    from mergefront.optimizers import hypervolume

    history = _drive(NSGA2Optimizer(SPACE, 2, 0, population_size=8), 12)
    values = np.asarray([o.values for o in history])
    ref = [3.0, 3.0]
    initial = hypervolume(values[:8], ref, [False, False])
    assert hypervolume(values, ref, [False, False]) > initial
