"""A History (what the runner and ask/tell servers keep in memory) asks the same as the plain list it stands for."""

from __future__ import annotations

import numpy as np
import pytest

from mergefront.optimizers import NSGA2Optimizer, Parameter, SearchSpace, SobolSearch
from mergefront.optimizers.base import History, Observation, drop_known, known_points

SPACE = SearchSpace(tuple(Parameter(f"p{i}", 0.0, 1.0, "") for i in range(3)))


@pytest.mark.parametrize("make", [lambda: SobolSearch(SPACE, 2, 7), lambda: NSGA2Optimizer(SPACE, 2, 7,
                                                                                              population_size=6)])
def test_a_history_grown_out_of_order_asks_as_the_list_in_creation_order(make) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    rows = [Observation(tuple(rng.random(3)), None if i % 7 == 3 else tuple(rng.random(2))) for i in range(40)]
    history = History(3, 2)
    for i in rng.permutation(40):  # results come back in any order; the history keeps creation order
        history.add(int(i), rows[i])
    assert list(history) == rows and history[5:8] == rows[5:8]
    assert sorted(map(tuple, history.points())) == sorted(o.x for o in rows)
    pending = [tuple(rng.random(3))]
    assert make().ask(3, history, pending) == make().ask(3, rows, pending)
    with pytest.raises(ValueError, match="coordinates"):
        history.add(40, Observation((0.5,), (1.0, 2.0)))
    with pytest.raises(ValueError, match="history of 3 coordinates and 2 objectives"):
        SobolSearch(SPACE, 3, 7).ask(1, history)


def test_known_points_are_dropped_within_the_tolerance_only() -> None:
    known = np.array([[0.1, 0.2], [0.3, 0.4]])
    candidates = np.array([[0.1, 0.2 + 1e-12], [0.1, 0.2 + 1e-6], [0.3 + 1e-6, 0.4], [0.5, 0.5], [0.5, 0.5]])
    assert drop_known(candidates, known).tolist() == candidates[[1, 2, 3]].tolist()
    assert known_points(History(2, 1), [(0.5, 0.5)], 2).tolist() == [[0.5, 0.5]]
