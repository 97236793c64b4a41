"""Held-out predictions hold out a point, not an evaluation.

A point evaluated more than once (its twins: the repeats of `optimizer.reevaluate`, new mask seeds at the same
parameters) is left out together with all its twins. Left out alone, its twins would predict it, and the held-out
R² that decides between surrogates (the hybrid's switch) and that a user reads would flatter the surrogate that
interpolates best, however little it knows between the points. Without twins every group is one evaluation, and the
usual leave-one-out shortcuts are used unchanged.
"""

from __future__ import annotations

import numpy as np


def twin_groups(X: np.ndarray) -> list[np.ndarray]:
    """Row indices (each group sorted, groups by first row) of every point that is more than one row of `n x d`
    `X` (rows identical in every coordinate); points that are one row are not listed."""
    if X.ndim != 2:
        raise ValueError(f"X {X.shape} must be `n x d`")
    if X.shape[0] < 2:
        return []
    _, first, inverse, counts = np.unique(X, axis=0, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)  # numpy 2.0 and 2.1 disagree on its shape with axis=0
    repeated = [g for g in np.flatnonzero(counts > 1)]
    return [np.flatnonzero(inverse == g) for g in sorted(repeated, key=lambda g: first[g])]
