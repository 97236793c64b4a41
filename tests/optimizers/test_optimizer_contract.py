"""The contract every optimizer runs (see optimizers.base.Optimizer)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from optimizers import NSGA2Optimizer, Observation, Optimizer, Parameter, SearchSpace, SobolSearch

SPACE = SearchSpace(tuple(Parameter(f"p{i}", 0.0, 1.0, "") for i in range(4)))

FACTORIES: dict[str, Callable[[int], Optimizer]] = {
    "random": lambda seed: SobolSearch(SPACE, 2, seed),
    "nsga2": lambda seed: NSGA2Optimizer(SPACE, 2, seed, population_size=8),
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


def test_same_seed_same_proposals(make: Callable[[int], Optimizer]) -> None:
    assert [o.x for o in _drive(make(7), 5)] == [o.x for o in _drive(make(7), 5)]
    assert [o.x for o in _drive(make(7), 5)] != [o.x for o in _drive(make(8), 5)]


def test_rebuilds_from_history_alone(make: Callable[[int], Optimizer]) -> None:
    history = _drive(make(1), 4)
    assert make(1).ask(4, history) == make(1).ask(4, list(history))  # a fresh instance asks the same


def test_proposals_are_in_bounds_and_new(make: Callable[[int], Optimizer]) -> None:
    history = _drive(make(2), 6)
    pending = [history[-1].x[:-1] + (0.123,)]
    proposals = make(2).ask(8, history, pending)
    arr = np.asarray(proposals)
    assert arr.shape == (8, SPACE.dim) and arr.min() >= 0.0 and arr.max() <= 1.0
    known = {o.x for o in history} | set(pending)
    assert not known & set(proposals)
    assert len(set(proposals)) == len(proposals)


def test_pending_points_change_the_proposals(make: Callable[[int], Optimizer]) -> None:
    history = _drive(make(3), 3)
    first = make(3).ask(2, history)
    second = make(3).ask(2, history, pending=first)
    assert not set(first) & set(second)


def test_copes_with_failed_evaluations(make: Callable[[int], Optimizer]) -> None:
    history = _drive(make(4), 6, fail_every=3)
    assert sum(o.failed for o in history) == 8
    proposals = make(4).ask(4, history)
    assert not {o.x for o in history} & set(proposals)


def test_copes_with_every_evaluation_failing(make: Callable[[int], Optimizer]) -> None:
    history = _drive(make(5), 3, fail_every=1)
    assert len(make(5).ask(4, history)) == 4


def test_rejects_malformed_input(make: Callable[[int], Optimizer]) -> None:
    with pytest.raises(ValueError, match="coordinates"):
        make(0).ask(1, [Observation((0.5, 0.5), (1.0, 1.0))])
    with pytest.raises(ValueError, match="n must be"):
        make(0).ask(0, [])


def test_nsga2_improves_on_its_initial_design() -> None:
    from optimizers import hypervolume

    history = _drive(NSGA2Optimizer(SPACE, 2, 0, population_size=8), 12)
    values = np.asarray([o.values for o in history])
    ref = [3.0, 3.0]
    initial = hypervolume(values[:8], ref, [False, False])
    assert hypervolume(values, ref, [False, False]) > initial
