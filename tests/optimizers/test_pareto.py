from __future__ import annotations

import numpy as np
import pytest
from pymoo.indicators.hv import HV

from mergefront.optimizers import hypervolume, nondominated_mask


def _naive_front(values: np.ndarray) -> np.ndarray:
    """Maximisation: a point is dominated when another is >= everywhere and > somewhere."""
    n = len(values)
    return np.array([not any(np.all(values[j] >= values[i]) and np.any(values[j] > values[i])
                             for j in range(n) if j != i) for i in range(n)])


@pytest.mark.parametrize("m", [2, 3, 4])
def test_front_and_hypervolume_agree_with_independent_computations(m: int) -> None:
    rng = np.random.default_rng(m)
    values = rng.random((60, m))
    values[5] = values[6]  # duplicates stay on (or off) the front together
    mask = nondominated_mask(values, [True] * m)
    np.testing.assert_array_equal(mask, _naive_front(values))
    ref = np.zeros(m)
    expected = HV(ref_point=-ref)(-values)  # pymoo minimises
    assert hypervolume(values, ref, [True] * m) == pytest.approx(expected, rel=1e-12)


def test_mixed_directions_and_points_beyond_the_reference() -> None:
    values = np.array([[0.9, 2.0], [0.5, 1.0], [-0.1, 2.5]])  # maximise first, minimise second
    assert nondominated_mask(values, [True, False]).tolist() == [True, True, False]
    # only the region between each point and ref (0, 3) counts; the third point lies beyond ref
    assert hypervolume(values, [0.0, 3.0], [True, False]) == pytest.approx(0.9 * 1.0 + 0.5 * 2.0 - 0.5 * 1.0)


def test_empty_input() -> None:
    assert hypervolume(np.empty((0, 2)), [0, 0], [True, True]) == 0.0
    assert nondominated_mask(np.empty((0, 2)), [True, True]).shape == (0,)
