"""Pareto fronts and hypervolume, computed by moocore."""

from __future__ import annotations

from collections.abc import Sequence

import moocore
import numpy as np


def _as_matrix(values: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"values must be `n x m`, got shape {arr.shape}")
    return arr


def nondominated_mask(values: Sequence[Sequence[float]] | np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask (`n`) of the points no other point dominates; equal points are all kept."""
    arr = _as_matrix(values)
    if arr.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(arr, maximise=list(maximize), keep_weakly=True), dtype=bool)


def hypervolume(values: Sequence[Sequence[float]] | np.ndarray, ref_point: Sequence[float],
                maximize: Sequence[bool]) -> float:
    """Hypervolume of `values` (`n x m`) against the fixed `ref_point` (`m`); 0 for no point beyond it."""
    arr = _as_matrix(values)
    ref = np.asarray(ref_point, dtype=float)
    if arr.shape[1] != ref.shape[0]:
        raise ValueError(f"points have {arr.shape[1]} objectives, reference point has {ref.shape[0]}")
    if arr.shape[0] == 0:
        return 0.0
    return float(moocore.hypervolume(arr, ref=ref, maximise=list(maximize)))
