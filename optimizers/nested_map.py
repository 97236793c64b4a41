"""Nested MAP: merge pairs of experts with MAP, then merge the merges, so no surrogate sees every expert at once.

A quadratic in `d` merge coefficients has `(d + 1)(d + 2) / 2` terms, so plain MAP needs ever more evaluations as
experts are added. Nested MAP searches a binary tree of small problems instead:

- a *leaf* is a pair of neighbouring experts (or one expert left over); it runs MAP in its experts' own coordinates
  (their weights, densities, ... in every group) with every other expert's weight at the bottom;
- an *inner node* merges the merges of its two children: a child contributes a point of its predicted Pareto front
  (NSGA-II on its surrogates, plus its evaluated non-dominated points), picked by `t` in [0, 1] along the front's
  main trade-off direction, with its weights scaled by `s` in [0, 1] (towards the bottom of their range). So every
  inner node searches four coordinates `(t_left, t_right, s_left, s_right)` whatever the number of experts below it;
  the root adds the parameters set once per merge (such as `lambda`), which stay at the top of their range below it.

A node runs after its children, with each a fixed budget (twice its initial design); the root runs until the job's
budget ends (`initial_points` sets the root's initial design). Every node's data are the evaluations that lie on
its merges (found by encoding each flat point); a child's front is fitted on the first evaluations of its budget
only, so it never changes once the parent has started and the whole search is a function of the history, as the
optimizer contract needs. For a linear method (task
arithmetic, linear) a merge of merges is exactly the flat merge the node proposes; for TIES, DARE and the other
sparsifying methods the service merges once, with the composed weights.

When there are as many objectives as experts, objective `i` is taken to score expert `i`'s task (as in MAP's paper)
and a node fits only its own experts' objectives; otherwise every node fits every objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mergefront.optimizers.base import Observation, Point, drop_known, known_points
from mergefront.optimizers.history import SurrogateReport, as_points, top_up
from mergefront.optimizers.map import MAPOptimizer, one_hot_points, predicted_front, spread
from mergefront.optimizers.pareto import nondominated_mask
from mergefront.optimizers.random_search import sobol_points
from mergefront.optimizers.space import SearchSpace
from mergefront.surrogates.quadratic import QuadraticSurrogate

BUDGET_DESIGNS = 2  # a non-root node's budget, in initial designs
MATCH_TOL = 1e-7  # a flat point lies on a node's merges when it decodes back to itself within this


@dataclass
class _Node:
    index: int
    experts: tuple[int, ...]
    coords: tuple[int, ...]  # flat coordinates this node's merges set (its experts' parameters; root: + globals)
    weight: tuple[bool, ...]  # per coordinate of `coords`: is it a weight (scaled by a parent)
    objectives: tuple[int, ...]
    children: tuple[_Node, ...] = ()
    globals_: tuple[int, ...] = ()  # root only: the parameters set once per merge
    front_cache: dict[bytes, np.ndarray] = field(default_factory=dict)

    @property
    def leaf(self) -> bool:
        return not self.children

    @property
    def dim(self) -> int:
        return (len(self.coords) - len(self.globals_) if self.leaf else 4) + len(self.globals_)


class NestedMAPOptimizer(MAPOptimizer):
    """MAP on a tree of expert pairs (see the module docstring); the options are MAP's."""

    def __init__(self, space: SearchSpace, n_objectives: int, seed: int, **kwargs: object) -> None:
        super().__init__(space, n_objectives, seed, **kwargs)  # type: ignore[arg-type]
        given = kwargs.get("initial_points")
        self._root_design = int(given) if isinstance(given, int) else None  # the root's design size, if given
        experts = _expert_coords(space)
        self._expert_order = sorted(experts)  # the rows of MAP's one-hot merges
        self._one_hot = one_hot_points(space)
        self._off = np.ones(space.dim)
        for coords in experts.values():
            for c in coords:
                if _is_weight(space, c):
                    self._off[c] = 0.0
        globals_ = tuple(c for c in range(space.dim) if not any(c in cs for cs in experts.values()))
        by_expert = n_objectives == len(experts)
        nodes: list[_Node] = []

        def make(members: tuple[int, ...], children: tuple[_Node, ...]) -> _Node:
            coords = tuple(sorted(c for e in members for c in experts[e]))
            objs = tuple(members) if by_expert else tuple(range(n_objectives))
            node = _Node(len(nodes), members, coords, tuple(_is_weight(space, c) for c in coords), objs, children)
            nodes.append(node)
            return node

        order = self._expert_order
        level = [make(tuple(order[i:i + 2]), ()) for i in range(0, len(order), 2)]
        while len(level) > 1:
            level = [make(level[i].experts + level[i + 1].experts, (level[i], level[i + 1]))
                     if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        root = level[0]
        root.coords = root.coords + globals_
        root.weight = root.weight + (False,) * len(globals_)
        root.globals_ = globals_
        root.objectives = tuple(range(n_objectives))
        self._nodes = nodes  # children before parents
        self._root = root

    # --- asking -----------------------------------------------------------------------------------------------

    def _ask(self, n: int, history: Sequence[Observation], pending: Sequence[Point]) -> list[Point]:
        known = known_points(history, pending, self.space.dim)
        seed = int(self._rng(history, pending).integers(2**31))
        done = [o.x for o in history]
        out = np.empty((0, self.space.dim))
        for past_budget in (False, True):  # the second pass lets ready nodes go past a budget that pending fill
            for node in self._nodes:
                left = n - out.shape[0]
                if left <= 0 or not all(self._finished(c, history) for c in node.children):
                    continue
                if node is not self._root:
                    if self._finished(node, history):
                        continue
                    if not past_budget:
                        left = min(left, self._budget(node) - len(self._own(node, done, history))
                                   - len(self._own(node, pending, history)))
                if left > 0:
                    found = self._node_ask(node, left, history, pending, np.vstack([known, out]), seed)
                    out = np.vstack([out, found])
        return as_points(top_up(out, n, known, seed))

    def _node_ask(self, node: _Node, n: int, history: Sequence[Observation], pending: Sequence[Point],
                  known: np.ndarray, seed: int) -> np.ndarray:
        """Up to `n` new flat points (`c x d`) from one node's MAP: its design's next points, then its front's,
        then (while the front is too small or the surrogates cannot be fitted yet) more of its Sobol points."""
        Z, Y = self._data(node, history)
        design = self._design(node)
        out_z, out = self._fresh(node, design, history, known, n)
        if out.shape[0] < n and Z.shape[0] >= 3:
            warps = [self.warps[i] for i in node.objectives]
            surrogate = QuadraticSurrogate.fit(Z, Y, warps)
            front = predicted_front(surrogate, node.dim, seed + node.index)
            taken = np.vstack([Z, self._encode_all(node, pending, history), out_z])
            chosen = spread(front, surrogate, n - out.shape[0], taken, Z, Y, self.bayesian)
            out = np.vstack([out, self._fresh(node, chosen, history, np.vstack([known, out]), n)[1]])
        if out.shape[0] < n:
            more = sobol_points(node.dim, self.seed + 7919 * node.index, design.shape[0] + known.shape[0], 2 * n)
            out = np.vstack([out, self._fresh(node, more, history, np.vstack([known, out]), n - out.shape[0])[1]])
        return out

    def _fresh(self, node: _Node, Z: np.ndarray, history: Sequence[Observation], known: np.ndarray, n: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """The first `n` of node coordinates `Z` whose merges are new, and those merges (flat)."""
        flat = self._flats(node, Z, history)
        keep: list[int] = []
        for i in range(len(flat)):
            if len(keep) < n and drop_known(flat[i : i + 1], np.vstack([known, flat[keep]])).shape[0]:
                keep.append(i)
        return Z[keep], flat[keep]

    def _flats(self, node: _Node, Z: np.ndarray, history: Sequence[Observation]) -> np.ndarray:
        """The flat points (`c x d`) of node coordinates `Z` (`c x node.dim`)."""
        return np.asarray([self._flat(node, z, history) for z in Z]).reshape(len(Z), self.space.dim)

    def _design(self, node: _Node) -> np.ndarray:
        """A node's initial design in its own coordinates: its experts' one-hot merges (leaves), then Sobol."""
        Z = np.empty((0, node.dim))
        if node.leaf:  # MAP's one-hot merges of its experts, seen in its coordinates
            Z = self._one_hot[[self._expert_order.index(e) for e in node.experts]][:, list(node.coords)]
        size = self._design_size(node)
        return np.vstack([Z, sobol_points(node.dim, self.seed + 7919 * node.index, 0, size - Z.shape[0])])

    def _design_size(self, node: _Node) -> int:
        if node is self._root and len(self._nodes) == 1:
            return self.initial_points  # one pair: plain MAP
        if node is self._root and self._root_design is not None:
            return self._root_design
        return max((len(node.experts) if node.leaf else 0) + node.dim, 3)

    def children_budget(self) -> int:
        """The evaluations the nodes below the root take (each twice its initial design) before the root runs."""
        return sum(self._budget(n) for n in self._nodes if n is not self._root)

    def _budget(self, node: _Node) -> int:
        return BUDGET_DESIGNS * self._design_size(node)

    def _finished(self, node: _Node, history: Sequence[Observation]) -> bool:
        """Whether a non-root node has spent its budget on completed (or failed) evaluations."""
        return node is not self._root and len(self._own(node, [o.x for o in history], history)) >= self._budget(node)

    # --- encoding: flat points <-> a node's coordinates -------------------------------------------------------

    def _flat(self, node: _Node, z: np.ndarray, history: Sequence[Observation]) -> np.ndarray:
        x = self._off.copy()
        x[list(node.coords)] = self._decode(node, z, history)
        return x

    def _decode(self, node: _Node, z: np.ndarray, history: Sequence[Observation]) -> np.ndarray:
        """The values of `node.coords` (unit cube) of the merge at node coordinates `z`."""
        z = np.clip(np.asarray(z, dtype=float), 0.0, 1.0)
        if node.leaf:
            return z
        parts = []
        for child, t, s in zip(node.children, z[:2], z[2:4], strict=True):
            front = self._child_front(child, history)
            values = front[int(round(t * (front.shape[0] - 1)))].copy()
            values[list(child.weight)] *= s
            parts.append(values)
        merged = dict(zip(node.children[0].coords + node.children[1].coords, np.concatenate(parts), strict=True))
        merged.update(zip(node.globals_, z[4:], strict=True))
        return np.asarray([merged[c] for c in node.coords])

    def _encode(self, node: _Node, point: Sequence[float], history: Sequence[Observation]) -> np.ndarray | None:
        """Node coordinates of flat point `point`, or None when it is not one of the node's merges."""
        x = np.asarray(point, dtype=float)
        outside = np.ones(self.space.dim, dtype=bool)
        outside[list(node.coords)] = False
        if np.any(np.abs(x[outside] - self._off[outside]) > MATCH_TOL):
            return None
        if node.leaf:
            return x[list(node.coords)]
        z = []
        for child in node.children:
            ts = self._locate(child, x[list(child.coords)], history)
            if ts is None:
                return None
            z.append(ts)
        return np.asarray([z[0][0], z[1][0], z[0][1], z[1][1], *x[list(node.globals_)]])

    def _locate(self, child: _Node, values: np.ndarray, history: Sequence[Observation]) -> tuple[float, float] | None:
        """`(t, s)`: where on `child`'s front, and at what scale, `values` (its coordinates) lie; None if nowhere."""
        front = self._child_front(child, history)
        w = np.asarray(child.weight)
        steps = max(front.shape[0] - 1, 1)
        if np.all(np.abs(values[w]) <= MATCH_TOL):
            return 0.0, 0.0  # scaled to nothing: any front point
        for j, f in enumerate(front):
            if np.any(np.abs(values[~w] - f[~w]) > MATCH_TOL):
                continue
            norm = float(f[w] @ f[w])
            s = float(values[w] @ f[w]) / norm if norm > 0 else 0.0
            if -MATCH_TOL <= s <= 1.0 + MATCH_TOL and np.all(np.abs(values[w] - s * f[w]) <= MATCH_TOL):
                return j / steps, min(max(s, 0.0), 1.0)
        return None

    def _encode_all(self, node: _Node, xs: Sequence[Sequence[float]], history: Sequence[Observation]) -> np.ndarray:
        """Node coordinates (`c x node.dim`) of those of the flat points `xs` that are the node's merges."""
        rows = [z for z in (self._encode(node, x, history) for x in xs) if z is not None]
        return np.asarray(rows, dtype=float).reshape(len(rows), node.dim)

    def _members(self, node: _Node, xs: Sequence[Sequence[float]], history: Sequence[Observation]) -> list[int]:
        """Indices of the flat points `xs` that are merges of `node` (a child's merges are often among them)."""
        return [i for i, x in enumerate(xs) if self._encode(node, x, history) is not None]

    def _own(self, node: _Node, xs: Sequence[Sequence[float]], history: Sequence[Observation]) -> list[int]:
        """Indices of the flat points `xs` that are merges of `node` and not of a child: what its budget counts."""
        inside = [set(self._members(c, xs, history)) for c in node.children]
        return [i for i in self._members(node, xs, history) if not any(i in s for s in inside)]

    # --- data and fronts --------------------------------------------------------------------------------------

    def _data(self, node: _Node, history: Sequence[Observation], frozen: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
        """A node's completed evaluations: coordinates (`n x node.dim`) and its objectives (`n x m_node`).

        `frozen` keeps only the evaluations up to the last one of the node's own budget: the data its parent's
        view of it is built on, which later evaluations never change.
        """
        xs = [o.x for o in history]
        members = self._members(node, xs, history)
        if frozen:
            own = self._own(node, xs, history)
            if len(own) >= self._budget(node):
                members = [i for i in members if i <= own[self._budget(node) - 1]]
        done = [i for i in members if history[i].values is not None]
        Z = self._encode_all(node, [xs[i] for i in done], history)
        Y = np.asarray([[(history[i].values or ())[j] for j in node.objectives] for i in done], dtype=float)
        return Z, Y.reshape(len(done), len(node.objectives))

    def _child_front(self, child: _Node, history: Sequence[Observation]) -> np.ndarray:
        """The merges (`f x len(child.coords)`) a parent picks from, ordered along their main trade-off."""
        Z, Y = self._data(child, history, frozen=True)
        key = Z.tobytes() + Y.tobytes()
        if key not in child.front_cache:
            child.front_cache[key] = self._fit_front(child, Z, Y, history)
        return child.front_cache[key]

    def _fit_front(self, child: _Node, Z: np.ndarray, Y: np.ndarray, history: Sequence[Observation]) -> np.ndarray:
        if Z.shape[0] == 0:  # every evaluation of the child failed: its one-hot merges stand in
            return np.asarray([self._decode(child, z, history) for z in self._design(child)[:2]])
        best = nondominated_mask(Y, [False] * Y.shape[1])
        points, values = Z[best], Y[best]
        if Z.shape[0] >= 3:
            surrogate = QuadraticSurrogate.fit(Z, Y, [self.warps[i] for i in child.objectives])
            predicted = predicted_front(surrogate, child.dim, self.seed + 104729 * (child.index + 1))
            points = np.vstack([points, predicted])
            values = np.vstack([surrogate.predict(points[: len(values)]), surrogate.predict(predicted)])
        points, index = np.unique(np.round(points, 12), axis=0, return_index=True)
        values = values[index]
        decoded = np.asarray([self._decode(child, z, history) for z in points])
        return decoded[np.argsort(_main_direction(values), kind="stable")]

    def surrogate_reports(self, history: Sequence[Observation]) -> list[SurrogateReport]:
        """The root's surrogates once it has three completed evaluations, before that the flat MAP fit's."""
        Z, Y = self._data(self._root, history)
        if Z.shape[0] < 3 or self._root.leaf:
            return super().surrogate_reports(history)
        surrogate = QuadraticSurrogate.fit(Z, Y, self.warps)
        return [SurrogateReport(i, r2, Z.shape[0]) for i, r2 in enumerate(surrogate.r2)]


def _expert_coords(space: SearchSpace) -> dict[int, tuple[int, ...]]:
    """Per expert, the flat coordinates of its parameters; a plain box makes each coordinate one expert's weight."""
    out: dict[int, list[int]] = {}
    for c, p in enumerate(space.parameters):
        if p.expert is not None:
            out.setdefault(p.expert, []).append(c)
    if not any(p.kind == "weight" for p in space.parameters if p.expert is not None):
        return {c: (c,) for c in range(space.dim)}
    return {e: tuple(cs) for e, cs in out.items()}


def _is_weight(space: SearchSpace, c: int) -> bool:
    p = space.parameters[c]
    return p.kind == "weight" or p.expert is None and not p.kind


def _main_direction(values: np.ndarray) -> np.ndarray:
    """Each row's position (`f`) along the first principal direction of the scaled values (`f x m`)."""
    if values.shape[0] < 2:
        return np.zeros(values.shape[0])
    scaled = (values - values.mean(axis=0)) / (values.std(axis=0) + 1e-12)
    _, _, vt = np.linalg.svd(scaled, full_matrices=False)
    direction = vt[0] * (1.0 if vt[0][0] >= 0 else -1.0)  # a fixed sign: the first objective grows along it
    return scaled @ direction
