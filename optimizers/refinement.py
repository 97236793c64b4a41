"""Where `hybrid` refines locally: boxes around the evaluated front's ends and across its largest gaps.

Every function is a pure function of its arguments (points in the unit cube, values minimised), so an ask that
refines replays exactly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mergefront.optimizers.pareto import nondominated_mask

Anchors = Literal["ends", "gaps", "both"]
ANCHORS: tuple[str, ...] = ("ends", "gaps", "both")


def front_ends(train_X: np.ndarray, train_Y: np.ndarray) -> np.ndarray:
    """The ends of the evaluated front (`a x d`, a <= m): per objective the point best on it, the sum of all
    objectives breaking ties (so it is on the front), each point once."""
    rows = [int(np.lexsort((train_Y.sum(axis=1), train_Y[:, i]))[0]) for i in range(train_Y.shape[1])]
    return train_X[list(dict.fromkeys(rows))]


def largest_gaps(train_X: np.ndarray, train_Y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pairs of front points (`d`, `d`) that bound its largest gaps, largest first.

    The front is taken in objectives scaled to its own range. With two objectives a gap is between neighbours
    along the front and its size the area of the rectangle they span (the most hypervolume a point between them
    could add); with more, each point's gap is the distance to its nearest front neighbour, the pair that point
    and that neighbour. Equal points count once; a front of one point has no gap.
    """
    mask = nondominated_mask(train_Y, [False] * train_Y.shape[1])
    Y, first = np.unique(train_Y[mask], axis=0, return_index=True)  # f x m, sorted by the first objective
    X = train_X[mask][first]  # f x d
    if Y.shape[0] < 2:
        return []
    span = Y.max(axis=0) - Y.min(axis=0)
    Z = (Y - Y.min(axis=0)) / np.where(span > 0, span, 1.0)  # f x m, in [0, 1]
    if Y.shape[1] == 2:
        sizes = np.abs(np.diff(Z, axis=0)).prod(axis=1)  # f - 1: neighbours along the first objective
        pairs = [(i, i + 1) for i in range(Y.shape[0] - 1)]
    else:
        dist = np.linalg.norm(Z[:, None, :] - Z[None, :, :], axis=-1)  # f x f
        np.fill_diagonal(dist, np.inf)
        nearest = dist.argmin(axis=1)
        sizes = dist[np.arange(Y.shape[0]), nearest]
        pairs = [(i, int(j)) for i, j in enumerate(nearest)]
    order = np.argsort(-sizes, kind="stable")
    return [(X[pairs[k][0]], X[pairs[k][1]]) for k in order]


def cube(anchor: np.ndarray, radius: float) -> np.ndarray:
    """The `2 x d` box of half-width `radius` around `anchor`, clipped to the unit cube."""
    return np.clip(np.stack([anchor - radius, anchor + radius]), 0.0, 1.0)


def shrunk_radius(anchor: np.ndarray, train_X: np.ndarray, radius: float) -> float:
    """A trust region that shrinks where refining has not paid: `radius` halved for every two evaluated points
    (other than the anchor) inside the anchor's full-size cube, down to a quarter of it. An anchor that has just
    moved (a refinement found a better end) has few points around it and gets the full radius again."""
    near = int((np.abs(train_X - anchor).max(axis=1) <= radius).sum()) - 1  # the anchor itself is one of them
    return radius * max(0.25, 0.5 ** (max(near, 0) // 2))


def spanning(a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """The `2 x d` box spanned by `a` and `b`, grown by `radius` on every side, clipped to the unit cube."""
    return np.clip(np.stack([np.minimum(a, b) - radius, np.maximum(a, b) + radius]), 0.0, 1.0)


def refinement_boxes(train_X: np.ndarray, train_Y: np.ndarray, n: int, first: int, anchors: Anchors,
                     radius: float, adaptive: bool = False) -> list[np.ndarray]:
    """The boxes (`2 x d` each) of the `n` refinements numbered `first`, `first + 1`, ... of a run.

    `ends`: a cube around each end of the front in turn. `gaps`: the boxes spanning the pairs around the front's
    largest gaps, the largest first in each ask (an end's cube while the front is one point). `both`: even
    refinements take the ends in turn, odd ones the gaps. `adaptive`: an end's cube shrinks with the points already
    evaluated in it (`shrunk_radius`).
    """
    ends = front_ends(train_X, train_Y)
    gaps = largest_gaps(train_X, train_Y) if anchors != "ends" else []
    out: list[np.ndarray] = []
    for j in range(n):
        k = first + j
        if anchors == "ends" or not gaps or (anchors == "both" and k % 2 == 0):
            turn = k // 2 if anchors == "both" else k
            anchor = ends[turn % ends.shape[0]]
            out.append(cube(anchor, shrunk_radius(anchor, train_X, radius) if adaptive else radius))
        else:
            taken = sum(1 for i in range(j) if anchors == "gaps" or (first + i) % 2 == 1)  # gaps earlier this ask
            a, b = gaps[taken % len(gaps)]
            out.append(spanning(a, b, radius))
    return out
